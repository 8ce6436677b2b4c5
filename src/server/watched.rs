//! The socket side of a connection's timers and head limits: a wrapper that reports
//! received bytes to the connection's [`ConnActivity`], whose watchdog enforces the header
//! and idle timeouts, and that tells a request line too long for hyper's buffer (414)
//! from a header section too long for it (431).
//!
//! hyper answers 431 whenever an HTTP/1 head outgrows its read buffer, even when the head
//! is one request line with no end in sight; it answers 414 only for a whole request line
//! that fits in the buffer. A target shorter than the buffer reaches the request path,
//! which refuses it over `[limits] max_uri_bytes`; one longer than the buffer never does.
//! So this wrapper relabels hyper's own 431 as a 414 when the line it was reading was a
//! request line longer than the limit. It can tell, because it sees every byte both ways:
//! - the bytes since the last line feed are the start of the line being read; that line
//!   is a request line when its first non-token byte is a space (`GET /…`), a header line
//!   when it is a colon (`Name: …`);
//! - hyper's own answers are the ones written while no request is in flight (an origin's
//!   431 is relayed while its request is), and they start a write of their own.
//!
//! Off for HTTP/2 (binary frames, no such answer) and after a protocol switch.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::vocab::activity::ConnActivity;

/// The status line hyper writes when a head outgrows its buffer.
const HEAD_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n";
/// What replaces it when the head was one long request line.
const URI_TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long\r\nx-flowgate-error: uri-too-long\r\n";

pin_project_lite::pin_project! {
    /// A socket (plain or TLS) that reports received bytes to its connection's watchdog.
    pub(super) struct Watched<T> {
        #[pin]
        inner: T,
        activity: Arc<ConnActivity>,
        line: LineWatch,
        // How much of `URI_TOO_LONG` is written, while it replaces hyper's status line.
        relabelling: Option<usize>,
    }
}

impl<T> Watched<T> {
    /// `max_uri` is `[limits] max_uri_bytes`, or `None` where there is no HTTP/1 to watch.
    pub(super) fn new(inner: T, activity: Arc<ConnActivity>, max_uri: Option<usize>) -> Watched<T> {
        let line =
            LineWatch { max: max_uri.unwrap_or(usize::MAX), off: max_uri.is_none(), ..LineWatch::default() };
        Watched { inner, activity, line, relabelling: None }
    }
}

/// The line being received: how long it is so far and what it looks like.
#[derive(Debug, Default)]
struct LineWatch {
    /// `[limits] max_uri_bytes`.
    max: usize,
    /// Bytes since the last line feed.
    len: usize,
    shape: Shape,
    /// Whether anything was received yet (the HTTP/2 preface comes first).
    started: bool,
    off: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Only token characters so far (a method, or a field name).
    #[default]
    Token,
    /// A token, then a space: a request line.
    RequestLine,
    /// Anything else: a header line, or not HTTP.
    Other,
}

impl LineWatch {
    /// Notes received bytes; `busy` when a request is in flight.
    fn on_read(&mut self, data: &[u8], busy: bool) {
        if self.off {
            return;
        }
        if busy {
            // A body, most likely: not scanned (uploads stay cheap), and whatever line
            // follows it is of unknown shape until the next line feed.
            self.shape = Shape::Other;
            return;
        }
        if !self.started {
            self.started = true;
            if data.starts_with(b"PRI * HTTP/2.0") {
                self.off = true;
                return;
            }
        }
        let fresh = match data.iter().rposition(|&b| b == b'\n') {
            Some(i) => {
                (self.len, self.shape) = (0, Shape::Token);
                &data[i + 1..]
            }
            None => data,
        };
        let mut rest = fresh;
        if self.shape == Shape::Token {
            let token = rest.iter().position(|&b| !is_tchar(b)).unwrap_or(rest.len());
            self.len += token;
            if let Some(&b) = rest.get(token) {
                self.shape = if b == b' ' && self.len > 0 { Shape::RequestLine } else { Shape::Other };
            }
            rest = &rest[token..];
        }
        self.len = self.len.saturating_add(rest.len());
    }

