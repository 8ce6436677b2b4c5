//! The client's request body as the request path sees it, whichever server read the head:
//! hyper's stream (TLS, HTTP/2, and every HTTP/1.1 request outside the own fast path's
//! subset), or the bytes the own HTTP/1.1 path (`server::h1`) read whole before calling
//! the request path. One type, so that the request path is shared, not copied.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A request body from a client connection.
#[derive(Debug)]
pub(crate) enum ClientBody {
    /// Read by hyper as the request path consumes it.
    Hyper(Incoming),
    /// Read whole by the connection already.
    Bytes(WholeBytes),
}

impl ClientBody {
    pub(crate) fn bytes(b: Bytes) -> ClientBody {
        ClientBody::Bytes(WholeBytes::new(b))
    }
}

impl From<Incoming> for ClientBody {
    fn from(b: Incoming) -> ClientBody {
        ClientBody::Hyper(b)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    /// hyper's, which the whole-bytes variant never returns: the upstream side already
    /// reports a client body failure as one.
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx),
            ClientBody::Bytes(b) => b.poll_once(),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::Bytes(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::Bytes(b) => b.size_hint(),
        }
    }
}

/// A body held whole, handed out as one data frame (none when empty): what the own path
/// read, and what the attempts keep for a retry.
#[derive(Debug, Default)]
pub(crate) struct WholeBytes(Option<Bytes>);

impl WholeBytes {
    pub(crate) fn new(b: Bytes) -> WholeBytes {
        WholeBytes(Some(b))
    }

    /// The bytes not yet handed out.
    pub(crate) fn into_bytes(self) -> Bytes {
        self.0.unwrap_or_default()
    }

    pub(crate) fn poll_once<E>(&mut self) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        Poll::Ready(self.0.take().filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b))))
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(Bytes::is_empty)
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn whole_bytes_come_out_as_one_frame_with_an_exact_size() {
        let mut b = ClientBody::bytes(Bytes::from_static(b"hello"));
        assert_eq!(b.size_hint().exact(), Some(5));
        assert!(!b.is_end_stream());
        let frame = b.frame().await.and_then(Result::ok).and_then(|f| f.into_data().ok());
        assert_eq!(frame.as_deref(), Some(&b"hello"[..]));
        assert!(b.is_end_stream());
        assert!(b.frame().await.is_none());
        let empty = ClientBody::bytes(Bytes::new());
        assert!(empty.is_end_stream());
    }
}
