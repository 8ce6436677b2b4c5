//! The own path's response heads and body framing, against what hyper's server writes.

use super::*;

fn answer(
    status: u16,
    headers: &[(&str, &str)],
    head: bool,
    empty: bool,
    exact: Option<u64>,
) -> (String, Framing) {
    let mut h = HeaderMap::new();
    for (n, v) in headers {
        h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    let a = Answer {
        status: StatusCode::from_u16(status).unwrap(),
        headers: &h,
        relayed: Relayed::none(),
        head_request: head,
        empty,
        exact,
        close: false,
    };
    let mut buf = Vec::new();
    let f = super::head(&mut buf, &a);
    (String::from_utf8(buf).unwrap(), f)
}

#[test]
fn a_known_length_becomes_content_length_and_a_date_is_added() {
    let (h, f) = answer(200, &[("x-a", "1")], false, false, Some(5));
    assert!(h.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\ndate: "), "{h}");
    assert!(h.ends_with(" GMT\r\n\r\n"), "{h}");
    assert!(!f.chunked && !f.bodiless && !f.close);
}

#[test]
fn an_unknown_length_is_chunked_and_framed() {
    let (h, mut f) = answer(404, &[("date", "x")], false, false, None);
    assert_eq!(h, "HTTP/1.1 404 Not Found\r\ndate: x\r\ntransfer-encoding: chunked\r\n\r\n");
    let mut buf = Vec::new();
    assert_eq!(f.before_data(&mut buf, 26), 26);
    assert_eq!(f.after_data(26), b"\r\n");
    assert!(f.finish(&mut buf));
    assert_eq!(buf, b"1A\r\n0\r\n\r\n");
}

#[test]
fn head_204_and_304_carry_no_body() {
    let (h, f) = answer(200, &[("content-length", "10"), ("date", "x")], true, true, Some(0));
    assert_eq!(h, "HTTP/1.1 200 OK\r\ncontent-length: 10\r\ndate: x\r\n\r\n");
    assert!(f.bodiless);
    let (h, f) = answer(204, &[("date", "x")], false, true, Some(0));
    assert_eq!(h, "HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n");
    assert!(f.bodiless);
    let (h, f) = answer(304, &[("date", "x")], false, false, None);
    assert_eq!(h, "HTTP/1.1 304 Not Modified\r\ndate: x\r\n\r\n");
    assert!(f.bodiless && !f.chunked);
    let (h, _) = answer(200, &[("date", "x")], false, true, Some(0));
    assert_eq!(h, "HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 0\r\n\r\n");
}

#[test]
fn fields_kept_as_bytes_go_out_as_they_are_and_their_date_counts() {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("2"));
    let relayed = |date| Relayed { bytes: b"server: o\r\nx-b: 1\r\n".to_vec(), date };
    let head_of = |r: &Relayed| {
        let a = Answer {
            status: StatusCode::OK,
            headers: &h,
            relayed: r,
            head_request: false,
            empty: false,
            exact: Some(2),
            close: false,
        };
        let mut buf = Vec::new();
        let f = head(&mut buf, &a);
        (String::from_utf8(buf).unwrap(), f)
    };
    let (text, f) = head_of(&relayed(true));
    assert_eq!(text, "HTTP/1.1 200 OK\r\nserver: o\r\nx-b: 1\r\ncontent-length: 2\r\n\r\n");
    assert_eq!(f.remaining, Some(2));
    let (text, _) = head_of(&relayed(false));
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\nserver: o\r\nx-b: 1\r\ncontent-length: 2\r\ndate: "),
        "{text}"
    );
}

#[test]
fn closing_says_so_once() {
    let mut h = HeaderMap::new();
    h.insert(DATE, HeaderValue::from_static("x"));
    let a = Answer {
        status: StatusCode::OK,
        headers: &h,
        relayed: Relayed::none(),
        head_request: false,
        empty: true,
        exact: Some(0),
        close: true,
    };
    let mut buf = Vec::new();
    assert!(head(&mut buf, &a).close);
    assert_eq!(buf, b"HTTP/1.1 200 OK\r\ndate: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    let (h, f) = answer(200, &[("connection", "close"), ("date", "x")], false, true, Some(0));
    assert_eq!(h.matches("connection").count(), 1, "{h}");
    assert!(f.close);
}

#[test]
fn only_announced_trailers_follow_the_last_chunk() {
    let (_, mut f) = answer(200, &[("trailer", "grpc-status")], false, false, None);
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    t.insert("x-other", HeaderValue::from_static("1"));
    let mut buf = Vec::new();
    f.trailers(&mut buf, &t);
    assert!(f.finish(&mut buf));
    assert_eq!(buf, b"0\r\ngrpc-status: 0\r\n\r\n");
    let (_, mut f) = answer(200, &[], false, false, None);
    let mut buf = Vec::new();
    f.trailers(&mut buf, &t);
    f.finish(&mut buf);
    assert_eq!(buf, b"0\r\n\r\n");
}

#[test]
fn a_body_short_of_its_length_is_told() {
    let (_, mut f) = answer(200, &[], false, false, Some(4));
    let mut buf = Vec::new();
    assert_eq!(f.before_data(&mut buf, 6), 4);
    assert!(f.finish(&mut buf));
    let (_, mut f) = answer(200, &[], false, false, Some(4));
    assert_eq!(f.before_data(&mut buf, 3), 3);
    assert!(!f.finish(&mut buf));
}

#[test]
fn the_date_is_an_imf_fixdate() {
    let mut buf = Vec::new();
    extend_date(&mut buf);
    extend_date(&mut buf);
    assert_eq!(buf.len(), 2 * DATE_LEN);
    let text = std::str::from_utf8(&buf[..DATE_LEN]).unwrap();
    assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
}
