//! What RFC 9110, 9112 and 9113 ask of the client side of a proxy, checked with raw bytes
//! (HTTP/1) and the `h2` crate (HTTP/2): `Host`, transfer codings, half-closed clients,
//! request targets too long to take, and the answers the proxy gives itself (TRACE at
//! `Max-Forwards: 0`, `OPTIONS *`).

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes, then (with `half_close`) shuts the write side; returns everything the
/// proxy answers until it closes, or what came within 5 s.
async fn send(addr: std::net::SocketAddr, bytes: &[u8], half_close: bool) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    if half_close {
        s.shutdown().await.expect("shutdown(SHUT_WR)");
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    send(addr, bytes, false).await
}

fn status(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The statuses of every response in a stream of pipelined answers, in order.
fn statuses(answers: &str) -> Vec<u16> {
    answers
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| answers[i + 9..].get(..3).and_then(|s| s.parse().ok()))
        .collect()
}

/// A header of a raw answer (the first one of that name), lowercase names compared.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = &answer[..answer.find("\r\n\r\n").unwrap_or(answer.len())];
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(answer: &str) -> &str {
    &answer[answer.find("\r\n\r\n").map(|i| i + 4).unwrap_or(answer.len())..]
}

async fn h2(addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    client
}

/// An HTTP/2 exchange: the status, or the stream error the server answered with.
async fn h2_status(
    client: &h2::client::SendRequest<Bytes>,
    req: Request<()>,
) -> Result<StatusCode, h2::Error> {
    let mut ready = tokio::time::timeout(Duration::from_secs(10), client.clone().ready())
        .await
        .expect("ready in time")?;
    let (resp, _) = ready.send_request(req, true)?;
    Ok(tokio::time::timeout(Duration::from_secs(10), resp).await.expect("answer in time")?.status())
}

// === Host ===

