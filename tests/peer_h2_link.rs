//! The HTTP/2 peer link's own pool: one connection per peer endpoint carries every request
//! (and probe) to it, a peer proxy restarted between requests is connected to again, and
//! a peer that refuses connections gives the same answer as before.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::admin::{HttpClient, wait_probed_and_healthy};
use support::wait::wait_until;
use support::{ProxyConfig, TestProxy, exchange, h1_client, origin, region_of};
use tokio::net::{TcpListener, TcpStream};

const A: &str = "us-east-1";
const B: &str = "us-west-2";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn one(client: &HttpClient, url: &str) -> Result<(u16, String, Bytes), String> {
    let req = http::Request::get(url).body(Full::new(Bytes::new())).expect("request");
    let (status, headers, body) = exchange(client, req).await?;
    Ok((status.as_u16(), region_of(&headers), body))
}

/// A TCP forwarder that counts the connections made through it; its backend can be
/// changed (a peer proxy restarted on another port).
struct Forwarder {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    backend: Arc<Mutex<SocketAddr>>,
}

async fn forwarder(backend: SocketAddr) -> Forwarder {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind forwarder");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let backend = Arc::new(Mutex::new(backend));
    let (count, to) = (accepted.clone(), backend.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let target = *to.lock().expect("backend");
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Forwarder { addr, accepted, backend }
}

fn table(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("table.json");
    std::fs::write(&path, r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 100}}}"#).expect("table");
    path
}

/// Region A's proxy sends all its traffic to region B's over h2c, through a forwarder
/// that counts the connections; both proxies probed and healthy.
struct Link {
    _dir: tempfile::TempDir,
    origin_a: origin::Origin,
    origin_b: origin::Origin,
    proxy_a: TestProxy,
    proxy_b: TestProxy,
    fwd: Forwarder,
}

async fn link() -> Link {
    let dir = tempfile::tempdir().expect("tempdir");
    let (origin_a, origin_b) = (origin::start().await, origin::start().await);
    let proxy_b = ProxyConfig::new(B, origin_b.addr).health("200ms", "100ms").start().await;
    let fwd = forwarder(proxy_b.addrs.peer.expect("peer listener")).await;
    let proxy_a = ProxyConfig::new(A, origin_a.addr)
        .table(&table(&dir))
        .peer(B, &[fwd.addr])
        .health("200ms", "100ms")
        .start()
        .await;
    wait_probed_and_healthy(&[proxy_a.addrs.admin, proxy_b.addrs.admin], Duration::from_secs(10)).await;
    Link { _dir: dir, origin_a, origin_b, proxy_a, proxy_b, fwd }
}

/// Two hundred requests one after another, with the health probes beside them, all go
/// over a single h2c connection to the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_h2c_connection() {
    let _turn = SERIAL.lock().await;
    let Link { _dir, origin_a, origin_b: _origin_b, proxy_a, proxy_b, fwd } = link().await;
    let client = h1_client();
    for n in 0..200 {
        let (status, region, body) = one(&client, &proxy_a.url("/")).await.expect("answer");
        assert_eq!((status, region.as_str()), (200, B), "request {n}: {body:?}");
    }
    let accepted = fwd.accepted.load(Ordering::SeqCst);
    assert_eq!(accepted, 1, "{accepted} connections opened to one peer endpoint for 200 requests");
    assert_eq!(origin_a.hits.load(Ordering::SeqCst), 0);
    proxy_a.stop().await;
    proxy_b.stop().await;
}

/// A body too long to keep for retries streams to the peer over the h2c link, frame by
/// frame, while the answer streams back; several at once share the one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_bodies_stream_both_ways_over_the_h2c_link() {
    let _turn = SERIAL.lock().await;
    let Link { _dir, origin_a, origin_b: _origin_b, proxy_a, proxy_b, fwd } = link().await;
    let client = h1_client();
    let sends = (0..4u8).map(|n| {
        let (client, url) = (client.clone(), proxy_a.url("/echo"));
        async move {
            // 1 MiB, each one different, so that a mix-up between streams shows.
            let body: Bytes = (0..1024 * 1024).map(|i: u32| (i % 251) as u8 ^ n).collect::<Vec<u8>>().into();
            let req = http::Request::post(url).body(Full::new(body.clone())).expect("request");
            let (status, headers, echoed) = exchange(&client, req).await.expect("answer");
            assert_eq!((status.as_u16(), region_of(&headers).as_str()), (200, B), "upload {n}");
            assert!(
                echoed == body,
                "upload {n}: {} bytes came back, not the {} sent",
                echoed.len(),
                body.len()
            );
        }
    });
    futures_util::future::join_all(sends).await;
    assert_eq!(fwd.accepted.load(Ordering::SeqCst), 1, "the uploads shared one connection");
    assert_eq!(origin_a.hits.load(Ordering::SeqCst), 0);
    proxy_a.stop().await;
    proxy_b.stop().await;
}

/// The peer proxy stops (its connection closes) and another takes its place: the next
/// requests open a new connection and are served by the peer region again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_connected_to_again() {
    let _turn = SERIAL.lock().await;
    let Link { _dir, origin_a: _origin_a, origin_b, proxy_a, proxy_b, fwd } = link().await;
    let client = h1_client();
    let (status, region, _) = one(&client, &proxy_a.url("/")).await.expect("answer");
    assert_eq!((status, region.as_str()), (200, B));
    assert_eq!(fwd.accepted.load(Ordering::SeqCst), 1);

    proxy_b.stop().await;
    let proxy_b = ProxyConfig::new(B, origin_b.addr).health("200ms", "100ms").start().await;
    *fwd.backend.lock().expect("backend") = proxy_b.addrs.peer.expect("peer listener");
    wait_until("the restarted peer to serve a request", Duration::from_secs(10), || async {
        one(&client, &proxy_a.url("/")).await.is_ok_and(|(s, r, _)| s == 200 && r == B)
    })
    .await;
    // Every request from here on is the peer's, on the new connection.
    for n in 0..20 {
        let (status, region, body) = one(&client, &proxy_a.url("/")).await.expect("answer");
        assert_eq!((status, region.as_str()), (200, B), "request {n} after the restart: {body:?}");
    }
    let accepted = fwd.accepted.load(Ordering::SeqCst);
    assert!(accepted >= 2, "the restarted peer was never connected to again ({accepted})");
    proxy_a.stop().await;
    proxy_b.stop().await;
}

/// A peer endpoint that refuses connections is answered as before: with its health
/// probes off, the request goes to it and the client hears `upstream-connect-failed`
/// (or, with retries spilling to the local region, an answer from it); never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_peer_is_a_connect_failure() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let origin_a = origin::start().await;
    let closed = support::config::free_addr();
    let proxy_a = ProxyConfig::new(A, origin_a.addr).table(&table(&dir)).peer(B, &[closed]).start().await;
    let client = h1_client();
    let resp = tokio::time::timeout(Duration::from_secs(10), async {
        let req = http::Request::get(proxy_a.url("/")).body(Full::new(Bytes::new())).expect("request");
        exchange(&client, req).await
    })
    .await
    .expect("an answer within 10 s")
    .expect("an answer");
    let (status, headers, body) = resp;
    let code = headers.get("x-flowgate-error").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    eprintln!("answer: {status} {code} from {} {body:?}", region_of(&headers));
    assert!(
        (status == 502 && code == "upstream-connect-failed") || (status == 200 && region_of(&headers) == A),
        "{status} {code} {body:?}"
    );
    proxy_a.stop().await;
}
