//! The request body on its way upstream. A small body is kept whole, so that a retry can
//! send it again; a large or open-ended one streams to a single attempt, which is then the
//! only one.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::request::Parts;
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use super::error::ProxyError;

/// The request body sent upstream: the client's stream, or bytes kept for a retry.
pub(crate) type UpstreamBody = Either<Incoming, Full<Bytes>>;

/// How long the proxy waits for a small request body it keeps for retries.
const KEEP_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The request body as the attempts hold it.
pub(crate) enum Kept {
    /// Small enough to keep: every attempt gets a copy.
    Bytes(Bytes),
    /// Streamed: only one attempt can use it.
    Stream(Option<Incoming>),
}

impl Kept {
    /// Reads `body` whole when its length is known and at most `max`; otherwise keeps the
    /// stream. A kept body that does not arrive in time, or is longer than it said, is the
    /// client's fault.
    pub(crate) async fn keep(body: Incoming, max: usize) -> Result<Kept, ProxyError> {
        if body.is_end_stream() {
            return Ok(Kept::Bytes(Bytes::new()));
        }
        match body.size_hint().exact() {
            Some(n) if n <= max as u64 => {
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
            Kept::Bytes(b) => Some(Either::Right(Full::new(b.clone()))),
            Kept::Stream(s) => s.take().map(Either::Left),
        }
    }
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
