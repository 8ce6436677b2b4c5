//! Which request heads the own HTTP/1.1 path serves, decided without I/O: a strict,
//! common subset (HTTP/1.1, origin-form target, one `Host`, no transfer coding, no
//! `Expect`, no protocol switch, a small `Content-Length` body at most). Everything else
//! (and anything malformed) goes to hyper with the bytes read so far, so that every answer
//! to odd or hostile input stays hyper's and the request path's, as before this path.

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri, Version};

use crate::proxy::headers::field_name;

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The most header fields parsed on the stack; a head with more goes to hyper.
const MAX_FIELDS: usize = 128;

/// The limits a head is held to (the config's, as hyper and the request path apply them).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_header_bytes: usize,
    pub(super) max_headers: usize,
    pub(super) max_uri_bytes: usize,
    /// The longest body the request path keeps whole (`Proxy::keep_body_max`).
    pub(super) max_body: usize,
}

/// Why a head goes to hyper (kept for the log and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fallback {
    H2Preface,
    Malformed,
    TooLarge,
    TooManyFields,
    Version,
    Method,
    Target,
    Host,
    TransferEncoding,
    Expect,
    Upgrade,
    Connection,
    ContentLength,
    BodyTooLarge,
}

/// A head the own path serves: where its parts are in the buffer.
#[derive(Debug, Default)]
pub(super) struct Accepted {
    /// The head's length, blank line included; the body follows.
    pub(super) len: usize,
    pub(super) method: Option<Method>,
    pub(super) target: Range<usize>,
    /// Name and value of every field, in order.
    pub(super) fields: Vec<(Range<usize>, Range<usize>)>,
    pub(super) body_len: usize,
    /// The client said `Connection: close`.
    pub(super) close: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Not a whole head yet, and still within the limit: read more.
    Partial,
    /// Served here; the spans are in the `Accepted` passed in.
    Fast,
    Fallback(Fallback),
}

/// Decides what to do with `buf`, which starts a request head; `first` when it is the
/// connection's first (the only place an HTTP/2 preface can be). On `Fast`, `out` says
/// where the parts are (its field list is reused from one request to the next).
pub(super) fn decide(buf: &[u8], first: bool, limits: &Limits, out: &mut Accepted) -> Decision {
    use Fallback as F;
    if first {
        let n = buf.len().min(PREFACE.len());
        if buf[..n] == PREFACE[..n] {
            return Decision::Fallback(F::H2Preface);
        }
    }
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
    let max = limits.max_headers.min(MAX_FIELDS);
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields[..max]) {
        Ok(httparse::Status::Complete(len)) if len <= limits.max_header_bytes => len,
        Ok(httparse::Status::Complete(_)) => return Decision::Fallback(F::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() < limits.max_header_bytes => return Decision::Partial,
        Ok(httparse::Status::Partial) => return Decision::Fallback(F::TooLarge),
        Err(httparse::Error::TooManyHeaders) => return Decision::Fallback(F::TooManyFields),
        Err(_) => return Decision::Fallback(F::Malformed),
    };
    if req.version != Some(1) {
        return Decision::Fallback(F::Version);
    }
    let method = match req.method.map(|m| Method::from_bytes(m.as_bytes())) {
        Some(Ok(m)) if m != Method::CONNECT => m,
        _ => return Decision::Fallback(F::Method),
    };
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') || target.len() > limits.max_uri_bytes {
        return Decision::Fallback(F::Target);
    }
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    out.fields.clear();
    let (mut host, mut length, mut close) = (false, None::<usize>, false);
    for f in req.headers.iter() {
        let (name, value) = (f.name.as_bytes(), f.value);
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("host") {
            if host {
                return Decision::Fallback(F::Host);
            }
            host = true;
        } else if is("transfer-encoding") {
            return Decision::Fallback(F::TransferEncoding);
        } else if is("expect") {
            return Decision::Fallback(F::Expect);
        } else if is("upgrade") {
            return Decision::Fallback(F::Upgrade);
        } else if is("connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    return Decision::Fallback(F::Connection);
                }
            }
        } else if is("content-length") {
            let plain = !value.is_empty() && value.len() <= 18 && value.iter().all(u8::is_ascii_digit);
            if length.is_some() || !plain {
                return Decision::Fallback(F::ContentLength);
            }
            let n = value.iter().fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
            if n > limits.max_body {
                return Decision::Fallback(F::BodyTooLarge);
            }
            length = Some(n);
        }
        out.fields.push((at(name), at(value)));
    }
    if !host {
        return Decision::Fallback(F::Host);
    }
    out.len = len;
    out.method = Some(method);
    out.target = at(target.as_bytes());
    out.body_len = length.unwrap_or(0);
    out.close = close;
    Decision::Fast
}

