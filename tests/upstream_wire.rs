//! The proxy's own HTTP/1.1 client to cleartext origins, against hand-written origins
//! that say exactly what each case needs on the wire: version, framing, early answers,
//! `100 Continue`, large heads, closes while idle.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use support::wait::within;
use support::{TestProxy, config_text, h1_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a scripted origin does with one request head: the bytes to answer, and whether
/// to close the connection after them.
type Script = fn(&str) -> (Vec<u8>, bool);

/// A raw origin: answers health probes itself, every other request by `script`; counts
/// the connections that carried such a request. A connection idle for `idle_close` is
/// closed by the origin.
struct RawOrigin {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
}

async fn raw_origin(script: Script, idle_close: Duration) -> RawOrigin {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let probes = Arc::new(AtomicUsize::new(0));
    let (counted, probed) = (conns.clone(), probes.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let (counted, probed) = (counted.clone(), probed.clone());
            tokio::spawn(async move {
                let mut first = true;
                loop {
                    let Ok(Some(head)) = tokio::time::timeout(idle_close, read_head(&mut s)).await else {
                        return;
                    };
                    let (answer, close) = if head.starts_with("GET /healthz ") {
                        probed.fetch_add(1, Ordering::SeqCst);
                        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(), false)
                    } else {
                        if std::mem::take(&mut first) {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                        script(&head)
                    };
                    if s.write_all(&answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    RawOrigin { addr, conns, probes }
}

/// Reads one request head (and no body: these cases send none but where they say so).
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        got.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// A proxy in front of `addr` (health probes every hour).
async fn proxy_for(addr: SocketAddr) -> TestProxy {
    TestProxy::start(&config_text(addr, "[health]\ninterval = \"1h\"\n")).await
}

/// A proxy in front of `origin` once its first health probe is done: probes share the
/// pool, and one in flight when a test starts would take a connection of its own.
async fn settled_proxy(origin: &RawOrigin) -> TestProxy {
    let proxy = proxy_for(origin.addr).await;
    within(Duration::from_secs(2), || async { origin.probes.load(Ordering::SeqCst) > 0 }).await;
    // The probe's connection goes back to the pool a moment after its answer is written;
    // nothing outside the proxy shows when, so a grace.
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy
}

/// A raw client exchange: writes `req` from its own task (an early answer must not wait
/// for it) and reads until the proxy closes or `limit` passes.
async fn raw_exchange(addr: SocketAddr, req: Vec<u8>, limit: Duration) -> Vec<u8> {
    let (mut rd, mut wr) = TcpStream::connect(addr).await.expect("connect").into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&req).await;
        // The write half stays open (no FIN) past `limit`: a client still sending is the case.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, rd.read_to_end(&mut out)).await;
    writer.abort();
    out
}

async fn get(proxy: &TestProxy, path: &str) -> (StatusCode, Version, Bytes) {
    let resp =
        tokio::time::timeout(Duration::from_secs(10), h1_client().get(proxy.url(path).parse().expect("url")))
            .await
            .expect("answer in time")
            .expect("answer");
    let (status, version) = (resp.status(), resp.version());
    (status, version, resp.into_body().collect().await.expect("body").to_bytes())
}

#[tokio::test]
async fn an_http10_answer_reaches_an_http11_client_as_http11() {
    let origin = raw_origin(
        |head| match head.starts_with("GET /open ") {
            // No length: the body runs to the close.
            true => (b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec(), true),
            false => (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(), true),
        },
        Duration::from_secs(5),
    )
    .await;
    let proxy = proxy_for(origin.addr).await;
    let raw = raw_exchange(
        proxy.addrs.public,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n".to_vec(),
        Duration::from_secs(5),
    )
    .await;
    assert!(raw.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&raw));
    assert_eq!(
        get(&proxy, "/open").await,
        (StatusCode::OK, Version::HTTP_11, Bytes::from_static(b"until close"))
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_close_delimited_answer_is_relayed_and_its_connection_not_reused() {
    let origin =
        raw_origin(|_| (b"HTTP/1.1 200 OK\r\n\r\nto the end".to_vec(), true), Duration::from_secs(5)).await;
    let proxy = settled_proxy(&origin).await;
    for _ in 0..3 {
        assert_eq!(get(&proxy, "/c").await.2, Bytes::from_static(b"to the end"));
    }
    assert_eq!(origin.conns.load(Ordering::SeqCst), 3, "a close-delimited connection was reused");
    proxy.stop().await;
}

#[tokio::test]
async fn fifty_sequential_requests_ride_one_connection() {
    let origin = raw_origin(
        |_| (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec(), false),
        Duration::from_secs(60),
    )
    .await;
    let proxy = settled_proxy(&origin).await;
    for i in 0..50 {
        assert_eq!(get(&proxy, "/k").await.0, StatusCode::OK, "request {i}");
    }
    assert_eq!(origin.conns.load(Ordering::SeqCst), 1, "50 sequential requests, one connection");
    proxy.stop().await;
}

#[tokio::test]
async fn a_connection_the_origin_closed_while_idle_is_not_used() {
    // The origin closes a connection idle for 50 ms; each request comes after 150 ms.
    let origin = raw_origin(
        |_| (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(), false),
        Duration::from_millis(50),
    )
    .await;
    let proxy = proxy_for(origin.addr).await;
    for i in 0..10 {
        assert_eq!(get(&proxy, "/i").await.0, StatusCode::OK, "request {i}");
        // Idle past the origin's 50 ms: the gap is the test.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_head_of_32_kib_in_200_fields_is_relayed() {
    let origin = raw_origin(
        |_| {
            let mut a = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n".to_vec();
            for i in 0..200 {
                a.extend_from_slice(format!("x-field-{i:03}: {}\r\n", "v".repeat(150)).as_bytes());
            }
            a.extend_from_slice(b"\r\nok");
            (a, false)
        },
        Duration::from_secs(5),
    )
    .await;
    let proxy = proxy_for(origin.addr).await;
    let raw = raw_exchange(
        proxy.addrs.public,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n".to_vec(),
        Duration::from_secs(5),
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 "), "{}", &text[..text.len().min(200)]);
    assert_eq!(text.matches("x-field-").count(), 200);
    assert!(text.ends_with("\r\n\r\nok"));
    proxy.stop().await;
}

#[tokio::test]
async fn ambiguous_response_lengths_are_refused_with_502() {
    let origin = raw_origin(
        |head| match head.starts_with("GET /both ") {
            true => (
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
                true,
            ),
            false => (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 5\r\n\r\nabcde".to_vec(), true),
        },
        Duration::from_secs(5),
    )
    .await;
    let proxy = proxy_for(origin.addr).await;
    for path in ["/both", "/two-lengths"] {
        assert_eq!(get(&proxy, path).await.0, StatusCode::BAD_GATEWAY, "{path}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_chunked_answer_is_relayed_whole_with_its_trailers() {
    let origin = raw_origin(
        |head| {
            let trailers = head.starts_with("GET /trailers ");
            let mut a = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n".to_vec();
            if trailers {
                a.extend_from_slice(b"trailer: x-checksum\r\n");
            }
            a.extend_from_slice(b"\r\n5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nchunks\r\n0\r\n");
            a.extend_from_slice(if trailers { b"x-checksum: abc\r\n\r\n" } else { b"\r\n" });
            (a, false)
        },
        Duration::from_secs(5),
    )
    .await;
    let proxy = settled_proxy(&origin).await;
    assert_eq!(get(&proxy, "/plain").await.2, Bytes::from_static(b"hello chunks"));
    let req = Request::get(proxy.url("/trailers")).header("te", "trailers").body(Full::new(Bytes::new()));
    let resp = h1_client().request(req.expect("request")).await.expect("answer");
    let collected = resp.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().expect("trailers relayed");
    assert_eq!(trailers.get("x-checksum").map(|v| v.as_bytes()), Some(&b"abc"[..]));
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"hello chunks"));
    assert_eq!(origin.conns.load(Ordering::SeqCst), 1, "chunked answers keep their connection");
    proxy.stop().await;
}

/// An origin for a large upload: reads the head, answers `413` at once without reading
/// the body, and closes (with the body unread, so the kernel resets the connection).
async fn refusing_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else { return };
                let answer: &[u8] = if head.starts_with("GET /healthz ") {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                } else {
                    b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big\n"
                };
                let _ = s.write_all(answer).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_early_413_reaches_the_client_every_time() {
    let proxy = proxy_for(refusing_origin().await).await;
    let mut req = b"POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 8388608\r\n\r\n".to_vec();
    req.resize(req.len() + (8 << 20), b'x');
    for i in 0..20 {
        let got = raw_exchange(proxy.addrs.public, req.clone(), Duration::from_secs(10)).await;
        assert!(
            got.starts_with(b"HTTP/1.1 413 "),
            "try {i}: {}",
            String::from_utf8_lossy(&got[..got.len().min(200)])
        );
    }
    proxy.stop().await;
}

/// An origin for `Expect: 100-continue`: after the head, waits `delay`, then either says
/// `100 Continue` and reads the 5-byte body (answering it back), or answers `final_answer`
/// at once. Records how many body bytes reached it.
async fn continue_origin(
    delay: Duration,
    final_answer: Option<&'static [u8]>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body_bytes = Arc::new(AtomicUsize::new(0));
    let seen = body_bytes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else { return };
                if head.starts_with("GET /healthz ") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                        .await;
                    return;
                }
                // An origin that answers late: the delay is the test.
                tokio::time::sleep(delay).await;
                let mut body = [0u8; 5];
                match final_answer {
                    Some(answer) => {
                        let _ = s.write_all(answer).await;
                        // Whatever arrives now is a body that should not have been sent.
                        let mut rest = [0u8; 64];
                        if let Ok(Ok(n)) =
                            tokio::time::timeout(Duration::from_millis(500), s.read(&mut rest)).await
                        {
                            seen.fetch_add(n, Ordering::SeqCst);
                        }
                    }
                    None => {
                        let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                        if s.read_exact(&mut body).await.is_ok() {
                            seen.fetch_add(5, Ordering::SeqCst);
                            let mut a = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec();
                            a.extend_from_slice(&body);
                            let _ = s.write_all(&a).await;
                        }
                    }
                }
            });
        }
    });
    (addr, body_bytes)
}

const EXPECTING: &[u8] = b"POST /e HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n";

#[tokio::test]
async fn the_clients_100_continue_comes_from_the_origin() {
    let (addr, body_bytes) = continue_origin(Duration::from_millis(300), None).await;
    let proxy = proxy_for(addr).await;
    let s = TcpStream::connect(proxy.addrs.public).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let sent = Instant::now();
    wr.write_all(EXPECTING).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), rd.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed before 100 Continue");
        got.extend_from_slice(&buf[..n]);
    }
    let waited = sent.elapsed();
    assert!(got.starts_with(b"HTTP/1.1 100 Continue\r\n"), "{}", String::from_utf8_lossy(&got));
    assert!(waited >= Duration::from_millis(300), "100 Continue after {waited:?}, before the origin's");
    wr.write_all(b"hello").await.expect("body");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !rest.ends_with(b"hello") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(rest.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&rest));
    assert!(rest.ends_with(b"hello"));
    assert_eq!(body_bytes.load(Ordering::SeqCst), 5);
    proxy.stop().await;
}

