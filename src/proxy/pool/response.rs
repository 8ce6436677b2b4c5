//! Reading an upstream's response head: strict parsing (httparse), the limits, and what
//! frames the body that follows (RFC 9112 section 6.3).
//!
//! For the own HTTP/1.1 server path ([`Fields::Bytes`]) the ordinary fields skip the
//! `HeaderMap`: they are kept as the bytes that path writes to the client (the name
//! lowercased, as `HeaderName` would have it), since nothing between reads them. Only
//! the fields something does read or change go into the map: framing and hop-by-hop
//! (the encoder, `strip_hop_by_hop`) and the fleet's own `x-flowgate-*`; not
//! `Content-Length`, which the encoder writes from the body's length (the origin's is
//! kept as bytes for a HEAD). A `Connection`
//! naming other fields puts them all in the map, where the fields it names are removed.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};

use crate::proxy::headers::{FLOWGATE_PREFIX, field_name, spells};

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

/// Where a response's ordinary fields go: into the map, for every reader (hyper's
/// servers, probes, fetches), or kept as bytes for the own HTTP/1.1 server path, which
/// writes them out as they are and so skips about 400 instructions of map work per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Fields {
    #[default]
    Map,
    Bytes,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// With [`Fields::Bytes`], the fields not in `headers`.
    pub(crate) relayed: Relayed,
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
pub(crate) fn parse(buf: &mut BytesMut, method: &Method, fields: Fields) -> Result<Option<Head>, HeadError> {
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
    let mut as_bytes = fields == Fields::Bytes;
    let mut relayed = Relayed::default();
    // Room for the field the request path adds to every answer (`x-flowgate-region`), so
    // that adding it does not grow the map.
    let mut headers = HeaderMap::with_capacity(if as_bytes { 4 } else { parsed.headers.len() + 1 });
    // The values share one copy of the head rather than being copied one by one.
    let head = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    // What framing and keep-alive read, noted as the fields go in rather than looked up.
    let mut seen = Seen::default();
    let mut held_length = false;
    for h in parsed.headers.iter() {
        if as_bytes && !read_after(h.name.as_bytes()) {
            relayed.push(h.name.as_bytes(), h.value, len);
            continue;
        }
        if as_bytes && spells(b"content-length", h.name.as_bytes()) {
            // Not in the map: the encoder writes the body's length, which is this one.
            seen.length(h.value);
            held_length = true;
            continue;
        }
        let name = field_name(h.name.as_bytes()).map_err(|_| HeadError::Invalid)?;
        if seen.note(&name, h.value) {
            continue;
        }
        if as_bytes && name == CONNECTION {
            // It names fields to remove: they must all be in the map to be removed there.
            relayed.move_to_map(&mut headers)?;
            as_bytes = false;
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
    if let Some(length) = seen.length.filter(|_| held_length) {
        if !as_bytes {
            // Held before a `Connection` sent every field to the map.
            headers.append(CONTENT_LENGTH, HeaderValue::from_bytes(length).map_err(|_| HeadError::Invalid)?);
        } else if method == Method::HEAD {
            // The length of the GET, which only the origin knows; any other bodiless
            // answer's is dropped by the encoder.
            relayed.push(b"content-length", length, 0);
        }
    }
    let keep_alive = http11 && framing != Framing::Close && !seen.close;
    buf.advance(len);
    Ok(Some(Head { status, headers, relayed, framing, keep_alive }))
}

/// Whether something after the parse reads or changes this field, so that it must be in
/// the map (see the module's doc).
fn read_after(name: &[u8]) -> bool {
    let is = |lower: &[u8]| spells(lower, name);
    let named = match name.len() {
        2 => is(b"te"),
        7 => is(b"upgrade") || is(b"trailer"),
        10 => is(b"connection") || is(b"keep-alive"),
        14 => is(b"content-length"),
        16 => is(b"proxy-connection"),
        17 => is(b"transfer-encoding"),
        _ => false,
    };
    named || name.get(..FLOWGATE_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(FLOWGATE_PREFIX))
}

/// A response's fields kept as bytes ([`Fields::Bytes`]), as the client is to get them:
/// httparse checked their bytes by the rules `HeaderName` and `HeaderValue` apply.
#[derive(Debug, Default)]
pub(crate) struct Relayed {
    /// Each field as `name: value\r\n`, the name lowercased.
    pub(crate) bytes: Vec<u8>,
    /// One of them is `date` (the encoder adds one only when there is none).
    pub(crate) date: bool,
}

impl Relayed {
    /// None: what every answer not read by the own pool has.
    pub(crate) fn none() -> &'static Relayed {
        static NONE: Relayed = Relayed { bytes: Vec::new(), date: false };
        &NONE
    }

    /// Adds a field; `head` (the head's length) reserves room for all at the first.
    fn push(&mut self, name: &[u8], value: &[u8], head: usize) {
        if self.bytes.is_empty() {
            self.bytes.reserve(head);
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        self.bytes[start..].make_ascii_lowercase();
        self.bytes.extend_from_slice(b": ");
        self.bytes.extend_from_slice(value);
        self.bytes.extend_from_slice(b"\r\n");
        self.date |= name.len() == 4 && spells(b"date", name);
    }

    /// Moves the fields into `headers`, in their order.
    fn move_to_map(&mut self, headers: &mut HeaderMap) -> Result<(), HeadError> {
        for line in self.bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':').ok_or(HeadError::Invalid)?;
            let name = field_name(&line[..colon]).map_err(|_| HeadError::Invalid)?;
            let value = line.get(colon + 2..).ok_or(HeadError::Invalid)?;
            headers.append(name, HeaderValue::from_bytes(value).map_err(|_| HeadError::Invalid)?);
        }
        *self = Relayed::default();
        Ok(())
    }
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
    fn length(&mut self, value: &'a [u8]) {
        self.lengths += 1;
        if self.length.is_none() {
            self.length = Some(value);
        }
    }

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
            self.length(value);
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