#[tokio::test]
async fn http11_without_host_is_refused_with_400() {
    let (o, p) = support::fronted("").await;
    let answer = raw(p.addrs.public, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert_eq!(header(&answer, "x-flowgate-error"), Some("bad-request"), "{answer}");
    assert_eq!(o.hits.load(Ordering::SeqCst), 0, "it never reaches the origin");
    // An absolute-form target names the host itself.
    let answer = raw(p.addrs.public, b"GET http://a.example/ HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&answer), 200, "{answer}");
    p.stop().await;
}

#[tokio::test]
async fn http10_without_host_is_forwarded() {
    let (o, p) = support::fronted("").await;
    let answer = raw(p.addrs.public, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(o.hits.load(Ordering::SeqCst), 1);
    p.stop().await;
}

#[tokio::test]
async fn h2_requests_name_their_host_in_the_authority_and_are_served() {
    let (_o, p) = support::fronted("").await;
    let client = h2(p.addrs.public).await;
    let req = Request::get(p.url("/")).body(()).expect("request");
    assert_eq!(h2_status(&client, req).await.expect("answer"), StatusCode::OK);
    p.stop().await;
}

// === Transfer-Encoding ===

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_gets_501() {
    let (o, p) = support::fronted("").await;
    let cases: [&[u8]; 3] = [
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-custom ,CHUNKED\r\nConnection: close\r\n\r\n0\r\n\r\n",
    ];
    for bytes in cases {
        let answer = raw(p.addrs.public, bytes).await;
        assert_eq!(status(&answer), 501, "{}: {answer}", String::from_utf8_lossy(bytes));
        assert_eq!(header(&answer, "x-flowgate-error"), Some("not-implemented"), "{answer}");
        assert_eq!(header(&answer, "x-flowgate-region"), Some("us-east-1"), "{answer}");
    }
    assert_eq!(o.hits.load(Ordering::SeqCst), 0, "no coding is dropped on the way to the origin");
    // `identity` is no coding (RFC 7230 removed it) but a smuggling disguise: malformed.
    let answer = raw(
        p.addrs.public,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 400, "{answer}");
    // Plain chunked (any case) still goes through.
    let answer = raw(
        p.addrs.public,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    p.stop().await;
}

#[tokio::test]
async fn chunked_not_last_is_refused_with_400_by_the_parser() {
    let (o, p) = support::fronted("").await;
    for te in ["chunked, gzip", "gzip", "identity"] {
        let req = format!(
            "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
        );
        let answer = raw(p.addrs.public, req.as_bytes()).await;
        assert_eq!(status(&answer), 400, "{te}: {answer}");
    }
    assert_eq!(o.hits.load(Ordering::SeqCst), 0);
    p.stop().await;
}

// === Half-closed clients and pipelining ===

#[tokio::test]
async fn connection_close_then_half_close_is_answered() {
    let (_o, p) = support::fronted("").await;
    let answer = send(p.addrs.public, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", true).await;
    assert_eq!(status(&answer), 200, "{answer:?}");
    assert_eq!(body(&answer), "ok");
    p.stop().await;
}

const THREE: &[u8] = b"GET /status/201 HTTP/1.1\r\nHost: a\r\n\r\n\
GET /status/202 HTTP/1.1\r\nHost: a\r\n\r\n\
GET /status/203 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn three_pipelined_then_half_close_are_all_answered_in_order() {
    let (_o, p) = support::fronted("").await;
    let answers = send(p.addrs.public, THREE, true).await;
    assert_eq!(statuses(&answers), [201, 202, 203], "{answers}");
    // Without `Connection: close` on the last: the answers, then the proxy closes.
    let keep = b"GET /status/201 HTTP/1.1\r\nHost: a\r\n\r\nGET /status/202 HTTP/1.1\r\nHost: a\r\n\r\n\
GET /status/203 HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut s = TcpStream::connect(p.addrs.public).await.expect("connect");
    s.write_all(keep).await.expect("write");
    s.shutdown().await.expect("shutdown(SHUT_WR)");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the proxy closes once the half-closed client has its answers")
        .expect("read");
    let answers = String::from_utf8_lossy(&out);
    assert_eq!(statuses(&answers), [201, 202, 203], "{answers}");
    p.stop().await;
}

#[tokio::test]
async fn three_pipelined_are_all_answered_in_order() {
    let (_o, p) = support::fronted("").await;
    let answers = raw(p.addrs.public, THREE).await;
    assert_eq!(statuses(&answers), [201, 202, 203], "{answers}");
    p.stop().await;
}

// === Request targets too long ===

fn get_with_path_of(len: usize) -> Vec<u8> {
    let mut req = b"GET /".to_vec();
    req.extend(std::iter::repeat_n(b'a', len - 1));
    req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    req
}

#[tokio::test]
async fn a_target_just_over_the_limit_gets_414() {
    let (o, p) = support::fronted("").await;
    let answer = raw(p.addrs.public, &get_with_path_of(8 * 1024 + 1)).await;
    assert_eq!(status(&answer), 414, "{}", &answer[..answer.len().min(300)]);
    assert_eq!(header(&answer, "x-flowgate-error"), Some("uri-too-long"), "{answer}");
    assert_eq!(header(&answer, "x-flowgate-region"), Some("us-east-1"), "{answer}");
    assert_eq!(o.hits.load(Ordering::SeqCst), 0);
    // At the limit it is served.
    let answer = raw(p.addrs.public, &get_with_path_of(8 * 1024)).await;
    assert_eq!(status(&answer), 200, "{}", &answer[..answer.len().min(300)]);
    p.stop().await;
}

#[tokio::test]
async fn a_target_far_beyond_the_head_buffer_gets_414_and_a_large_header_still_431() {
    let (o, p) = support::fronted("").await;
    for len in [40 * 1024, 100 * 1024] {
        let answer = raw(p.addrs.public, &get_with_path_of(len)).await;
        assert_eq!(status(&answer), 414, "{len}: {}", &answer[..answer.len().min(300)]);
        assert_eq!(header(&answer, "x-flowgate-error"), Some("uri-too-long"), "{answer}");
    }
    // Sent slowly, in pieces, the same.
    let mut s = TcpStream::connect(p.addrs.public).await.expect("connect");
    let req = get_with_path_of(100 * 1024);
    let mut out = Vec::new();
    for piece in req.chunks(4096) {
        if s.write_all(piece).await.is_err() {
            break;
        }
        // A client sending slowly: the slowness is the test.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert_eq!(status(&answer), 414, "{answer}");
    // A long header with a short target is about the header fields.
    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 40 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(status(&raw(p.addrs.public, &big).await), 431);
    assert_eq!(o.hits.load(Ordering::SeqCst), 0);
    p.stop().await;
}

#[tokio::test]
async fn a_long_target_after_a_served_request_gets_414() {
    let (_o, p) = support::fronted("").await;
    let mut bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
    bytes.extend(get_with_path_of(100 * 1024));
    let answers = raw(p.addrs.public, &bytes).await;
    assert_eq!(statuses(&answers), [200, 414], "{}", &answers[..answers.len().min(600)]);
    p.stop().await;
}

#[tokio::test]
async fn h2_targets_too_long_get_an_answer_never_refused_stream() {
    let (o, p) = support::fronted("").await;
    let client = h2(p.addrs.public).await;
    let long =
        |len: usize| Request::get(p.url(&format!("/{}", "a".repeat(len - 1)))).body(()).expect("request");
    assert_eq!(h2_status(&client, long(8 * 1024 + 1)).await.expect("answer"), StatusCode::URI_TOO_LONG);
    // 60 KiB is about as long as `http::Uri` goes.
    for len in [40 * 1024, 60 * 1024] {
        let client = h2(p.addrs.public).await;
        match h2_status(&client, long(len)).await {
            Ok(s) => assert!(
                s == StatusCode::URI_TOO_LONG || s == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{len}: {s}"
            ),
            Err(e) => assert_ne!(e.reason(), Some(h2::Reason::REFUSED_STREAM), "{len}: {e:?}"),
        }
    }
    assert_eq!(o.hits.load(Ordering::SeqCst), 0);
    p.stop().await;
}

// === The proxy's own answers ===

#[tokio::test]
async fn trace_at_max_forwards_zero_is_echoed_without_credentials() {
    let (o, p) = support::fronted("").await;
    let answer = raw(
        p.addrs.public,
        b"TRACE /a?b=c HTTP/1.1\r\nHost: a.example\r\nMax-Forwards: 0\r\nAuthorization: Basic c2VjcmV0\r\n\
Cookie: session=secret\r\nProxy-Authorization: Bearer secret\r\nX-Mine: yes\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(header(&answer, "content-type"), Some("message/http"), "{answer}");
    assert_eq!(header(&answer, "x-flowgate-region"), Some("us-east-1"), "{answer}");
    let echo = body(&answer);
    assert!(echo.starts_with("TRACE /a?b=c HTTP/1.1\r\n"), "{echo}");
    assert!(echo.contains("host: a.example\r\n") && echo.contains("x-mine: yes\r\n"), "{echo}");
    assert!(echo.contains("max-forwards: 0\r\n"), "{echo}");
    assert!(!echo.contains("secret") && !echo.contains("c2VjcmV0"), "credentials are not echoed: {echo}");
    assert!(echo.ends_with("\r\n\r\n"), "{echo:?}");
    assert_eq!(o.hits.load(Ordering::SeqCst), 0, "the proxy answered itself");
    p.stop().await;
}

#[tokio::test]
async fn trace_and_options_with_max_forwards_are_forwarded_with_one_less() {
    let (o, p) = support::fronted("").await;
    for method in ["TRACE", "OPTIONS"] {
        let req =
            format!("{method} /headers HTTP/1.1\r\nHost: a\r\nMax-Forwards: 3\r\nConnection: close\r\n\r\n");
        let answer = raw(p.addrs.public, req.as_bytes()).await;
        assert_eq!(status(&answer), 200, "{answer}");
        assert!(body(&answer).contains(r#""max-forwards":"2""#), "{method}: {answer}");
    }
    assert_eq!(o.hits.load(Ordering::SeqCst), 2);
    // A Max-Forwards that is not a number cannot be decremented.
    let answer =
        raw(p.addrs.public, b"TRACE / HTTP/1.1\r\nHost: a\r\nMax-Forwards: x\r\nConnection: close\r\n\r\n")
            .await;
    assert_eq!(status(&answer), 400, "{answer}");
    p.stop().await;
}

#[tokio::test]
async fn trace_without_max_forwards_is_forwarded() {
    let (o, p) = support::fronted("").await;
    let answer =
        raw(p.addrs.public, b"TRACE /headers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(!body(&answer).contains("max-forwards"), "{answer}");
    assert_eq!(o.hits.load(Ordering::SeqCst), 1);
    p.stop().await;
}

#[tokio::test]
async fn options_asterisk_is_answered_by_the_proxy() {
    let (o, p) = support::fronted("").await;
    for extra in ["", "Max-Forwards: 0\r\n", "Max-Forwards: 5\r\n"] {
        let req = format!("OPTIONS * HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n");
        let answer = raw(p.addrs.public, req.as_bytes()).await;
        assert_eq!(status(&answer), 200, "{extra}: {answer}");
        let allow = header(&answer, "allow").unwrap_or_default();
        assert!(allow.contains("GET") && allow.contains("OPTIONS") && !allow.contains("CONNECT"), "{answer}");
        assert_eq!(header(&answer, "content-length"), Some("0"), "{answer}");
        assert_eq!(header(&answer, "x-flowgate-region"), Some("us-east-1"), "{answer}");
    }
    // OPTIONS on a path at Max-Forwards 0: the proxy is the final recipient.
    let answer = raw(
        p.addrs.public,
        b"OPTIONS /anything HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(header(&answer, "allow").is_some(), "{answer}");
    assert_eq!(o.hits.load(Ordering::SeqCst), 0);
    // Counted like the proxy's other answers.
    let metrics = support::admin::metrics(p.addrs.admin).await;
    let own =
        support::admin::metric_sum(&metrics, "flowgate_requests_total", &["origin=\"-\"", "code=\"200\""]);
    assert_eq!(own, 4.0, "{metrics}");
    p.stop().await;
}
