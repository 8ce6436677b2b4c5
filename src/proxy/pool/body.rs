//! The response body read straight from the upstream connection when the client's side
//! polls it: no task and no channel in between. It also finishes writing a request body
//! the origin began answering before it had read it all.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::chunked::{ChunkError, Chunked, Step};
use super::response::{Framing, Relayed};
use super::wire::RequestWriter;
use super::{Conn, PooledConn};

/// Why a response body could not be relayed whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("reading the upstream's response body failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the upstream closed the connection before the end of the body")]
    Closed,
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

#[derive(Debug)]
enum Decoder {
    Length(u64),
    Chunked(Chunked),
    /// Until the upstream closes.
    Close,
    Done,
}

/// A response body on a pooled connection.
#[derive(Debug)]
pub(crate) struct WireBody {
    /// Dropped (back to the pool, or closed) as soon as the body is over.
    conn: Option<PooledConn>,
    decoder: Decoder,
    /// A request body still being written (boxed: rare, and large).
    writer: Option<Box<RequestWriter>>,
    /// The connection may carry another request once this body is read whole.
    keep_alive: bool,
    /// The head's fields kept as bytes ([`super::response::Fields::Bytes`]): they travel
    /// with the body, since the response's extensions would cost two allocations.
    relayed: Relayed,
}

impl WireBody {
    pub(crate) fn new(
        conn: PooledConn,
        framing: Framing,
        keep_alive: bool,
        writer: Option<Box<RequestWriter>>,
        relayed: Relayed,
    ) -> WireBody {
        let decoder = match framing {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(Chunked::new()),
            Framing::Close => Decoder::Close,
        };
        let keep_alive = keep_alive && framing != Framing::Close;
        let mut body = WireBody { conn: Some(conn), decoder, writer, keep_alive, relayed };
        if matches!(body.decoder, Decoder::Done) {
            body.finish();
        }
        body
    }

    /// The body is over: the connection goes back to its pool if the whole exchange was
    /// read and written, with nothing left over; else it closes.
    fn finish(&mut self) {
        self.decoder = Decoder::Done;
        let Some(mut pooled) = self.conn.take() else { return };
        let clean = pooled.conn.as_ref().is_some_and(|c| c.rbuf.is_empty());
        pooled.reusable = self.keep_alive && self.writer.is_none() && clean;
        self.writer = None;
    }

    /// Goes on writing the request body, if any is left; a write that fails is given up
    /// (the response may still be whole), and the connection is then not reused.
    fn drive_writer(
        writer: &mut Option<Box<RequestWriter>>,
        keep_alive: &mut bool,
        conn: &mut Conn,
        cx: &mut Context<'_>,
    ) {
        let Some(w) = writer.as_mut() else { return };
        match w.poll_write(cx, &mut conn.io) {
            Poll::Pending => {}
            Poll::Ready(Ok(())) => {
                if let Some(w) = writer.take() {
                    conn.wbuf = w.into_buf();
                }
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "request body left unsent after the answer");
                *writer = None;
                *keep_alive = false;
            }
        }
    }
}

impl Body for WireBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            if matches!(this.decoder, Decoder::Done) {
                return Poll::Ready(None);
            }
            let Some(conn) = this.conn.as_mut().and_then(|p| p.conn.as_mut()) else {
                return Poll::Ready(None);
            };
            Self::drive_writer(&mut this.writer, &mut this.keep_alive, conn, cx);
            match &mut this.decoder {
                Decoder::Length(left) if !conn.rbuf.is_empty() => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(conn.rbuf.len());
                    let data = conn.rbuf.split_to(n).freeze();
                    *left -= n as u64;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Decoder::Chunked(chunked) => match chunked.step(&mut conn.rbuf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::Trailers(t)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Step::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::More) => {}
                    Err(e) => return Poll::Ready(Some(Err(this.fail(e.into())))),
                },
                Decoder::Close if !conn.rbuf.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(conn.rbuf.split().freeze()))));
                }
                _ => {}
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.decoder, Decoder::Close) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(this.fail(BodyError::Closed)))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(this.fail(e.into())))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.decoder, Decoder::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(n) => SizeHint::with_exact(n),
            Decoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl WireBody {
    /// The body cannot go on: the connection closes.
    fn fail(&mut self, e: BodyError) -> BodyError {
        tracing::debug!(error = %e, "upstream response body failed");
        self.keep_alive = false;
        self.finish();
        e
    }
}

/// An upstream's response body: hyper's (HTTP/2, TLS links, protocol switches) or read
/// by the pool's own wire code (HTTP/1.1 in the clear), which holds its connection.
#[derive(Debug)]
pub(crate) enum UpstreamResponse {
    Hyper(Incoming),
    Wire(WireBody),
}

impl UpstreamResponse {
    /// The head's fields that are not in its map, as the own HTTP/1.1 path writes them.
    pub(crate) fn relayed(&self) -> &Relayed {
        match self {
            UpstreamResponse::Wire(b) => &b.relayed,
            UpstreamResponse::Hyper(_) => Relayed::none(),
        }
    }
}

impl Body for UpstreamResponse {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpstreamResponse::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamResponse::Wire(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamResponse::Hyper(b) => b.is_end_stream(),
            UpstreamResponse::Wire(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamResponse::Hyper(b) => b.size_hint(),
            UpstreamResponse::Wire(b) => b.size_hint(),
        }
    }
}
