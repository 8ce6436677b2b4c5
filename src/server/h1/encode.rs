//! The response as the own HTTP/1.1 path writes it: the status line, the fields, a
//! `date` when the answer has none, and the framing hyper's server would choose, so that a
//! client cannot tell the two paths apart; then the body's frames, chunk-framed when the
//! length is not known. Everything is appended to the connection's one write buffer.

use std::cell::RefCell;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::proxy::Relayed;

/// An IMF-fixdate is always this long (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LEN: usize = 29;

/// How the body goes out after the head.
#[derive(Debug)]
pub(super) struct Framing {
    /// No body at all (HEAD, 1xx, 204, 304).
    pub(super) bodiless: bool,
    pub(super) chunked: bool,
    /// Bytes still owed when the length was declared.
    pub(super) remaining: Option<u64>,
    /// The head says `connection: close`: the connection ends after this answer.
    pub(super) close: bool,
    /// Trailer fields the head announced (`Trailer`); others are dropped, as hyper does.
    trailers: Vec<HeaderName>,
    /// The last chunk (with any trailers) is written.
    ended: bool,
}

/// What the head is written from: the answer, and what hyper would know beside it.
pub(super) struct Answer<'a> {
    pub(super) status: StatusCode,
    pub(super) headers: &'a HeaderMap,
    /// Fields kept as bytes beside the map, written as they are.
    pub(super) relayed: &'a Relayed,
    pub(super) head_request: bool,
    /// The body has nothing to send (`is_end_stream`).
    pub(super) empty: bool,
    /// The body's exact size, when it knows it.
    pub(super) exact: Option<u64>,
    /// The connection closes after this answer: say so.
    pub(super) close: bool,
}

/// Writes the head of `a` into `buf`; returns how the body must be framed.
pub(super) fn head(buf: &mut Vec<u8>, a: &Answer<'_>) -> Framing {
    let status = a.status;
    if status == StatusCode::OK {
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        buf.extend_from_slice(b"HTTP/1.1 ");
        buf.extend_from_slice(status.as_str().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    // RFC 9110 sections 6.4.1 and 9.3.2, as hyper's server applies them.
    let no_length =
        status.is_informational() || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let bodiless = a.head_request || no_length;
    let mut f = Framing {
        bodiless,
        chunked: false,
        remaining: None,
        close: a.close,
        trailers: Vec::new(),
        ended: false,
    };
    buf.extend_from_slice(&a.relayed.bytes);
    let (mut wrote_len, mut wrote_date, mut said_close) = (false, a.relayed.date, false);
    for (name, value) in a.headers {
        if name == CONTENT_LENGTH {
            // An empty body's length field is only kept for HEAD (the length of the GET).
            if wrote_len || (a.empty && !a.head_request) {
                continue;
            }
            wrote_len = true;
            f.remaining = a.exact.or_else(|| parse_length(value));
        } else if name == TRANSFER_ENCODING {
            if bodiless || wrote_len {
                continue;
            }
            // A coding that does not end in `chunked` gets it added, as hyper does.
            wrote_len = true;
            f.chunked = true;
            field(buf, name, value.as_bytes());
            buf.truncate(buf.len() - 2);
            if !ends_chunked(value) {
                buf.extend_from_slice(b", chunked");
            }
            buf.extend_from_slice(b"\r\n");
            continue;
        } else if name == CONNECTION {
            if value.as_bytes().split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close")) {
                f.close = true;
                said_close = true;
            }
        } else if name == DATE {
            wrote_date = true;
        } else if name == TRAILER {
            if bodiless {
                continue;
            }
            let names = value.to_str().unwrap_or("").split(',');
            f.trailers.extend(names.filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok()));
        }
        field(buf, name, value.as_bytes());
    }
    if f.close && !said_close {
        buf.extend_from_slice(b"connection: close\r\n");
    }
    if !wrote_len {
        match (a.empty, a.exact) {
            (true, _) | (false, Some(0)) => {
                if !no_length && !a.head_request {
                    buf.extend_from_slice(b"content-length: 0\r\n");
                }
                f.remaining = Some(0);
            }
            (false, Some(n)) => {
                if !no_length {
                    // Writing to a Vec cannot fail.
                    let _ = write!(buf, "content-length: {n}\r\n");
                }
                f.remaining = Some(n);
            }
            (false, None) if !bodiless => {
                buf.extend_from_slice(b"transfer-encoding: chunked\r\n");
                f.chunked = true;
            }
            (false, None) => {}
        }
    }
    if !wrote_date {
        buf.extend_from_slice(b"date: ");
        extend_date(buf);
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"\r\n");
    f
}