#[tokio::test]
async fn a_final_answer_instead_of_100_continue_is_relayed_and_the_body_never_sent() {
    for answer in [
        &b"HTTP/1.1 417 Expectation Failed\r\ncontent-length: 0\r\n\r\n"[..],
        &b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n"[..],
    ] {
        let (addr, body_bytes) = continue_origin(Duration::ZERO, Some(answer)).await;
        let proxy = proxy_for(addr).await;
        let s = TcpStream::connect(proxy.addrs.public).await.expect("connect");
        let (mut rd, mut wr) = s.into_split();
        wr.write_all(EXPECTING).await.expect("write");
        let mut got = vec![0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), rd.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&got[..9], b"HTTP/1.1 ");
        assert_eq!(&got[9..12], &answer[9..12], "the origin's answer, not 100 Continue");
        // A client that sends its body anyway: it must not reach the origin.
        let _ = wr.write_all(b"hello").await;
        // A window in which the body must not reach the origin: the absence is the point.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(body_bytes.load(Ordering::SeqCst), 0, "the body went upstream");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_kept_post_survives_an_origin_that_closed_its_idle_connection() {
    let origin = raw_origin(
        |_| (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(), false),
        Duration::from_millis(50),
    )
    .await;
    let proxy = proxy_for(origin.addr).await;
    let client = h1_client();
    for i in 0..5 {
        let req = Request::builder()
            .method(Method::POST)
            .uri(proxy.url("/p"))
            .body(Full::new(Bytes::from_static(b"")));
        let resp = client.request(req.expect("request")).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
        let _ = resp.into_body().collect().await;
        // Idle past the origin's 50 ms, so it closes the pooled connection: the gap is the test.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.stop().await;
}
