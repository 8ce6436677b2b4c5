//! Writing a request upstream: the head into a reused buffer, then the body, a kept one in
//! the same write and a streamed one frame by frame (chunked when its length is unknown,
//! with the client's trailers after the last chunk; a body with a length drops trailers).

use std::future::Future;
use std::io::{IoSlice, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::uri::Authority;
use http::{HeaderMap, Method};
use http_body::Body;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::proxy::client_body::ClientBody;
use crate::proxy::hop::NextHop;
use crate::proxy::request_body::{UpstreamBody, expects_continue};

/// How long a request with `Expect: 100-continue` waits for the origin's `100 Continue`
/// before sending its body anyway (an origin may ignore `Expect`).
pub(crate) const CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// Why writing the request stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("writing to the upstream failed: {0}")]
    Io(#[from] std::io::Error),
    /// The client's own body failed (cut short, malformed chunks).
    #[error("the client's request body failed: {0}")]
    Client(hyper::Error),
}

/// The request being written: what is queued (framing bytes, then data, then a suffix)
/// and the body still to read.
#[derive(Debug)]
pub(crate) struct RequestWriter {
    /// The head, then the framing of each streamed frame.
    buf: Vec<u8>,
    pos: usize,
    data: Bytes,
    tail: &'static [u8],
    body: Source,
    /// Closed while a request that expects `100 Continue` has not been given it.
    gate: Option<Pin<Box<Sleep>>>,
    /// The kept body, to write the same request again on another connection.
    kept: Bytes,
    /// The client's stream has been read from: the request cannot be sent again.
    consumed: bool,
}

#[derive(Debug)]
enum Source {
    Done,
    Stream { body: ClientBody, chunked: bool },
}

impl RequestWriter {
    /// Writes the head `parts` into `buf` (cleared first), in origin-form whatever form its
    /// target has, with the fields of `next_hop` in place of any it has, and queues `body`.
    pub(crate) fn new(
        mut buf: Vec<u8>,
        parts: &Parts,
        body: UpstreamBody,
        authority: &Authority,
        next_hop: Option<NextHop<'_>>,
    ) -> RequestWriter {
        buf.clear();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let had_length = head_line(&mut buf, parts, target, authority, next_hop);
        let mut w = RequestWriter {
            buf,
            pos: 0,
            data: Bytes::new(),
            tail: b"",
            body: Source::Done,
            gate: None,
            kept: Bytes::new(),
            consumed: false,
        };
        match body {
            UpstreamBody::Kept(b) => {
                let b = b.into_bytes();
                let payload = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
                if !b.is_empty() || payload || had_length {
                    length(&mut w.buf, b.len() as u64);
                }
                w.data = b.clone();
                w.kept = b;
            }
            UpstreamBody::Stream(body) => {
                let exact = body.size_hint().exact();
                match exact {
                    Some(n) => length(&mut w.buf, n),
                    None => w.buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
                }
                if expects_continue(&parts.headers) {
                    w.gate = Some(Box::pin(tokio::time::sleep(CONTINUE_WAIT)));
                }
                w.body = Source::Stream { body, chunked: exact.is_none() };
            }
        }
        w.buf.extend_from_slice(b"\r\n");
        w
    }

    /// Whether the same request can still be written on another connection.
    pub(crate) fn resendable(&self) -> bool {
        !self.consumed
    }

    /// Starts over, for another connection (only when `resendable`).
    pub(crate) fn rewind(&mut self) {
        self.pos = 0;
        self.data = self.kept.clone();
        self.tail = b"";
    }

    /// The origin said `100 Continue`: the body may go.
    pub(crate) fn open_gate(&mut self) {
        self.gate = None;
    }

    /// Still waiting for `100 Continue`: the client's body has not been touched.
    pub(crate) fn gated(&self) -> bool {
        self.gate.is_some()
    }

    /// What is queued before the body (the head, at first).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Gives back the buffer for the connection's next request.
    pub(crate) fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    /// Writes what is queued and the body behind it, until all of it is written.
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut TcpStream,
    ) -> Poll<Result<(), WriteError>> {
        loop {
            while self.pos < self.buf.len() || !self.data.is_empty() || !self.tail.is_empty() {
                let slices =
                    [IoSlice::new(&self.buf[self.pos..]), IoSlice::new(&self.data), IoSlice::new(self.tail)];
                let n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()));
                }
                self.advance(n);
            }
            let Source::Stream { body, chunked } = &mut self.body else { return Poll::Ready(Ok(())) };
            let chunked = *chunked;
            if let Some(gate) = &mut self.gate {
                ready!(gate.as_mut().poll(cx));
                self.gate = None;
            }
            self.consumed = true;
            let frame = match ready!(Pin::new(body).poll_frame(cx)) {
                None => {
                    if chunked {
                        self.tail = b"0\r\n\r\n";
                    }
                    self.body = Source::Done;
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Err(WriteError::Client(e))),
                Some(Ok(frame)) => frame,
            };
            self.buf.clear();
            self.pos = 0;
            match frame.into_data() {
                // An empty chunk would end a chunked body.
                Ok(data) if data.is_empty() => {}
                Ok(data) => {
                    if chunked {
                        // Writing to a Vec cannot fail.
                        let _ = write!(self.buf, "{:X}\r\n", data.len());
                        self.tail = b"\r\n";
                    }
                    self.data = data;
                }
                Err(frame) => {
                    if let (true, Ok(trailers)) = (chunked, frame.into_trailers()) {
                        self.buf.extend_from_slice(b"0\r\n");
                        fields(&mut self.buf, &trailers);
                        self.buf.extend_from_slice(b"\r\n");
                        self.body = Source::Done;
                    }
                }
            }
        }
    }

    /// Marks `n` queued bytes written, in queue order.
    fn advance(&mut self, mut n: usize) {
        let head = (self.buf.len() - self.pos).min(n);
        self.pos += head;
        n -= head;
        let data = self.data.len().min(n);
        self.data.advance(data);
        n -= data;
        self.tail = &self.tail[n.min(self.tail.len())..];
    }
}

