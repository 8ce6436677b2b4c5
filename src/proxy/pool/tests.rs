use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, StatusCode};

use super::chunked::{ChunkError, Chunked, Step};
use super::response::{self, Fields, Framing, HeadError, MAX_HEAD_BYTES, MAX_HEADERS};
use super::wire::RequestWriter;
use crate::proxy::hop::{HopInfo, NextHop};
use crate::proxy::request_body::UpstreamBody;

fn parse(text: &[u8]) -> Result<Option<response::Head>, HeadError> {
    response::parse(&mut BytesMut::from(text), &Method::GET, Fields::Map)
}

fn framing(text: &str) -> Result<Framing, HeadError> {
    parse(text.as_bytes()).map(|h| h.expect("complete").framing)
}

#[test]
fn a_head_is_parsed_and_removed_from_the_buffer() {
    let mut buf =
        BytesMut::from(&b"HTTP/1.1 201 Created\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 3\r\n\r\nabc"[..]);
    let head = response::parse(&mut buf, &Method::GET, Fields::Map).expect("valid").expect("complete");
    assert_eq!(head.status, StatusCode::CREATED);
    assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
    assert_eq!(head.framing, Framing::Length(3));
    assert!(head.keep_alive);
    assert_eq!(&buf[..], b"abc");
    assert_eq!(head.into_response(()).version(), http::Version::HTTP_11);
}

fn parse_as_bytes(text: &str) -> response::Head {
    response::parse(&mut BytesMut::from(text.as_bytes()), &Method::GET, Fields::Bytes)
        .expect("valid")
        .expect("complete")
}

#[test]
fn ordinary_fields_kept_as_bytes_leave_the_map_what_is_read_later() {
    let head = parse_as_bytes(
        "HTTP/1.1 200 OK\r\nServer: Origin/1\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
         Set-Cookie: a=1\r\nset-cookie: b=2\r\nX-Flowgate-Region: eu\r\nTE: trailers\r\n\
         Keep-Alive: timeout=5\r\nTrailer: x-t\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&head.relayed.bytes),
        "server: Origin/1\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n"
    );
    assert!(head.relayed.date);
    let names: Vec<&str> = head.headers.keys().map(|n| n.as_str()).collect();
    // The length is the body's, which the encoder writes.
    assert_eq!(names, ["x-flowgate-region", "te", "keep-alive", "trailer"]);
    assert_eq!(head.framing, Framing::Length(2));
    assert!(head.keep_alive);
    // A HEAD answer's length is the GET's: only the origin knows it.
    let text = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nServer: o\r\n\r\n";
    let head = response::parse(&mut BytesMut::from(text), &Method::HEAD, Fields::Bytes).expect("valid");
    let head = head.expect("complete");
    assert_eq!(head.relayed.bytes, b"server: o\r\ncontent-length: 9\r\n");
    assert_eq!(head.framing, Framing::Empty);
    // Two lengths are refused however they are kept.
    let two = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\ncontent-length: 9\r\n\r\n";
    let err = response::parse(&mut BytesMut::from(two), &Method::GET, Fields::Bytes).expect_err("ambiguous");
    assert_eq!(err, HeadError::BadLength);
    // Without a date among them, the encoder must add one.
    assert!(!parse_as_bytes("HTTP/1.1 204 No Content\r\nServer: o\r\n\r\n").relayed.date);
}

#[test]
fn a_connection_naming_fields_puts_every_field_in_the_map() {
    for text in [
        "HTTP/1.1 200 OK\r\nX-Named: secret\r\nContent-Length: 0\r\nServer: o\r\nConnection: close, X-Named\r\nDate: d\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: x-named\r\nX-Named: secret\r\nServer: o\r\nDate: d\r\n\r\n",
    ] {
        let head = parse_as_bytes(text);
        assert!(head.relayed.bytes.is_empty() && !head.relayed.date, "{text:?}");
        for name in ["x-named", "server", "connection", "date"] {
            assert!(head.headers.contains_key(name), "`{name}` missing from the map of {text:?}");
        }
        assert_eq!(head.headers["x-named"], "secret");
        assert_eq!(head.headers.get("content-length").is_some(), text.contains("Content-Length"), "{text:?}");
        assert!(!head.keep_alive, "{text:?}");
    }
}

#[test]
fn a_partial_head_asks_for_more() {
    assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-le").expect("valid").is_none());
}

#[test]
fn framing_follows_rfc_9112() {
    assert_eq!(framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"), Ok(Framing::Chunked));
    assert_eq!(framing("HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked \r\n\r\n"), Ok(Framing::Chunked));
    assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), Ok(Framing::Close));
    assert_eq!(framing("HTTP/1.1 204 No Content\r\ncontent-length: 4\r\n\r\n"), Ok(Framing::Empty));
    assert_eq!(framing("HTTP/1.1 304 Not Modified\r\n\r\n"), Ok(Framing::Empty));
    assert_eq!(framing("HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"), Ok(Framing::Empty));
    let head = response::parse(
        &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"[..]),
        &Method::HEAD,
        Fields::Map,
    );
    assert_eq!(head.expect("valid").expect("complete").framing, Framing::Empty);
}

