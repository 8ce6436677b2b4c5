//! Reading an upstream's response head: strict parsing (httparse), the limits, and what
//! frames the body that follows (RFC 9112 section 6.3).

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};

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
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    // The values share one copy of the head rather than being copied one by one.
    let head = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| HeadError::Invalid)?;
        let start = (h.value.as_ptr() as usize).wrapping_sub(base);
        let value = match head.get(start..start.wrapping_add(h.value.len())) {
            Some(_) if !h.value.is_empty() => head.slice(start..start + h.value.len()),
            _ => Bytes::new(),
        };
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| HeadError::Invalid)?;
        headers.append(name, value);
    }
    buf.advance(len);
    let framing = framing(status, method, &headers)?;
    let keep_alive = http11 && framing != Framing::Close && !has_token(&headers, &CONNECTION, "close");
    Ok(Some(Head { status, headers, framing, keep_alive }))
}

/// The body's framing, refusing every ambiguity a smuggling attack could use.
fn framing(status: StatusCode, method: &Method, headers: &HeaderMap) -> Result<Framing, HeadError> {
    let te = headers.get_all(&TRANSFER_ENCODING);
    let mut lengths = headers.get_all(&CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() {
        return Err(HeadError::BadLength);
    }
    let chunked = if te.iter().next().is_some() {
        if length.is_some() {
            return Err(HeadError::BadLength);
        }
        // Only `chunked` alone: another coding would have to be relayed as a
        // hop-by-hop field the client never asked for.
        let mut codings = te.iter().flat_map(|v| v.as_bytes().split(|&b| b == b','));
        let first = codings.next().map(<[u8]>::trim_ascii);
        if !first.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) || codings.next().is_some() {
            return Err(HeadError::BadCoding);
        }
        true
    } else {
        false
    };
    let length = length.map(|v| parse_length(v.as_bytes())).transpose()?;
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

/// Whether a comma-separated field `name` lists `token`.
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}