/// The request line and the fields as the request path left them, but for the framing
/// fields (written by the caller for the body actually sent); `Host` when absent: the
/// client's authority when its target named one (an HTTP/2 client's, after the fields, as
/// if added to them), else the endpoint's (first); the fleet fields of `next_hop` after
/// the others, in place of any they had. Says whether the fields had a `Content-Length`.
/// The fields are looked at in one pass, without a hashed look-up.
fn head_line(
    buf: &mut Vec<u8>,
    parts: &Parts,
    target: &str,
    authority: &Authority,
    next_hop: Option<NextHop<'_>>,
) -> bool {
    buf.extend_from_slice(parts.method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    let fields_at = buf.len();
    let (mut host, mut length) = (false, false);
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH {
            length = true;
            continue;
        }
        if name == TRANSFER_ENCODING || (next_hop.is_some() && NextHop::replaces(name)) {
            continue;
        }
        host |= name == HOST;
        field(buf, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(next) = next_hop {
        next.each(|name, value| field(buf, name, value));
    }
    if !host {
        match parts.uri.authority() {
            Some(a) => field(buf, b"host", a.as_str().as_bytes()),
            // Rare (an HTTP/1.0 client's request): the endpoint's goes first, as it did.
            None => {
                let mut line = Vec::new();
                field(&mut line, b"host", authority.as_str().as_bytes());
                buf.splice(fields_at..fields_at, line);
            }
        }
    }
    length
}

fn fields(buf: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        field(buf, name.as_str().as_bytes(), value.as_bytes());
    }
}

fn field(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

fn length(buf: &mut Vec<u8>, n: u64) {
    // Writing to a Vec cannot fail.
    let _ = write!(buf, "content-length: {n}\r\n");
}
