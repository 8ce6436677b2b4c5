//! One exchange on a connection up to the response head: the request is written while
//! the head is read, so an origin that answers before it has read the whole body (a 413,
//! a 417) is heard, and a `100 Continue` opens the body's way.

use std::task::Poll;

use http::{Method, StatusCode};

use super::PooledConn;
use super::response::{self, Fields, Head};
use super::wire::{RequestWriter, WriteError};
use crate::proxy::error::ProxyError;

/// Where the request stands when the final head has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rest {
    Written,
    /// The body relay goes on writing it (an origin may answer as it reads).
    Writing,
    /// Never to be written whole: answered before `100 Continue`, or the write failed.
    Abandoned,
}

/// An exchange that failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: ProxyError,
    /// Not a byte of an answer arrived.
    pub(crate) before_answer: bool,
}

/// Writes the request and reads up to the final response head, and says where the
/// request stands then.
pub(crate) async fn exchange(
    pooled: &mut PooledConn,
    writer: &mut RequestWriter,
    method: &Method,
    fields: Fields,
) -> Result<(Head, Rest), Failure> {
    let Some(conn) = pooled.conn.as_mut() else {
        return Err(Failure { error: ProxyError::UpstreamReset, before_answer: true });
    };
    let (mut written, mut write_failed, mut answered) = (false, false, false);
    let head = std::future::poll_fn(|cx| {
        loop {
            if !written && !write_failed {
                match writer.poll_write(cx, &mut conn.io) {
                    Poll::Ready(Ok(())) => written = true,
                    Poll::Ready(Err(WriteError::Client(e))) => {
                        tracing::debug!(error = %e, "client request body failed");
                        return Poll::Ready(Err(Failure {
                            error: ProxyError::BadRequest,
                            before_answer: false,
                        }));
                    }
                    // The origin may have answered and closed without reading it all: the
                    // answer may still be there to read.
                    Poll::Ready(Err(WriteError::Io(e))) => {
                        tracing::debug!(error = %e, "writing the request upstream failed");
                        write_failed = true;
                    }
                    Poll::Pending => {}
                }
            }
            match response::parse(&mut conn.rbuf, method, fields) {
                Ok(Some(head)) if head.status == StatusCode::CONTINUE => writer.open_gate(),
                // A protocol switch goes through hyper's client; one here was not asked for.
                Ok(Some(head)) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                    return Poll::Ready(Err(Failure {
                        error: ProxyError::UpstreamProtocol,
                        before_answer: false,
                    }));
                }
                // Other interim answers (103 Early Hints) are not relayed.
                Ok(Some(head)) if head.status.is_informational() => {}
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => match std::task::ready!(conn.poll_fill(cx)) {
                    Ok(0) => {
                        return Poll::Ready(Err(Failure {
                            error: ProxyError::UpstreamReset,
                            before_answer: !answered,
                        }));
                    }
                    Ok(_) => answered = true,
                    Err(e) => {
                        tracing::debug!(error = %e, "reading the response upstream failed");
                        return Poll::Ready(Err(Failure {
                            error: ProxyError::UpstreamReset,
                            before_answer: !answered,
                        }));
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "invalid response head from upstream");
                    return Poll::Ready(Err(Failure {
                        error: ProxyError::UpstreamProtocol,
                        before_answer: false,
                    }));
                }
            }
        }
    })
    .await?;
    let rest = if written {
        Rest::Written
    } else if write_failed || writer.gated() {
        // Still waiting for `100 Continue` when the final answer came: the body stays unsent.
        Rest::Abandoned
    } else {
        Rest::Writing
    };
    Ok((head, rest))
}
