//! The request body on its way upstream. A small body is kept whole, so that a retry can
//! send it again; a large or open-ended one streams to a single attempt, which is then the
//! only one. So does the body of a request that says `Expect: 100-continue`: reading it
//! early would make the client's `100 Continue` come from the proxy rather than the origin.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};

use super::client_body::{ClientBody, WholeBytes};
use super::error::ProxyError;

/// How long the proxy waits for a small request body it keeps for retries.
pub(crate) const KEEP_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The request body sent upstream: the client's stream, or bytes kept for a retry.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    Stream(ClientBody),
    Kept(WholeBytes),
}

impl UpstreamBody {
    pub(crate) fn kept(bytes: Bytes) -> UpstreamBody {
        UpstreamBody::Kept(WholeBytes::new(bytes))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Stream(b) => Pin::new(b).poll_frame(cx),
            UpstreamBody::Kept(b) => b.poll_once(),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Stream(b) => b.is_end_stream(),
            UpstreamBody::Kept(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Stream(b) => b.size_hint(),
            UpstreamBody::Kept(b) => b.size_hint(),
        }
    }
}

/// The request body as the attempts hold it.
pub(crate) enum Kept {
    /// Small enough to keep: every attempt gets a copy.
    Bytes(Bytes),
    /// Streamed: only one attempt can use it.
    Stream(Option<ClientBody>),
}

impl Kept {
    /// Reads `body` whole when its length is known and at most `max` and the client does
    /// not wait for `100 Continue`; otherwise keeps the stream. A kept body that does not
    /// arrive in time, or is longer than it said, is the client's fault.
    pub(crate) async fn keep(parts: &Parts, body: ClientBody, max: usize) -> Result<Kept, ProxyError> {
        if body.is_end_stream() {
            return Ok(Kept::Bytes(Bytes::new()));
        }
        match body.size_hint().exact() {
            Some(n) if n <= max as u64 && !expects_continue(&parts.headers) => {
                let collect = Limited::new(body, max).collect();
                match tokio::time::timeout(KEEP_BODY_TIMEOUT, collect).await {
                    Ok(Ok(c)) => Ok(Kept::Bytes(c.to_bytes())),
                    _ => Err(ProxyError::BadRequest),
                }
            }
            _ => Ok(Kept::Stream(Some(body))),
        }
    }

    /// Whether another attempt can have the body after this one.
    pub(crate) fn replayable(&self) -> bool {
        matches!(self, Kept::Bytes(_))
    }

    /// The body for the next attempt: `None` once a streamed body has been sent.
    pub(crate) fn take(&mut self) -> Option<UpstreamBody> {
        match self {
            Kept::Bytes(b) => Some(UpstreamBody::kept(b.clone())),
            Kept::Stream(s) => s.take().map(UpstreamBody::Stream),
        }
    }
}

/// Whether the request waits for `100 Continue` before sending its body.
pub(crate) fn expects_continue(h: &HeaderMap) -> bool {
    h.get(http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The request of one attempt: the client's head, as the request path left it, with `body`.
pub(crate) fn attempt_request(parts: &Parts, body: UpstreamBody) -> Request<UpstreamBody> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req
}
