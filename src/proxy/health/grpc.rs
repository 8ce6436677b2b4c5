//! The standard gRPC health check, `grpc.health.v1.Health/Check`, for `health = "grpc"`
//! origins: one unary call per probe over the origin's pooled HTTP/2 connection.
//!
//! Its two messages have one field each, `HealthCheckRequest { string service = 1; }` and
//! `HealthCheckResponse { ServingStatus status = 1; }`, so they are encoded and decoded here
//! by hand, with the gRPC framing around them (a compressed flag, then a 4-byte big-endian
//! length). The default build has no protobuf stack: prost or tonic would bring a code
//! generator (`protoc` at build time, which only the `etcd` feature asks for) to the
//! default build for two fields.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};

use crate::proxy::forward::{ProbeExchange, Upstream};

/// The method every gRPC health service answers.
pub(crate) const PATH: &str = "/grpc.health.v1.Health/Check";

/// `HealthCheckResponse.ServingStatus`.
pub(crate) const UNKNOWN: u64 = 0;
pub(crate) const SERVING: u64 = 1;
pub(crate) const NOT_SERVING: u64 = 2;
pub(crate) const SERVICE_UNKNOWN: u64 = 3;

/// Largest answer read: a health response is 7 bytes on the wire.
const MAX_ANSWER: usize = 4096;

/// Asks endpoint `i` whether `service` ("" for the whole server) is serving: `Ok` only for
/// HTTP 200, `grpc-status` 0 and `SERVING`; otherwise why not.
pub(crate) async fn check(
    upstream: &Upstream,
    i: usize,
    service: &str,
    timeout: Duration,
) -> Result<(), String> {
    let answer =
        upstream.probe_exchange(i, request(service), timeout, MAX_ANSWER).await.map_err(|e| e.to_string())?;
    verdict(&answer)
}

/// The `Check` call for `service`.
pub(crate) fn request(service: &str) -> Request<Bytes> {
    let mut req = Request::new(request_frame(service));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static(PATH);
    let h = req.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(http::header::TE, HeaderValue::from_static("trailers"));
    h.insert(http::header::USER_AGENT, HeaderValue::from_static("flowgate-health"));
    req
}

/// A length-prefixed `HealthCheckRequest`: the empty message for the whole server, else
/// field 1 (tag `0x0a`: field 1, length-delimited), its varint length and the name.
pub(crate) fn request_frame(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + msg.len());
    frame.put_u8(0);
    // A service name longer than 4 GiB cannot come from a config file.
    frame.put_u32(u32::try_from(msg.len()).unwrap_or(u32::MAX));
    frame.put_slice(&msg);
    frame.freeze()
}

/// Whether an answer says `SERVING`, or why not.
pub(crate) fn verdict(answer: &ProbeExchange) -> Result<(), String> {
    if answer.status != StatusCode::OK {
        return Err(format!("HTTP status {}", answer.status.as_u16()));
    }
    // In the trailers; in the headers of a trailers-only answer (no message at all).
    let from = |h: &HeaderMap| h.get("grpc-status").map(|v| (v.clone(), h.get("grpc-message").cloned()));
    let (code, message) = answer
        .trailers
        .as_ref()
        .and_then(from)
        .or_else(|| from(&answer.headers))
        .ok_or("no grpc-status in the answer")?;
    if code.as_bytes() != b"0" {
        let message = message.map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned()).unwrap_or_default();
        return Err(format!("grpc-status {} {message}", String::from_utf8_lossy(code.as_bytes()))
            .trim_end()
            .to_owned());
    }
    match response_status(&answer.body)? {
        SERVING => Ok(()),
        other => Err(format!("status {}", status_name(other))),
    }
}

