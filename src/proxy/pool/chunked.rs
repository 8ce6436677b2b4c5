//! Decoding a chunked response body (RFC 9112 section 7.1) out of the read buffer, one
//! step at a time: the data of each chunk as it arrives, then the trailers.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::response::{MAX_HEAD_BYTES, MAX_HEADERS};

/// Longest chunk-size line (size and extensions) accepted.
const MAX_SIZE_LINE: usize = 4096;

/// What the buffer gave.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// The buffer holds no complete next step: read more.
    More,
}

/// The chunked body is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked encoding from the upstream")]
pub(crate) struct ChunkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
}

impl Chunked {
    pub(crate) fn new() -> Chunked {
        Chunked { state: State::Size }
    }

    /// The next step out of `buf`, consuming what it used.
    pub(crate) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        return if buf.len() > MAX_SIZE_LINE { Err(ChunkError) } else { Ok(Step::More) };
                    };
                    let size = chunk_size(&buf[..end])?;
                    buf.advance(end + 2);
                    self.state = if size == 0 { State::Trailers } else { State::Data(size) };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => return self.trailers(buf),
                State::Done => return Ok(Step::End),
            }
        }
    }

    /// The trailer section after the last chunk: empty (the common case) or fields.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Step::End);
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (len, fields) = match httparse::parse_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(done)) => done,
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => return Ok(Step::More),
            _ => return Err(ChunkError),
        };
        let mut map = HeaderMap::with_capacity(fields.len());
        for f in fields {
            let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| ChunkError)?;
            let value = HeaderValue::from_bytes(f.value).map_err(|_| ChunkError)?;
            map.append(name, value);
        }
        buf.advance(len);
        self.state = State::Done;
        Ok(if map.is_empty() { Step::End } else { Step::Trailers(map) })
    }
}

/// The hex size at the start of a chunk-size line; extensions after `;` are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 {
        return Err(ChunkError);
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16).ok_or(ChunkError)?;
        Ok(n << 4 | u64::from(v))
    })
}
