//! Reading an upstream's response head: strict parsing (httparse), the limits, and what
//! frames the body that follows (RFC 9112 section 6.3).

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};

use crate::proxy::headers::field_name;

/// Largest response head read: nginx's `proxy_buffer_size` is 4 or 8 KiB, so this is
/// more generous; a longer head is an upstream protocol error.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most header fields in a response head (nginx has no count limit, only the size one).
pub(crate) const MAX_HEADERS: usize = 256;

/// Why a response head (or a body's framing) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("the response head is not valid HTTP/1.1")]
    Invalid,
    #[error("the response head is longer than the limit")]
    TooLarge,
    #[error("the response has more header fields than the limit")]
    TooManyHeaders,
    #[error("the response's length is ambiguous or not a number")]
    BadLength,
    #[error("the response's transfer coding is not a final chunked")]
    BadCoding,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes: the connection cannot be reused.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    /// The connection may carry another request once this response is read.
    pub(crate) keep_alive: bool,
}

impl Head {
    /// The response to relay: always HTTP/1.1, since this proxy speaks its own version.
    pub(crate) fn into_response<B>(self, body: B) -> Response<B> {
        let mut resp = Response::new(body);
        *resp.status_mut() = self.status;
        *resp.version_mut() = Version::HTTP_11;
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// Parses a complete head at the start of `buf` and removes it; `Ok(None)` when more
/// bytes are needed. `method` is the request's, since a HEAD answer has no body.
pub(crate) fn parse(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, HeadError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Left uninitialised: clearing 256 slots would cost more than parsing a usual head.
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Invalid),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let code = parsed.code.ok_or(HeadError::Invalid)?;
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Invalid)?;
    let http11 = parsed.version == Some(1);
    // Room for the field the request path adds to every answer (`x-flowgate-region`), so
    // that adding it does not grow the map.
    let mut headers = HeaderMap::with_capacity(parsed.headers.len() + 1);
    // The values share one copy of the head rather than being copied one by one.
    let head = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    // What framing and keep-alive read, noted as the fields go in rather than looked up.
    let mut seen = Seen::default();
    for h in parsed.headers.iter() {
        let name = field_name(h.name.as_bytes()).map_err(|_| HeadError::Invalid)?;
        if seen.note(&name, h.value) {
            continue;
        }
        let start = (h.value.as_ptr() as usize).wrapping_sub(base);
        let value = match head.get(start..start.wrapping_add(h.value.len())) {
            Some(_) if !h.value.is_empty() => head.slice(start..start + h.value.len()),
            _ => Bytes::new(),
        };
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| HeadError::Invalid)?;
        headers.append(name, value);
    }
    let framing = framing(status, method, &seen)?;
    let keep_alive = http11 && framing != Framing::Close && !seen.close;
    buf.advance(len);
    Ok(Some(Head { status, headers, framing, keep_alive }))
}

/// What the framing fields of a head said, gathered in one pass over its fields.
#[derive(Debug, Default)]
struct Seen<'a> {
    /// The first `Content-Length` value, and whether there was more than one.
    length: Option<&'a [u8]>,
    lengths: usize,
    /// The `Transfer-Encoding` codings, across all its fields, in order.
    codings: usize,
    /// The first coding is `chunked`.
    chunked_first: bool,
    te: bool,
    /// `Connection` lists `close`.
    close: bool,
}

impl<'a> Seen<'a> {
    /// Notes one field; true when it is a `Connection` that says only `keep-alive` or
    /// `close`, which the map does without: it says nothing past this connection, and the
    /// request path would only remove it again (`strip_hop_by_hop`).
    fn note(&mut self, name: &HeaderName, value: &'a [u8]) -> bool {
        if name == CONNECTION {
            let mut plain = true;
            for t in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if t.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if !t.eq_ignore_ascii_case(b"keep-alive") {
                    plain = false;
                }
            }
            return plain;
        }
        if name == CONTENT_LENGTH {
            self.lengths += 1;
            if self.length.is_none() {
                self.length = Some(value);
            }
        } else if name == TRANSFER_ENCODING {
            self.te = true;
            for c in value.split(|&b| b == b',') {
                if self.codings == 0 {
                    self.chunked_first = c.trim_ascii().eq_ignore_ascii_case(b"chunked");
                }
                self.codings += 1;
            }
        }
        false
    }
}

/// The body's framing, refusing every ambiguity a smuggling attack could use.
fn framing(status: StatusCode, method: &Method, seen: &Seen<'_>) -> Result<Framing, HeadError> {
    if seen.lengths > 1 {
        return Err(HeadError::BadLength);
    }
    let chunked = if seen.te {
        if seen.length.is_some() {
            return Err(HeadError::BadLength);
        }
        // Only `chunked` alone: another coding would have to be relayed as a
        // hop-by-hop field the client never asked for.
        if !seen.chunked_first || seen.codings != 1 {
            return Err(HeadError::BadCoding);
        }
        true
    } else {
        false
    };
    let length = seen.length.map(parse_length).transpose()?;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || method == Method::HEAD
    {
        return Ok(Framing::Empty);
    }
    Ok(match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::Close,
    })
}

/// A decimal length: digits only (no sign, no list, no spaces), within u64.
fn parse_length(v: &[u8]) -> Result<u64, HeadError> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::BadLength);
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}