/// The `ServingStatus` of one length-prefixed `HealthCheckResponse` (and nothing after it).
pub(crate) fn response_status(body: &[u8]) -> Result<u64, String> {
    let Some((head, rest)) = body.split_first_chunk::<5>() else {
        return Err(format!("{} bytes of answer, no whole gRPC message", body.len()));
    };
    if head[0] != 0 {
        return Err("compressed message (none was asked for)".to_owned());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != len {
        return Err(format!("message of {len} bytes announced, {} bytes sent", rest.len()));
    }
    decode_status(rest)
}

/// Field 1 (varint) of a `HealthCheckResponse`: the last one wins, absent is `UNKNOWN`, and
/// other fields are skipped, as protobuf decoders do.
fn decode_status(mut msg: &[u8]) -> Result<u64, String> {
    let mut status = UNKNOWN;
    while !msg.is_empty() {
        let key = varint(&mut msg)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = varint(&mut msg)?,
            (1, wire) => return Err(format!("field 1 has wire type {wire}, not varint")),
            (_, 0) => {
                varint(&mut msg)?;
            }
            (_, wire @ (1 | 2 | 5)) => {
                let n = match wire {
                    1 => 8,
                    5 => 4,
                    _ => usize::try_from(varint(&mut msg)?).map_err(|_| "length out of range")?,
                };
                msg = msg.get(n..).ok_or("field runs past the message")?;
            }
            (_, wire) => return Err(format!("unsupported wire type {wire}")),
        }
    }
    Ok(status)
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("varint runs past the message")?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".to_owned())
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn status_name(s: u64) -> String {
    match s {
        UNKNOWN => "UNKNOWN".to_owned(),
        SERVING => "SERVING".to_owned(),
        NOT_SERVING => "NOT_SERVING".to_owned(),
        SERVICE_UNKNOWN => "SERVICE_UNKNOWN".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: &[u8],
        trailers: Option<&[(&'static str, &'static str)]>,
    ) -> ProbeExchange {
        let map = |kv: &[(&'static str, &'static str)]| {
            kv.iter()
                .map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v)))
                .collect::<HeaderMap>()
        };
        ProbeExchange {
            status: StatusCode::from_u16(status).expect("status"),
            headers: map(headers),
            body: Bytes::copy_from_slice(body),
            trailers: trailers.map(map),
        }
    }

    const OK_TRAILERS: &[(&str, &str)] = &[("grpc-status", "0")];
    const SERVING_FRAME: &[u8] = &[0, 0, 0, 0, 2, 0x08, 0x01];

    #[test]
    fn the_whole_server_is_asked_with_the_empty_message() {
        assert_eq!(&request_frame("")[..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_service_is_field_1_length_delimited() {
        assert_eq!(&request_frame("api")[..], &[0, 0, 0, 0, 5, 0x0a, 3, b'a', b'p', b'i']);
        // A name of 200 bytes takes a two-byte varint length: 200 = 0xc8 → c8 01.
        let long = "s".repeat(200);
        let f = request_frame(&long);
        assert_eq!(&f[..8], &[0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
        assert_eq!(f.len(), 5 + 203);
    }

    #[test]
    fn the_request_is_a_grpc_post() {
        let r = request("");
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri().path(), PATH);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["te"], "trailers");
    }

    #[test]
    fn statuses_decode() {
        assert_eq!(response_status(SERVING_FRAME), Ok(SERVING));
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 0x02]), Ok(NOT_SERVING));
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 0x03]), Ok(SERVICE_UNKNOWN));
        // proto3 leaves the default out: the empty message is UNKNOWN.
        assert_eq!(response_status(&[0, 0, 0, 0, 0]), Ok(UNKNOWN));
        // Unknown fields (varint, length-delimited, fixed32, fixed64) are skipped; the
        // last field 1 wins.
        let msg = [
            0x10, 0x96, 0x01, // field 2 varint 150
            0x1a, 0x02, b'h', b'i', // field 3 bytes "hi"
            0x08, 0x02, // status NOT_SERVING
            0x25, 1, 2, 3, 4, // field 4 fixed32
            0x29, 1, 2, 3, 4, 5, 6, 7, 8, // field 5 fixed64
            0x08, 0x01, // status SERVING
        ];
        let mut frame = vec![0, 0, 0, 0, msg.len() as u8];
        frame.extend_from_slice(&msg);
        assert_eq!(response_status(&frame), Ok(SERVING));
    }

    #[test]
    fn malformed_answers_are_refused() {
        for bad in [
            &[][..],
            &[0, 0, 0, 0][..],
            &[1, 0, 0, 0, 2, 0x08, 0x01][..],    // compressed
            &[0, 0, 0, 0, 3, 0x08, 0x01][..],    // shorter than announced
            &[0, 0, 0, 0, 2, 0x08, 0x01, 0][..], // trailing bytes
            &[0, 0, 0, 0, 1, 0x08][..],          // varint missing
            &[0, 0, 0, 0, 2, 0x08, 0x81][..],    // varint cut
            &[0, 0, 0, 0, 2, 0x0a, 0x01][..],    // field 1 not a varint
            &[0, 0, 0, 0, 3, 0x12, 0x05, 0][..], // length past the end
            &[0, 0, 0, 0, 2, 0x0b, 0x00][..],    // group wire type
        ] {
            assert!(response_status(bad).is_err(), "{bad:?}");
        }
        let mut long = vec![0, 0, 0, 0, 12, 0x08];
        long.extend_from_slice(&[0xff; 11]);
        assert!(response_status(&long).is_err(), "an 11-byte varint");
    }

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            let mut s = &out[..];
            assert_eq!(varint(&mut s), Ok(v));
            assert!(s.is_empty());
        }
    }

    #[test]
    fn serving_with_status_0_in_the_trailers_is_healthy() {
        assert_eq!(
            verdict(&answer(200, &[("content-type", "application/grpc")], SERVING_FRAME, Some(OK_TRAILERS))),
            Ok(())
        );
    }

    #[test]
    fn anything_else_is_unhealthy() {
        let not_serving = answer(200, &[], &[0, 0, 0, 0, 2, 0x08, 0x02], Some(OK_TRAILERS));
        assert_eq!(verdict(&not_serving), Err("status NOT_SERVING".to_owned()));
        let http_error = answer(503, &[], SERVING_FRAME, Some(OK_TRAILERS));
        assert_eq!(verdict(&http_error), Err("HTTP status 503".to_owned()));
        // Trailers-only: the status is in the headers.
        let unknown_service =
            answer(200, &[("grpc-status", "5"), ("grpc-message", "unknown service")], &[], None);
        assert_eq!(verdict(&unknown_service), Err("grpc-status 5 unknown service".to_owned()));
        let unimplemented = answer(200, &[], &[], Some(&[("grpc-status", "12")]));
        assert_eq!(verdict(&unimplemented), Err("grpc-status 12".to_owned()));
        let no_status = answer(200, &[], SERVING_FRAME, None);
        assert!(verdict(&no_status).is_err());
        // grpc-status 0 but no message: a broken unary answer.
        let empty = answer(200, &[("grpc-status", "0")], &[], None);
        assert!(verdict(&empty).is_err());
        // The trailers' status is the one that counts.
        let failed_late = answer(200, &[("grpc-status", "0")], SERVING_FRAME, Some(&[("grpc-status", "14")]));
        assert!(verdict(&failed_late).is_err());
    }
}
