//! Timeouts and limits, and that abusive or broken peers do not disturb anyone else.
//!
//! - a client sending its request head one byte a second is cut off after `header_read`;
//! - a 64 KiB header gets 431 (default `max_header_bytes` is 32 KiB);
//! - an origin that never answers gets 504 `x-flowgate-error: timeout` after `request`;
//! - an origin that refuses connections gets 502;
//! - all of the above at once leave other clients' requests fast and successful;
//! - an idle keep-alive connection lives for `idle`, not `header_read`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::wait::wait_until;
use support::{TestProxy, config_text, get, h1_client, origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a slowloris connection ended, measured from its first byte.
#[derive(Debug)]
enum SlowEnd {
    /// The proxy closed or reset the connection after this long.
    Cut(Duration),
    /// The proxy answered something (it should not have: the head never completed).
    Answered(Vec<u8>),
    /// Nothing happened within the observation window.
    StillOpen,
}

/// Connects, stays silent for a moment, then sends a request head one byte per second,
/// and reports when the proxy ends the connection, measured from the first byte. The
/// silent start matters: the proxy has by then settled the connection as idle, and must
/// still notice that a request head has begun. The head is long enough (over 40 bytes)
/// never to complete in the window.
async fn slowloris(addr: SocketAddr, window: Duration) -> SlowEnd {
    slowloris_told(addr, window, Arc::default()).await
}

/// `slowloris`, setting `begun` once the first byte of the head is sent.
async fn slowloris_told(addr: SocketAddr, window: Duration, begun: Arc<AtomicBool>) -> SlowEnd {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    // The silent start, as described above.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let head = b"GET / HTTP/1.1\r\nHost: slow.example\r\nX-Slow: aaaaaaaaaaaaaaaa\r\n\r\n";
    let t0 = Instant::now();
    let writer = tokio::spawn(async move {
        for b in head {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            begun.store(true, Ordering::SeqCst);
            // One byte a second: the slowness is the test.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = loop {
        let left = window.saturating_sub(t0.elapsed());
        match tokio::time::timeout(left, rd.read(&mut buf)).await {
            Err(_) => break SlowEnd::StillOpen,
            Ok(Ok(0)) | Ok(Err(_)) if got.is_empty() => break SlowEnd::Cut(t0.elapsed()),
            Ok(Ok(0)) | Ok(Err(_)) => break SlowEnd::Answered(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    writer.abort();
    end
}

/// Sends `head` on a fresh connection (writing from a separate task, so a proxy that
/// answers early and closes cannot block us) and returns the response's status code.
async fn raw_status(addr: SocketAddr, head: Vec<u8>) -> u16 {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The proxy may close before reading it all; that is the point.
        let _ = wr.write_all(&head).await;
        wr
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        // Bounded: stops at the end of the response head, at EOF, or after 64 KiB.
        while got.len() < 64 * 1024 && !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(read.is_ok(), "no response within 10 s");
    let text = String::from_utf8_lossy(&got);
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|s| s.get(..3)).and_then(|s| s.parse().ok());
    status.unwrap_or_else(|| panic!("not an HTTP/1.1 response: {text:?}"))
}

/// A request head whose one header is 64 KiB long.
fn oversized_head() -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: big.example\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 64 * 1024));
    head.extend_from_slice(b"\r\n\r\n");
    head
}

#[tokio::test]
async fn slow_header_sender_is_cut_after_header_timeout() {
    let o = origin::start().await;
    let p = TestProxy::start(&config_text(o.addr, "[timeouts]\nheader_read = \"1s\"\n")).await;
    match slowloris(p.addrs.public, Duration::from_secs(8)).await {
        SlowEnd::Cut(after) => {
            eprintln!("slowloris cut after {after:?}");
            assert!(
                after >= Duration::from_millis(900) && after <= Duration::from_secs(4),
                "cut after {after:?}, expected about the 1 s header timeout"
            );
        }
        SlowEnd::Answered(got) => {
            panic!("the proxy answered an incomplete head: {}", String::from_utf8_lossy(&got))
        }
        SlowEnd::StillOpen => panic!("the slow client was not cut off within 8 s"),
    }
    assert_eq!(o.hits.load(Ordering::SeqCst), 0, "nothing reached the origin");
    p.stop().await;
}

#[tokio::test]
async fn header_of_64_kib_gets_431() {
    let (_o, p) = support::fronted("").await;
    assert_eq!(raw_status(p.addrs.public, oversized_head()).await, 431);
    // The same request with a small header goes through: the 431 is about the size.
    assert_eq!(
        raw_status(p.addrs.public, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: a\r\n\r\n".to_vec()).await,
        200
    );
    p.stop().await;
}

#[tokio::test]
async fn origin_that_never_answers_gets_504_after_request_timeout() {
    let o = origin::start().await;
    let p = TestProxy::start(&config_text(o.addr, "[timeouts]\nrequest = \"1s\"\n")).await;
    let t0 = Instant::now();
    let (status, headers, _) = get(&h1_client(), &p.url("/hang")).await;
    let took = t0.elapsed();
    assert_eq!(status, 504);
    assert_eq!(headers["x-flowgate-error"], "timeout");
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_secs(3),
        "504 after {took:?}, expected about the 1 s request timeout"
    );
    p.stop().await;
}

#[tokio::test]
async fn origin_that_refuses_connections_gets_502() {
    let dead = origin::refusing_addr().await;
    let p = TestProxy::start(&config_text(dead, "")).await;
    let t0 = Instant::now();
    let (status, headers, _) = get(&h1_client(), &p.url("/")).await;
    assert_eq!(status, 502);
    assert!(headers.contains_key("x-flowgate-error"), "a proxy-made 502 says why: {headers:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "a refused connect must fail fast, took {:?}",
        t0.elapsed()
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_clients_and_broken_origins_do_not_disturb_others() {
    let o = origin::start().await;
    let dead = origin::refusing_addr().await;
    // Long enough timeouts that the slow client and the hanging request are still under
    // way while the batch runs.
    let extra = format!(
        "[timeouts]\nheader_read = \"3s\"\nrequest = \"3s\"\n\n[origins.dead]\nendpoints = [\"{dead}\"]\n\n\
         [[routes]]\nhost = \"*\"\npath_prefix = \"/dead\"\norigin = \"dead\"\n"
    );
    let p = TestProxy::start(&config_text(o.addr, &extra)).await;
    let public = p.addrs.public;

    let begun = Arc::new(AtomicBool::new(false));
    let slow = tokio::spawn(slowloris_told(public, Duration::from_secs(10), begun.clone()));
    let hang_url = p.url("/hang");
    let hang = tokio::spawn(async move {
        let t0 = Instant::now();
        let (status, headers, _) = get(&h1_client(), &hang_url).await;
        (status, headers, t0.elapsed())
    });
    // Wait until the hanging request has reached the origin (bounded).
    wait_until("the /hang request to reach the origin", Duration::from_secs(2), || async {
        o.hits.load(Ordering::SeqCst) > 0
    })
    .await;
    // And until the slow client has begun its head (it starts after 300 ms).
    wait_until("the slow client to begin its head", Duration::from_secs(2), || async {
        begun.load(Ordering::SeqCst)
    })
    .await;

    // The batch: 100 normal requests, plus 431s and 502s mixed in, all at once.
    let client = h1_client();
    let t0 = Instant::now();
    let normal = futures_util::future::join_all((0..100).map(|i| {
        let client = client.clone();
        let url = p.url(&format!("/n/{i}"));
        async move {
            let t = Instant::now();
            let (status, _, body) = get(&client, &url).await;
            (status, body, t.elapsed())
        }
    }));
    let oversized = futures_util::future::join_all((0..10).map(|_| raw_status(public, oversized_head())));
    let refused = futures_util::future::join_all((0..10).map(|i| {
        let client = client.clone();
        let url = p.url(&format!("/dead/{i}"));
        async move { get(&client, &url).await.0 }
    }));
    let (normal, oversized, refused) =
        tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(normal, oversized, refused) })
            .await
            .expect("the batch finished within 5 s");
    let batch = t0.elapsed();

    // The abusers must still be under way, or the batch did not run alongside them.
    assert!(!slow.is_finished(), "the slow client ended before the batch did ({batch:?})");
    assert!(!hang.is_finished(), "the hanging request ended before the batch did ({batch:?})");

    let slowest = normal.iter().map(|r| r.2).max().unwrap_or_default();
    eprintln!("batch of 120 requests took {batch:?}; slowest normal request {slowest:?}");
    for (status, body, _) in &normal {
        assert_eq!(*status, 200);
        assert_eq!(&body[..], b"ok");
    }
    assert!(slowest < Duration::from_secs(2), "a normal request took {slowest:?}");
    assert!(oversized.iter().all(|s| *s == 431), "oversized headers: {oversized:?}");
    assert!(refused.iter().all(|s| *s == 502), "refusing origin: {refused:?}");

    // And the abusers got what they deserve once their timeouts ran out.
    match slow.await.expect("slowloris task") {
        SlowEnd::Cut(after) => assert!(after <= Duration::from_secs(6), "cut after {after:?}"),
        SlowEnd::Answered(got) => {
            panic!("the proxy answered an incomplete head: {}", String::from_utf8_lossy(&got))
        }
        SlowEnd::StillOpen => panic!("the slow client was not cut off within 10 s"),
    }
    let (status, headers, took) = hang.await.expect("hang task");
    assert_eq!(status, 504);
    assert_eq!(headers["x-flowgate-error"], "timeout");
    assert!(took >= Duration::from_millis(2900), "504 after {took:?}, before the 3 s timeout");
    p.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_outlives_header_timeout_and_ends_after_idle() {
    let o = origin::start().await;
    let p = TestProxy::start(&config_text(o.addr, "[timeouts]\nheader_read = \"1s\"\nidle = \"3s\"\n")).await;
    let stream = TcpStream::connect(p.addrs.public).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let req = || Request::get("/").header("host", "idle.example").body(Empty::new()).expect("request");

    let resp = send.send_request(req()).await.expect("first response");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.expect("first body");

    // Idle for twice the header timeout (the idling is the test): the same connection
    // must still serve.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!conn.is_finished(), "the idle connection was closed before the idle timeout");
    send.ready().await.expect("connection still usable");
    let resp = send.send_request(req()).await.expect("second response on the same connection");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.expect("second body");
    let idle_from = Instant::now();

    // Then idle past the idle timeout: the proxy closes it.
    let closed = tokio::time::timeout(Duration::from_secs(6), conn).await;
    let after = idle_from.elapsed();
    assert!(closed.is_ok(), "the idle connection was still open 6 s after its last request");
    assert!(
        after >= Duration::from_millis(2500) && after <= Duration::from_secs(5),
        "closed {after:?} after the last request, expected about the 3 s idle timeout"
    );
    assert_eq!(o.hits.load(Ordering::SeqCst), 2);
    p.stop().await;
}
