//! HTTP/2 protections on the public listener, driven with a real HTTP/2 client (the `h2`
//! crate, prior knowledge): the concurrent-stream limit, the header list limit, rapid
//! reset (CVE-2023-44487) and keep-alive pings that close a connection to a dead peer.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use support::{TestProxy, origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn proxy(extra: &str) -> (TestProxy, origin::Origin) {
    let (o, p) = support::fronted(extra).await;
    (p, o)
}

async fn h2(
    addr: std::net::SocketAddr,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    (client, tokio::spawn(conn))
}

async fn get_status(client: &mut h2::client::SendRequest<Bytes>, url: &str) -> Result<StatusCode, h2::Error> {
    let ready =
        tokio::time::timeout(Duration::from_secs(10), client.clone().ready()).await.expect("ready in time");
    let mut ready = ready?;
    let (resp, _) = ready.send_request(Request::get(url).body(()).expect("request"), true)?;
    Ok(tokio::time::timeout(Duration::from_secs(10), resp).await.expect("answer in time")?.status())
}

#[tokio::test]
async fn the_stream_limit_is_advertised_and_enforced() {
    let (p, _o) = proxy("[limits]\nmax_concurrent_streams = 8\n").await;
    let (mut client, _conn) = h2(p.addrs.public).await;
    let url = p.url("/slow/300");
    // The first answer guarantees the server's SETTINGS have been read.
    assert_eq!(get_status(&mut client, &p.url("/")).await.expect("first request"), StatusCode::OK);
    assert_eq!(client.current_max_send_streams(), 8, "the server advertises its stream limit");
    // 24 requests at once: at most 8 run together; the rest wait, none fails.
    let started = Instant::now();
    let all = (0..24).map(|_| {
        let (mut c, url) = (client.clone(), url.clone());
        tokio::spawn(async move { get_status(&mut c, &url).await })
    });
    for r in futures_util::future::join_all(all).await {
        assert_eq!(r.expect("task").expect("answer"), StatusCode::OK);
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(850), "24 requests of 300 ms over 8 streams took {took:?}");
    p.stop().await;
}

#[tokio::test]
async fn an_oversized_header_list_is_refused_and_the_connection_survives() {
    let (p, _o) = proxy("").await;
    let (mut client, _conn) = h2(p.addrs.public).await;
    assert_eq!(get_status(&mut client, &p.url("/")).await.expect("first request"), StatusCode::OK);
    // 40 KiB of headers against a 32 KiB limit.
    let mut req = Request::get(p.url("/")).body(()).expect("request");
    for i in 0..40 {
        let name = http::HeaderName::try_from(format!("x-pad-{i}")).expect("name");
        req.headers_mut().insert(name, "a".repeat(1000).parse().expect("value"));
    }
    let mut ready = client.clone().ready().await.expect("ready");
    let refused = match ready.send_request(req, true) {
        Err(_) => true,
        Ok((resp, _)) => match tokio::time::timeout(Duration::from_secs(10), resp).await.expect("in time") {
            Err(_) => true,
            Ok(r) => r.status() == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        },
    };
    assert!(refused, "an oversized header list must be refused (stream reset or 431)");
    // A normal request on a fresh connection is served.
    let (mut fresh, _c) = h2(p.addrs.public).await;
    assert_eq!(get_status(&mut fresh, &p.url("/")).await.expect("after"), StatusCode::OK);
    p.stop().await;
}

#[tokio::test]
async fn rapid_reset_gets_the_connection_closed() {
    let (p, o) = proxy("").await;
    let (client, conn) = h2(p.addrs.public).await;
    let url = p.url("/slow/1000");
    // Bursts of streams opened and cancelled at once, as in CVE-2023-44487.
    let mut sent = 0;
    'attack: for _ in 0..50 {
        let mut c = match tokio::time::timeout(Duration::from_secs(5), client.clone().ready()).await {
            Ok(Ok(c)) => c,
            _ => break,
        };
        for _ in 0..50 {
            match c.send_request(Request::get(&url).body(()).expect("request"), false) {
                Ok((_resp, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    sent += 1;
                }
                Err(_) => break 'attack,
            }
        }
        tokio::task::yield_now().await;
    }
    let ended =
        tokio::time::timeout(Duration::from_secs(10), conn).await.expect("the server ends the connection");
    let err = ended.expect("task").expect_err("the connection ends with an error");
    assert!(
        err.is_go_away() && err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM),
        "expected GOAWAY ENHANCE_YOUR_CALM, got {err:?} after {sent} resets"
    );
    assert!(sent < 2500, "the attack was not cut short: {sent} streams reset");
    // The attack cost the origin little, and other clients are served.
    let hits = o.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(hits < 200, "{hits} of {sent} reset requests reached the origin");
    let (mut fresh, _c) = h2(p.addrs.public).await;
    assert_eq!(get_status(&mut fresh, &p.url("/")).await.expect("after"), StatusCode::OK);
    p.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_disconnected() {
    let (p, _o) =
        proxy("[timeouts]\nh2_ping_interval = \"300ms\"\nh2_ping_timeout = \"300ms\"\nidle = \"60s\"\n")
            .await;
    // A raw HTTP/2 client: preface and empty SETTINGS, then it reads but never answers.
    let mut tcp = TcpStream::connect(p.addrs.public).await.expect("connect");
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let (mut pings, mut closed) = (0, false);
    while started.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                // Frame type 6 is PING (a rough scan: frames may span reads).
                pings +=
                    buf[..n].windows(4).filter(|w| w[3] == 6 && w[0] == 0 && w[1] == 0 && w[2] == 8).count();
            }
            Err(_) => break,
        }
    }
    let took = started.elapsed();
    assert!(pings >= 1, "the server never pinged");
    assert!(closed, "a peer that never answers pings must be disconnected");
    assert!(took < Duration::from_secs(3), "disconnected after {took:?}, expected about 600 ms");
    // A live client on the same proxy is unaffected.
    let (mut live, _c) = h2(p.addrs.public).await;
    assert_eq!(get_status(&mut live, &p.url("/")).await.expect("live client"), StatusCode::OK);
    p.stop().await;
}
