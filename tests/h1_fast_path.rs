//! The own HTTP/1.1 path for plain-TCP clients (`server::h1`), checked with raw bytes
//! against a real proxy and origin: keep-alive, pipelining, small bodies, the framing of
//! answers (chunked, HEAD, 204), `date`, `Connection: close`, a half-closed client, and a
//! connection that moves to hyper mid-way (a WebSocket upgrade, a chunked upload, an
//! over-long head) and keeps working there.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lowercased names, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The body came chunk-framed.
    chunked: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A raw client connection with what it read and has not parsed yet.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        Client { s: TcpStream::connect(addr).await.expect("connect"), buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
    }

    /// Reads more; false at EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut chunk))
            .await
            .expect("the proxy answers within 10 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "EOF inside a body");
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return line;
            }
            assert!(self.fill().await, "EOF inside a head");
        }
    }

    /// Reads one answer; `bodiless` for an answer to HEAD.
    async fn answer(&mut self, bodiless: bool) -> Answer {
        let status_line = self.line().await;
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
        let status = status_line[9..12].parse().expect("status");
        let mut headers = Vec::new();
        loop {
            let l = self.line().await;
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("a field line");
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut a = Answer { status, headers, body: Vec::new(), chunked: false };
        if bodiless || status == 204 || status == 304 || status == 101 {
            return a;
        }
        if a.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            a.chunked = true;
            loop {
                let size = usize::from_str_radix(self.line().await.trim(), 16).expect("chunk size");
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    break;
                }
                let data = self.take(size).await;
                a.body.extend_from_slice(&data);
                assert_eq!(self.line().await, "", "CRLF after a chunk");
            }
        } else {
            let n: usize = a.header("content-length").expect("a length").parse().expect("a number");
            a.body = self.take(n).await;
        }
        a
    }

    /// Whether the proxy closes the connection (after what was read).
    async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.example\r\n\r\n")
}

#[tokio::test]
async fn one_connection_serves_many_requests_in_turn() {
    let (o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    for i in 0..50 {
        c.send(get(&format!("/status/{}", 200 + i % 3)).as_bytes()).await;
        let a = c.answer(false).await;
        assert_eq!(a.status, 200 + i % 3);
        assert_eq!(a.body, format!("status {}", 200 + i % 3).as_bytes());
        assert_eq!(a.header("x-flowgate-region"), Some("us-east-1"));
        assert!(a.header("connection").is_none(), "keep-alive is the default: {:?}", a.headers);
    }
    assert_eq!(o.hits.load(std::sync::atomic::Ordering::SeqCst), 50);
    p.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    let mut batch = String::new();
    for code in [201, 202, 203, 404] {
        batch.push_str(&get(&format!("/status/{code}")));
    }
    batch.push_str("POST /echo HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\n\r\nabc");
    c.send(batch.as_bytes()).await;
    for code in [201, 202, 203, 404] {
        assert_eq!(c.answer(false).await.status, code);
    }
    let echo = c.answer(false).await;
    assert_eq!((echo.status, echo.body.as_slice()), (200, &b"abc"[..]));
    p.stop().await;
}

#[tokio::test]
async fn a_small_body_is_forwarded_whole() {
    let (_o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    let body = "x".repeat(5000);
    // Head and body in separate writes: the body is read from the socket after the head.
    c.send(
        format!("POST /echo HTTP/1.1\r\nHost: app.example\r\nContent-Length: {}\r\n\r\n", body.len())
            .as_bytes(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(body.as_bytes()).await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, body.as_bytes());
    c.send(b"PUT /count HTTP/1.1\r\nHost: app.example\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(c.answer(false).await.body, b"0");
    p.stop().await;
}

#[tokio::test]
async fn a_chunked_origin_answer_is_reframed_and_the_connection_goes_on() {
    let (_o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    c.send(get("/trailers").as_bytes()).await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 200);
    assert!(a.chunked, "an answer of unknown length is chunked: {:?}", a.headers);
    assert_eq!(a.body, b"hello");
    assert!(a.header("content-length").is_none());
    // A large answer with a length, written in several frames.
    c.send(get("/bytes/200000").as_bytes()).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.body.len(), a.chunked), (200, 200_000, false));
    assert!(a.body.iter().all(|&b| b == b'x'));
    c.send(get("/").as_bytes()).await;
    assert_eq!(c.answer(false).await.body, b"ok");
    p.stop().await;
}

#[tokio::test]
async fn head_and_204_carry_no_body() {
    let (_o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    c.send(b"HEAD / HTTP/1.1\r\nHost: app.example\r\n\r\n").await;
    let a = c.answer(true).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("2"), "HEAD keeps the GET's length");
    c.send(get("/status/204").as_bytes()).await;
    let a = c.answer(true).await;
    assert_eq!(a.status, 204);
    assert!(
        a.header("content-length").is_none() && a.header("transfer-encoding").is_none(),
        "{:?}",
        a.headers
    );
    // Had either carried a body, this answer would not parse.
    c.send(get("/").as_bytes()).await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]));
    assert!(c.buf.is_empty(), "nothing after the last answer: {:?}", String::from_utf8_lossy(&c.buf));
    p.stop().await;
}

