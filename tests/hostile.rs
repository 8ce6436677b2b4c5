//! Hostile HTTP/1 input: each case refused with a 4xx, or forwarded only in one
//! unambiguous form, and never disturbing the proxy.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes, returns everything the proxy answers until it closes (or 3 s).
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The body of a raw answer, which must be a 200.
fn ok_body(answer: &str) -> &str {
    assert_eq!(status(answer), 200, "{answer}");
    &answer[answer.find("\r\n\r\n").map(|i| i + 4).unwrap_or(0)..]
}

#[tokio::test]
async fn smuggling_shapes_are_refused_and_never_reach_the_origin() {
    let (o, p) = support::fronted("").await;
    let cases: [(&str, &[u8]); 4] = [
        ("two different CLs", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde"),
        ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\nConnection: close\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad : x\r\nConnection: close\r\n\r\n"),
        ("bare LF in a header value", b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\rb\r\nConnection: close\r\n\r\n"),
    ];
    for (what, bytes) in cases {
        let answer = raw(p.addrs.public, bytes).await;
        let code = status(&answer);
        assert!((400..500).contains(&code) || answer.is_empty(), "{what}: {answer:?}");
    }
    assert_eq!(o.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "none of them reached the origin");
    // The proxy still serves.
    let ok = raw(p.addrs.public, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&ok), 200, "{ok}");
    p.stop().await;
}

#[tokio::test]
async fn both_framings_reach_the_origin_as_one() {
    let (_o, p) = support::fronted("").await;
    // RFC 9112 section 6.3: Transfer-Encoding wins over Content-Length. The origin must
    // see one framing only, so that it cannot read the body differently.
    let answer = raw(
        p.addrs.public,
        b"POST /headers HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    )
    .await;
    let body = ok_body(&answer);
    // The answer itself is chunked: take the JSON object out of it.
    let json = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(0)];
    let seen: serde_json::Value = serde_json::from_str(json).expect("json");
    assert!(seen.get("content-length").is_none() || seen.get("transfer-encoding").is_none(), "{seen}");
    assert_ne!(
        seen.get("content-length").and_then(|v| v.as_str()),
        Some("40"),
        "the stale length never reaches the origin: {seen}"
    );
    p.stop().await;
}

#[tokio::test]
async fn connect_is_refused_and_absolute_form_has_one_host() {
    let (o, p) = support::fronted("").await;
    let answer = raw(
        p.addrs.public,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 405, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-flowgate-error: method-not-allowed"), "{answer}");

    let answer = raw(
        p.addrs.public,
        b"GET http://api.example.com/headers HTTP/1.1\r\nHost: evil.example.net\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body = ok_body(&answer);
    let seen: serde_json::Value = serde_json::from_str(body.trim()).expect("json");
    assert_eq!(seen["host"], "api.example.com", "the origin sees the target's host, not the other one");
    assert_eq!(o.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    p.stop().await;
}