impl Framing {
    /// Queues the framing before a data frame of `len` bytes; how many of them to send
    /// (a frame past the declared length is cut there).
    pub(super) fn before_data(&mut self, buf: &mut Vec<u8>, len: usize) -> usize {
        if self.chunked {
            if len > 0 {
                // Writing to a Vec cannot fail.
                let _ = write!(buf, "{len:X}\r\n");
            }
            return len;
        }
        match &mut self.remaining {
            Some(left) => {
                let n = (len as u64).min(*left);
                *left -= n;
                n as usize
            }
            None => len,
        }
    }

    /// What follows a data frame's bytes.
    pub(super) fn after_data(&self, len: usize) -> &'static [u8] {
        if self.chunked && len > 0 { b"\r\n" } else { b"" }
    }

    /// The trailers frame: the last chunk with the announced fields (chunked bodies only).
    pub(super) fn trailers(&mut self, buf: &mut Vec<u8>, trailers: &HeaderMap) {
        if !self.chunked || self.ended {
            return;
        }
        let start = buf.len();
        buf.extend_from_slice(b"0\r\n");
        let mut any = false;
        for (name, value) in trailers {
            if self.trailers.contains(name) && allowed_trailer(name) {
                field(buf, name, value.as_bytes());
                any = true;
            }
        }
        if any {
            buf.extend_from_slice(b"\r\n");
            self.ended = true;
        } else {
            buf.truncate(start);
        }
    }

    /// The end of the body; whether it was the length the head said.
    pub(super) fn finish(&mut self, buf: &mut Vec<u8>) -> bool {
        if self.chunked && !self.ended {
            buf.extend_from_slice(b"0\r\n\r\n");
            self.ended = true;
        }
        self.chunked || self.remaining.is_none_or(|n| n == 0)
    }
}

/// Whether the request method makes the answer bodiless.
pub(super) fn is_head(m: &Method) -> bool {
    m == Method::HEAD
}

fn field(buf: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
    buf.extend_from_slice(name.as_str().as_bytes());
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

fn parse_length(v: &HeaderValue) -> Option<u64> {
    v.to_str().ok()?.trim().parse().ok()
}

fn ends_chunked(v: &HeaderValue) -> bool {
    v.as_bytes()
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// RFC 9110 section 6.5.1: no framing, routing or authentication field in trailers.
fn allowed_trailer(name: &HeaderName) -> bool {
    use http::header::*;
    ![CONTENT_LENGTH, TRANSFER_ENCODING, TRAILER, HOST, CONNECTION, CONTENT_TYPE, AUTHORIZATION, TE]
        .contains(name)
}

thread_local! {
    /// The `date` value, formatted once per second per thread (as hyper caches it).
    static DATE_CACHE: RefCell<(u64, [u8; DATE_LEN])> = const { RefCell::new((u64::MAX, [0; DATE_LEN])) };
}

fn extend_date(buf: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    DATE_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            if text.len() == DATE_LEN {
                c.1.copy_from_slice(text.as_bytes());
                c.0 = secs;
            } else {
                buf.extend_from_slice(text.as_bytes());
                return;
            }
        }
        buf.extend_from_slice(&c.1);
    });
}

#[cfg(test)]
mod tests;