/// The request head `decide` accepted, from a copy of its bytes (`head`, the first
/// `accepted.len` bytes of the buffer): field values are slices of it, not copies. `None`
/// when `http` refuses what httparse took (a target character, a field name): hyper then
/// answers it.
pub(super) fn build(head: &Bytes, accepted: &mut Accepted) -> Option<http::request::Parts> {
    let uri = Uri::from_maybe_shared(head.slice(accepted.target.clone())).ok()?;
    // Room for the fields the request path adds (`add_forwarding`'s four), so that adding
    // them does not grow the map. Not for the fleet's three on a forward to a peer: the
    // larger map costs every request about 250 instructions, the growth only those.
    let mut headers = HeaderMap::with_capacity(accepted.fields.len() + 4);
    for (name, value) in &accepted.fields {
        let name = field_name(&head[name.clone()]).ok()?;
        // A slice of the head, not a copy (checked again: the crate forbids `unsafe`).
        headers.append(name, HeaderValue::from_maybe_shared(head.slice(value.clone())).ok()?);
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = accepted.method.take()?;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_header_bytes: 256, max_headers: 4, max_uri_bytes: 32, max_body: 100 };

    fn d(head: &str) -> Decision {
        decide(head.as_bytes(), true, &LIMITS, &mut Accepted::default())
    }

    fn fb(head: &str) -> Fallback {
        match d(head) {
            Decision::Fallback(f) => f,
            other => panic!("{head:?}: {other:?}"),
        }
    }

    #[test]
    fn a_plain_get_is_served_and_its_spans_are_right() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\nrest";
        let mut a = Accepted::default();
        assert_eq!(decide(raw, true, &LIMITS, &mut a), Decision::Fast);
        assert_eq!(a.len, raw.len() - 4);
        assert!(a.close);
        let head = Bytes::copy_from_slice(&raw[..a.len]);
        let parts = build(&head, &mut a).expect("built");
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri, "/a?b=1");
        assert_eq!(parts.headers["host"], "x");
        assert_eq!(parts.headers.len(), 2);
    }

    #[test]
    fn a_small_body_with_a_plain_length_is_served() {
        let mut a = Accepted::default();
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(decide(raw, false, &LIMITS, &mut a), Decision::Fast);
        assert_eq!((a.body_len, a.close), (12, false));
    }

    #[test]
    fn an_unfinished_head_waits_until_the_limit_then_goes_to_hyper() {
        assert_eq!(d("GET / HTTP/1.1\r\nHost: x\r\n"), Decision::Partial);
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(300));
        assert_eq!(fb(&long), Fallback::TooLarge);
        let whole = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "a".repeat(300));
        assert_eq!(fb(&whole), Fallback::TooLarge);
    }

    #[test]
    fn the_http2_preface_or_its_start_goes_to_hyper_on_a_first_request_only() {
        assert_eq!(fb("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Fallback::H2Preface);
        assert_eq!(fb("PRI * HT"), Fallback::H2Preface);
        assert_eq!(fb("P"), Fallback::H2Preface);
        let later = decide(b"PRI * HTTP/2.0\r\n\r\n", false, &LIMITS, &mut Accepted::default());
        assert_ne!(later, Decision::Fallback(Fallback::H2Preface));
        assert_eq!(d("POST / HTTP/1.1\r\n"), Decision::Partial);
    }

    #[test]
    fn malformed_and_crowded_heads_go_to_hyper() {
        assert_eq!(fb("GET / HTTP/1.1\r\nHo st: x\r\n\r\n"), Fallback::Malformed);
        assert_eq!(fb("GET  / HTTP/1.1\r\n\r\n"), Fallback::Malformed);
        assert_eq!(
            fb("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"),
            Fallback::TooManyFields
        );
    }

    #[test]
    fn other_versions_methods_and_targets_go_to_hyper() {
        assert_eq!(fb("GET / HTTP/1.0\r\nHost: x\r\n\r\n"), Fallback::Version);
        assert_eq!(fb("CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"), Fallback::Method);
        assert_eq!(fb("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"), Fallback::Target);
        assert_eq!(fb("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), Fallback::Target);
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(40));
        assert_eq!(fb(&long), Fallback::Target);
    }

    #[test]
    fn host_must_be_there_once() {
        assert_eq!(fb("GET / HTTP/1.1\r\n\r\n"), Fallback::Host);
        assert_eq!(fb("GET / HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n"), Fallback::Host);
    }

    #[test]
    fn codings_expectations_and_switches_go_to_hyper() {
        assert_eq!(
            fb("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Fallback::TransferEncoding
        );
        assert_eq!(fb("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"), Fallback::Expect);
        assert_eq!(fb("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"), Fallback::Upgrade);
        assert_eq!(fb("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n"), Fallback::Connection);
        assert_eq!(
            fb("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-foo\r\n\r\n"),
            Fallback::Connection
        );
    }

    #[test]
    fn only_one_plain_small_content_length_is_served() {
        let cl = |v: &str| fb(&format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {v}\r\n\r\n"));
        assert_eq!(cl("+5"), Fallback::ContentLength);
        assert_eq!(cl("5, 5"), Fallback::ContentLength);
        assert_eq!(cl("0x5"), Fallback::ContentLength);
        assert_eq!(cl("99999999999999999999"), Fallback::ContentLength);
        assert_eq!(cl("101"), Fallback::BodyTooLarge);
        let twice = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(fb(twice), Fallback::ContentLength);
    }

    #[test]
    fn a_target_http_refuses_is_not_built() {
        let raw = b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut a = Accepted::default();
        if decide(raw, true, &LIMITS, &mut a) == Decision::Fast {
            let head = Bytes::copy_from_slice(&raw[..a.len]);
            assert!(build(&head, &mut a).is_none());
        }
    }
}