#[tokio::test]
async fn every_answer_has_a_date() {
    let (_o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    // An origin's answer, and one the proxy makes itself (no route on this host? a 404 of
    // the origin; TRACE at Max-Forwards: 0 is the proxy's own).
    c.send(get("/").as_bytes()).await;
    c.send(b"TRACE / HTTP/1.1\r\nHost: app.example\r\nMax-Forwards: 0\r\n\r\n").await;
    for _ in 0..2 {
        let a = c.answer(false).await;
        let date = a.header("date").expect("a date header");
        let t = httpdate::parse_http_date(date).expect("an IMF-fixdate");
        let skew = t.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        assert!(skew < Duration::from_secs(5), "{date}");
        assert_eq!(a.headers.iter().filter(|(n, _)| n == "date").count(), 1);
    }
    p.stop().await;
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let (_o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    c.send(get("/").as_bytes()).await;
    assert_eq!(c.answer(false).await.status, 200);
    c.send(b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n").await;
    let a = c.answer(false).await;
    assert_eq!(a.header("connection"), Some("close"));
    assert!(c.closed().await, "the proxy closes after answering Connection: close");
    p.stop().await;
}

#[tokio::test]
async fn a_half_closed_client_gets_every_answer() {
    let (_o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    c.send(format!("{}{}", get("/slow/100"), get("/status/202")).as_bytes()).await;
    c.s.shutdown().await.expect("shutdown(SHUT_WR)");
    assert_eq!(c.answer(false).await.body, b"slow ok");
    assert_eq!(c.answer(false).await.status, 202);
    assert!(c.closed().await, "closed once the answers are out");
    p.stop().await;
}

#[tokio::test]
async fn a_websocket_upgrade_after_fast_requests_goes_to_hyper_and_works() {
    let (_o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    c.send(get("/").as_bytes()).await;
    assert_eq!(c.answer(false).await.status, 200);
    c.send(
        b"GET /ws HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    let a = c.answer(false).await;
    assert_eq!(a.status, 101);
    assert_eq!(a.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    // A masked text frame "hi"; the origin echoes it unmasked.
    c.send(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]).await;
    let frame = c.take(4).await;
    assert_eq!(frame, [0x81, 0x02, b'h', b'i']);
    p.stop().await;
}

#[tokio::test]
async fn requests_outside_the_fast_subset_keep_their_answers_mid_connection() {
    let (_o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    c.send(get("/").as_bytes()).await;
    assert_eq!(c.answer(false).await.status, 200);
    // A chunked upload: hyper's from here on, on the same connection.
    c.send(b"POST /echo HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").await;
    let a = c.answer(false).await;
    assert_eq!((a.status, a.body.as_slice()), (200, &b"abc"[..]));
    c.send(get("/status/201").as_bytes()).await;
    assert_eq!(c.answer(false).await.status, 201);

    // HTTP/1.0 and an over-long head after a fast request: hyper's answers, as before.
    let mut c = Client::connect(p.addrs.public).await;
    c.send(get("/").as_bytes()).await;
    assert_eq!(c.answer(false).await.status, 200);
    c.send(b"GET / HTTP/1.0\r\nHost: app.example\r\n\r\n").await;
    let status_line = c.line().await;
    assert!(status_line.starts_with("HTTP/1.0 200"), "{status_line}");
    let mut c = Client::connect(p.addrs.public).await;
    c.send(get("/").as_bytes()).await;
    assert_eq!(c.answer(false).await.status, 200);
    c.send(
        format!("GET / HTTP/1.1\r\nHost: app.example\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000)).as_bytes(),
    )
    .await;
    assert_eq!(c.answer(false).await.status, 431);
    p.stop().await;
}

#[tokio::test]
async fn a_request_without_host_or_with_a_bad_length_gets_hyper_s_or_the_proxy_s_400() {
    let (o, p) = support::fronted("").await;
    let mut c = Client::connect(p.addrs.public).await;
    c.send(b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(c.answer(false).await.status, 400);
    let mut c = Client::connect(p.addrs.public).await;
    c.send(get("/").as_bytes()).await;
    assert_eq!(c.answer(false).await.status, 200);
    c.send(b"POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 1, 2\r\n\r\nab").await;
    assert_eq!(c.answer(false).await.status, 400);
    assert_eq!(o.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    p.stop().await;
}
