//! The response body the proxy hands to hyper: the origin's stream or a body of its own,
//! carrying the request's bookkeeping until the last byte is sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};

use super::origin::OriginPermit;
use super::pool::{Relayed, UpstreamResponse};
use super::shed::{Inflight, InflightSlot};
use crate::vocab::activity::ActiveRequest;

/// Held for as long as a response streams: the connection counts the request as in
/// flight, the origin counts it against its concurrency limit, and so does load shedding.
/// (The upstream connection the response streams on is held by its body, which gives it
/// back to its pool at the end of the stream.)
#[derive(Debug)]
pub(crate) struct RequestGuard {
    /// First, so that it drops first: load shedding counts the request out before the
    /// rest is let go.
    _inflight: InflightSlot,
    /// Counted by the connection, which drain waits for.
    _active: ActiveRequest,
    pub(crate) permit: Option<OriginPermit>,
}

impl RequestGuard {
    pub(crate) fn new(active: ActiveRequest, inflight: &Arc<Inflight>) -> RequestGuard {
        RequestGuard { _inflight: inflight.enter(), _active: active, permit: None }
    }
}

pin_project_lite::pin_project! {
    /// Response body: streamed from upstream (`Either::Left`) or made by the proxy.
    pub(crate) struct ProxyBody {
        #[pin]
        inner: Either<UpstreamResponse, Full<Bytes>>,
        guard: Option<RequestGuard>,
    }
}

impl ProxyBody {
    pub(crate) fn upstream(body: UpstreamResponse, guard: RequestGuard) -> ProxyBody {
        ProxyBody { inner: Either::Left(body), guard: Some(guard) }
    }

    pub(crate) fn full(bytes: Bytes, guard: RequestGuard) -> ProxyBody {
        ProxyBody { inner: Either::Right(Full::new(bytes)), guard: Some(guard) }
    }

    /// The response's fields the head's map does not hold, as bytes to write after it:
    /// only answers to a request that asked for [`super::pool::response::Fields::Bytes`].
    pub(crate) fn relayed(&self) -> &Relayed {
        match &self.inner {
            Either::Left(up) => up.relayed(),
            Either::Right(_) => Relayed::none(),
        }
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