#[test]
fn keep_alive_needs_http11_without_close() {
    let ka = |t: &str| parse(t.as_bytes()).expect("valid").expect("complete").keep_alive;
    assert!(!ka("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
    assert!(!ka("HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 0\r\n\r\n"));
    assert!(!ka("HTTP/1.1 200 OK\r\n\r\n"));
    assert!(ka("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
}

#[test]
fn ambiguous_or_malformed_lengths_are_refused() {
    for (text, want) in [
        ("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n", HeadError::BadLength),
        ("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n", HeadError::BadLength),
        ("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n", HeadError::BadLength),
        ("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n", HeadError::BadLength),
        ("HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n", HeadError::BadLength),
        ("HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n", HeadError::BadLength),
        ("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n", HeadError::BadCoding),
        ("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, identity\r\n\r\n", HeadError::BadCoding),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            HeadError::BadCoding,
        ),
        ("HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\n\r\n", HeadError::Invalid),
        ("HTTP/1.1 200 OK\r\nx a: 1\r\n\r\n", HeadError::Invalid),
        ("HTTP/1.1 200 OK\r\nx-a: \x01\r\n\r\n", HeadError::Invalid),
        ("HTTP/1.1 2000 OK\r\n\r\n", HeadError::Invalid),
    ] {
        assert_eq!(parse(text.as_bytes()).map(|_| ()), Err(want), "{text:?}");
    }
}

#[test]
fn the_head_limits_hold() {
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(parse(&many).map(|_| ()), Err(HeadError::TooManyHeaders));
    let mut long = b"HTTP/1.1 200 OK\r\nx-long: ".to_vec();
    long.resize(MAX_HEAD_BYTES + 1, b'a');
    assert_eq!(parse(&long).map(|_| ()), Err(HeadError::TooLarge));
}

fn decode_all(wire: &[u8], split: usize) -> Result<(Vec<u8>, Option<http::HeaderMap>), ChunkError> {
    let (mut c, mut buf) = (Chunked::new(), BytesMut::new());
    let (mut body, mut trailers) = (Vec::new(), None);
    let mut rest = wire;
    loop {
        match c.step(&mut buf)? {
            Step::Data(d) => body.extend_from_slice(&d),
            Step::Trailers(t) => trailers = Some(t),
            Step::End => return Ok((body, trailers)),
            Step::More if rest.is_empty() => panic!("incomplete"),
            Step::More => {
                let n = split.min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
        }
    }
}

#[test]
fn chunks_decode_whatever_the_reads() {
    let wire = b"5;ext=\"x\"\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-sum: 7\r\n\r\n";
    for split in [1, 2, 7, wire.len()] {
        let (body, trailers) = decode_all(wire, split).expect("valid");
        assert_eq!(body, b"hello 0123456789");
        assert_eq!(trailers.expect("trailers").get("x-sum").map(|v| v.as_bytes()), Some(&b"7"[..]));
    }
    assert_eq!(decode_all(b"2\r\nok\r\n0\r\n\r\n", 3).expect("valid"), (b"ok".to_vec(), None));
}

#[test]
fn malformed_chunks_are_refused() {
    for wire in [&b"zz\r\n"[..], b"2\r\nokX\r\n", b"-1\r\n", b"fffffffffffffffff\r\n", b"\r\n"] {
        assert_eq!(decode_all(wire, 64).map(|_| ()), Err(ChunkError), "{:?}", String::from_utf8_lossy(wire));
    }
}

fn written(req: Request<UpstreamBody>) -> String {
    written_to(req, None)
}

fn written_to(req: Request<UpstreamBody>, next_hop: Option<NextHop<'_>>) -> String {
    let authority = "origin.internal:8080".parse().expect("authority");
    let (parts, body) = req.into_parts();
    String::from_utf8_lossy(RequestWriter::new(Vec::new(), &parts, body, &authority, next_hop).queued())
        .into_owned()
}

#[test]
fn a_forward_to_a_peer_carries_the_next_hops_fields_in_place_of_the_heads() {
    let mut req = Request::new(UpstreamBody::kept(Bytes::new()));
    req.headers_mut().insert("host", "app.example".parse().expect("value"));
    req.headers_mut().insert("x-flowgate-hops", "1".parse().expect("value"));
    req.headers_mut().insert("x-flowgate-deadline-ms", "900".parse().expect("value"));
    req.headers_mut().insert("x-a", "1".parse().expect("value"));
    let hop =
        HopInfo { hops: 1, source: HeaderValue::from_static("eu-west"), local_only: false, deadline: None };
    let text = written_to(req, Some(hop.next(Duration::from_millis(750))));
    assert_eq!(
        text,
        "GET / HTTP/1.1\r\nhost: app.example\r\nx-a: 1\r\nx-flowgate-hops: 2\r\n\
         x-flowgate-source-region: eu-west\r\nx-flowgate-deadline-ms: 750\r\n\r\n"
    );
}

#[test]
fn the_head_names_the_host_and_frames_the_kept_body() {
    let mut req = Request::new(UpstreamBody::kept(Bytes::from_static(b"abc")));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = "/p?q=1".parse().expect("uri");
    req.headers_mut().insert("transfer-encoding", "chunked".parse().expect("value"));
    req.headers_mut().insert("x-a", "1".parse().expect("value"));
    let text = written(req);
    assert!(
        text == "POST /p?q=1 HTTP/1.1\r\nhost: origin.internal:8080\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n",
        "{text}"
    );
    let mut req = Request::new(UpstreamBody::kept(Bytes::new()));
    req.headers_mut().insert("host", "client.example".parse().expect("value"));
    let text = written(req);
    assert_eq!(text, "GET / HTTP/1.1\r\nhost: client.example\r\n\r\n");
}