    /// Whether `out`, about to be written, is hyper's 431 for a request line over the limit.
    fn relabels(&mut self, out: &[u8], busy: bool) -> bool {
        if self.off {
            return false;
        }
        if out.starts_with(b"HTTP/1.1 101 ") {
            // A protocol switch: what follows is not HTTP/1.
            self.off = true;
            return false;
        }
        !busy && self.shape == Shape::RequestLine && self.len > self.max && out.starts_with(HEAD_TOO_LARGE)
    }
}

/// RFC 9110 section 5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            let fresh = &buf.filled()[before..];
            this.activity.on_bytes(fresh);
            this.line.on_read(fresh, this.activity.busy());
        }
        res
    }
}

impl<T: AsyncWrite> Watched<T> {
    /// Writes `URI_TOO_LONG` in place of hyper's status line, then reports that line as
    /// written; hyper writes the rest of its answer (length, date) after it.
    fn poll_relabel(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let done = this.relabelling.get_or_insert(0);
        while *done < URI_TOO_LONG.len() {
            let n = ready!(this.inner.as_mut().poll_write(cx, &URI_TOO_LONG[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        *this.relabelling = None;
        this.line.off = true;
        Poll::Ready(Ok(HEAD_TOO_LARGE.len()))
    }

    /// Whether this write is (or continues) the relabelling of hyper's 431.
    fn relabelling(self: Pin<&mut Self>, out: &[u8]) -> bool {
        let this = self.project();
        this.relabelling.is_some() || this.line.relabels(out, this.activity.busy())
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.as_mut().relabelling(buf) {
            return self.poll_relabel(cx);
        }
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        if self.as_mut().relabelling(first) {
            return self.poll_relabel(cx);
        }
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(reads: &[&[u8]]) -> LineWatch {
        let mut w = LineWatch { max: 16, ..LineWatch::default() };
        for r in reads {
            w.on_read(r, false);
        }
        w
    }

    #[test]
    fn a_long_request_line_relabels_hyper_s_431() {
        let mut w = watch(&[b"GET /aaaaaaaa", b"aaaaaaaaaaaaaaaa"]);
        assert!(w.relabels(HEAD_TOO_LARGE, false));
        // Not while a request is in flight: that 431 is an origin's.
        assert!(!w.relabels(HEAD_TOO_LARGE, true));
        assert!(!w.relabels(b"HTTP/1.1 200 OK\r\n", false));
    }

    #[test]
    fn a_long_header_line_or_a_short_request_line_does_not() {
        let mut w = watch(&[b"GET / HTTP/1.1\r\nX-Big: aaaaaaaaaaaaaaaaaaaaaaaa"]);
        assert!(!w.relabels(HEAD_TOO_LARGE, false));
        let mut w = watch(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /short"]);
        assert!(!w.relabels(HEAD_TOO_LARGE, false));
        let mut w = watch(&[b" GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaa"]);
        assert!(!w.relabels(HEAD_TOO_LARGE, false));
    }

    #[test]
    fn the_line_after_a_served_request_is_judged_on_its_own() {
        let mut w = watch(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGE", b"T /aaaaaaaaaaaaaaaaaaaaaaa"]);
        assert!(w.relabels(HEAD_TOO_LARGE, false));
    }

    #[test]
    fn what_arrives_during_a_request_is_of_unknown_shape() {
        let mut w = watch(&[b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n"]);
        w.on_read(b"abcdGET /aaaaaaaaaaaaaaaaaaaaaaaaa", true);
        w.on_read(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false);
        assert!(!w.relabels(HEAD_TOO_LARGE, false));
    }

    #[test]
    fn http2_and_switched_protocols_are_left_alone() {
        let mut w = watch(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]);
        assert!(!w.relabels(HEAD_TOO_LARGE, false));
        let mut w = watch(&[b"GET /ws HTTP/1.1\r\n\r\n"]);
        assert!(!w.relabels(b"HTTP/1.1 101 Switching Protocols\r\n", true));
        w.on_read(b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false);
        assert!(!w.relabels(HEAD_TOO_LARGE, false));
    }
}
