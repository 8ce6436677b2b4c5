//! The response body the proxy hands to hyper: the origin's stream or a body of its own,
//! carrying the request's bookkeeping until the last byte is sent.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::origin::OriginPermit;
use super::pool::PooledConn;
use crate::vocab::activity::ActiveRequest;

/// Held for as long as a response streams: the connection counts the request as in
/// flight, the origin counts it against its concurrency limit, and so does the
/// `inflight_requests` gauge.
#[derive(Debug)]
pub struct RequestGuard {
    pub active: Option<ActiveRequest>,
    pub permit: Option<OriginPermit>,
    /// The upstream connection the response streams on: back to its pool when done.
    pub conn: Option<PooledConn>,
    inflight: prometheus::IntGauge,
}

impl RequestGuard {
    pub fn new(active: ActiveRequest, inflight: &prometheus::IntGauge) -> RequestGuard {
        inflight.inc();
        RequestGuard { active: Some(active), permit: None, conn: None, inflight: inflight.clone() }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.inflight.dec();
    }
}

pin_project_lite::pin_project! {
    /// Response body: streamed from upstream (`Either::Left`) or made by the proxy.
    pub struct ProxyBody {
        #[pin]
        inner: Either<Incoming, Full<Bytes>>,
        guard: Option<RequestGuard>,
    }
}

impl ProxyBody {
    pub fn upstream(body: Incoming, guard: RequestGuard) -> ProxyBody {
        ProxyBody { inner: Either::Left(body), guard: Some(guard) }
    }

    pub fn full(bytes: Bytes, guard: RequestGuard) -> ProxyBody {
        ProxyBody { inner: Either::Right(Full::new(bytes)), guard: Some(guard) }
    }
}

impl From<Bytes> for ProxyBody {
    fn from(b: Bytes) -> ProxyBody {
        ProxyBody { inner: Either::Right(Full::new(b)), guard: None }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let res = this.inner.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = &res {
            // The exchange is over: free the slot now rather than when hyper drops the body.
            this.guard.take();
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
