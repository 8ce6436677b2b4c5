//! Regions with real proxies and origins on loopback: weighted shares, failover
//! when a region's origins die and their return, the hop limit between two regions that
//! point at each other, public listeners ignoring the fleet's headers, and the number of
//! connections to a peer under concurrency.
//!
//! The tests take turns (`SERIAL`): the failover test measures time, and the load of the
//! others on a small machine would blur it.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use support::admin::{HttpClient, metric, wait_probed_and_healthy};
use support::fleet::{Fleet, FleetSpec};
use support::wait::wait_until;
use support::{ProxyConfig, exchange, h1_client, origin, region_of};
use tokio::net::{TcpListener, TcpStream};

const A: &str = "us-east-1";
const B: &str = "us-west-2";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One request: status and the region that answered (`-` when the header is missing).
async fn one(client: &HttpClient, req: http::Request<Full<Bytes>>) -> Result<(u16, String, Bytes), String> {
    let (status, headers, body) = exchange(client, req).await?;
    Ok((status.as_u16(), region_of(&headers), body))
}

fn get_req(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::new(Bytes::new())).expect("request")
}

/// `clients` concurrent clients (one connection pool each) send `per_client` GETs of
/// `url` each; returns every outcome.
async fn burst(url: &str, clients: usize, per_client: usize) -> Vec<Result<(u16, String), String>> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let url = url.to_owned();
        tasks.spawn(async move {
            let client = h1_client();
            let mut out = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                out.push(one(&client, get_req(&url)).await.map(|(s, r, _)| (s, r)));
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("client task"));
    }
    all
}

/// Requests a proxy's peer listener has answered (its health endpoint not counted).
async fn peer_requests(admin: SocketAddr) -> f64 {
    metric(admin, "flowgate_requests_total", &["listener=\"peer\""]).await
}

/// Waits until every proxy of the fleet answers through its public listener and has had
/// its first health probes answered.
async fn settle(fleet: &Fleet) {
    let client = h1_client();
    for r in &fleet.regions {
        wait_until(&format!("{} to answer 200", r.name), Duration::from_secs(10), || async {
            one(&client, get_req(&r.proxy.url("/"))).await.is_ok_and(|(s, _, _)| s == 200)
        })
        .await;
    }
    fleet.wait_settled().await;
}

/// A row `{A: 60, B: 40}` at a proxy of A splits 10,000 requests 60/40
/// within ±3 points, and the origins saw exactly what the responses claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_row_splits_traffic_by_its_weights() {
    let _turn = SERIAL.lock().await;
    let table = r#"{"version": 1, "weights": {"us-east-1": {"us-east-1": 60, "us-west-2": 40}}}"#;
    let fleet = Fleet::start(FleetSpec { regions: &[A, B], table: Some(table), ..Default::default() }).await;
    settle(&fleet).await;
    let (a, b) = (fleet.region(A), fleet.region(B));
    let (a_before, b_before) = (a.origin.hits.load(Ordering::SeqCst), b.origin.hits.load(Ordering::SeqCst));

    let started = Instant::now();
    let results = burst(&a.proxy.url("/"), 16, 625).await;
    let took = started.elapsed();
    assert_eq!(results.len(), 10_000);
    let (mut from_a, mut from_b) = (0usize, 0usize);
    for r in &results {
        match r {
            Ok((200, region)) if region == A => from_a += 1,
            Ok((200, region)) if region == B => from_b += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    let share_a = from_a as f64 / 100.0;
    let share_b = from_b as f64 / 100.0;
    eprintln!("10000 requests in {took:?}: {A} {share_a:.2} %, {B} {share_b:.2} %");
    assert!((share_a - 60.0).abs() <= 3.0, "{A} served {share_a:.2} %, want 60 ± 3");
    assert!((share_b - 40.0).abs() <= 3.0, "{B} served {share_b:.2} %, want 40 ± 3");
    // The header tells the truth: each origin saw exactly the requests credited to it.
    assert_eq!(a.origin.hits.load(Ordering::SeqCst) - a_before, from_a);
    assert_eq!(b.origin.hits.load(Ordering::SeqCst) - b_before, from_b);
    fleet.stop().await;
}

/// What the load of the failover test recorded, per request.
struct Seen {
    at: Instant,
    outcome: Result<(u16, String), String>,
}

/// Every origin endpoint of B dies under full-speed load through A, whose
/// row spreads traffic over A and B. No client request fails; within two health intervals
/// B's peer listener gets no more requests; when B's origin returns, so does its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_region_is_routed_around_without_errors_and_its_share_returns() {
    let _turn = SERIAL.lock().await;
    let interval = Duration::from_millis(250);
    let table = r#"{"version": 1, "weights": {"us-east-1": {"us-east-1": 50, "us-west-2": 50}}}"#;
    let fleet = Fleet::start(FleetSpec {
        regions: &[A, B],
        table: Some(table),
        health_interval: interval,
        // A returning region ramps back over 1 s rather than the default 10 s.
        extra: "[balance]\nslow_start = \"1s\"\n",
        ..Default::default()
    })
    .await;
    settle(&fleet).await;
    let (a, b) = (fleet.region(A), fleet.region(B));

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Seen>::new()));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (stop, seen, url) = (stop.clone(), seen.clone(), a.proxy.url("/"));
        load.spawn(async move {
            let client = h1_client();
            // Bounded: stops on the flag, or after 200,000 requests at most.
            for _ in 0..200_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let outcome = one(&client, get_req(&url)).await.map(|(s, r, _)| (s, r));
                seen.lock().expect("seen").push(Seen { at: Instant::now(), outcome });
            }
        });
    }
    let served_by_b_since = |since: Instant| -> (usize, usize) {
        let seen = seen.lock().expect("seen");
        let window: Vec<&Seen> = seen.iter().filter(|s| s.at >= since).collect();
        let b = window.iter().filter(|s| matches!(&s.outcome, Ok((200, r)) if r == B)).count();
        (b, window.len())
    };

    // Warm: both regions serve, over a window of load that is the measure.
    let warm = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (b_warm, n_warm) = served_by_b_since(warm);
    assert!(n_warm > 50, "load too thin to judge: {n_warm} requests in 800 ms");
    assert!(b_warm * 100 > n_warm * 30, "before the kill {B} served {b_warm} of {n_warm}");

    // Kill B's only origin endpoint, and watch B's peer listener.
    let peer_before = peer_requests(b.proxy.addrs.admin).await;
    let killed = Instant::now();
    b.origin.kill();
    let mut samples = Vec::new();
    let watch_until = killed + Duration::from_millis(2500);
    while Instant::now() < watch_until {
        samples.push((killed.elapsed(), peer_requests(b.proxy.addrs.admin).await));
        // The pace of the samples over the watched window.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = samples.last().expect("samples").1;
    // The first sample from which B's count never moved again.
    let quiet_from = samples.iter().rev().take_while(|(_, n)| *n == last).last().expect("sample").0;
    let after_kill = last - peer_before;
    eprintln!(
        "B's peer listener took {after_kill} requests after the kill; none from {quiet_from:?} on \
         (health interval {interval:?})"
    );
    // `quiet_from` is when a sample first saw the final count: the last request to B
    // arrived before it.
    assert!(
        quiet_from <= interval * 2,
        "{B} still got requests {quiet_from:?} after its origin died (want <= 2 intervals = {:?})",
        interval * 2
    );
    assert!(samples.iter().any(|(t, _)| *t >= Duration::from_millis(2000)), "the watch ended early");
    // Sanity: the kill worked (answers already on their way at the kill may land just after).
    let (b_dead, n_dead) = served_by_b_since(killed + Duration::from_millis(100));
    assert_eq!(b_dead, 0, "{B} served requests with its origin dead");
    assert!(n_dead > 50, "load too thin while B was dead: {n_dead}");

    // Bring B back: its share returns (slow start ramps it over 1 s).
    let revived = Instant::now();
    b.origin.revive().await;
    let returned = support::wait::poll(Duration::from_secs(8), Duration::from_millis(250), || async {
        let (bw, nw) = served_by_b_since(Instant::now() - Duration::from_millis(500));
        if nw > 20 && bw * 100 >= nw * 35 { Ok((revived.elapsed(), bw, nw)) } else { Err(()) }
    })
    .await
    .ok();
    stop.store(true, Ordering::SeqCst);
    while let Some(r) = load.join_next().await {
        r.expect("load task");
    }
    let (elapsed, bw, nw) = returned.expect("B's share never came back within 8 s of its origin's return");
    eprintln!("{B} back to {bw} of {nw} requests in a 500 ms window, {elapsed:?} after revive");

    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    let failed: Vec<&Result<(u16, String), String>> =
        seen.iter().map(|s| &s.outcome).filter(|o| !matches!(o, Ok((200, _)))).collect();
    eprintln!("{} requests, {} failed", seen.len(), failed.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)]
    );
    fleet.stop().await;
}

/// A and B weighted 100 % at each other. Every request is served after one
/// hop (`max_hops` = 1), by the other region's origin; nothing ping-pongs: each origin
/// saw exactly the requests sent to the other region's proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_pointing_at_each_other_do_not_loop() {
    let _turn = SERIAL.lock().await;
    let table =
        r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 100}, "us-west-2": {"us-east-1": 100}}}"#;
    let fleet = Fleet::start(FleetSpec { regions: &[A, B], table: Some(table), ..Default::default() }).await;
    let (a, b) = (fleet.region(A), fleet.region(B));
    fleet.wait_settled().await;
    let (a0, b0) = (a.origin.hits.load(Ordering::SeqCst), b.origin.hits.load(Ordering::SeqCst));
    let (pa0, pb0) = (peer_requests(a.proxy.addrs.admin).await, peer_requests(b.proxy.addrs.admin).await);

    const N: usize = 150;
    let client = h1_client();
    for (entry, other) in [(a, B), (b, A)] {
        for _ in 0..N {
            let (status, region, body) =
                one(&client, get_req(&entry.proxy.url("/headers"))).await.expect("answer");
            assert_eq!(status, 200, "via {}: {body:?}", entry.name);
            assert_eq!(region, other, "via {}", entry.name);
            let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(seen["x-flowgate-hops"], "1", "via {}: {seen}", entry.name);
            assert_eq!(seen["x-flowgate-source-region"], entry.name.as_str());
        }
    }
    // Each origin saw exactly the N requests that entered at the other region: none
    // bounced back, none was served twice.
    assert_eq!(a.origin.hits.load(Ordering::SeqCst) - a0, N);
    assert_eq!(b.origin.hits.load(Ordering::SeqCst) - b0, N);
    // And each peer listener took exactly N: no second hop anywhere.
    assert_eq!(peer_requests(a.proxy.addrs.admin).await - pa0, N as f64);
    assert_eq!(peer_requests(b.proxy.addrs.admin).await - pb0, N as f64);
    fleet.stop().await;
}

/// A client of the public listener cannot steer with the fleet's headers.
/// Row A → B 100 %: claiming to have used up the hops does not keep the request at A,
/// and the origin sees the hop count and source region that A set, not the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_clients_cannot_set_hops_or_source_region() {
    let _turn = SERIAL.lock().await;
    let table = r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 100}}}"#;
    let fleet =
        Fleet::start(FleetSpec { regions: &[A, B, "eu-west-1"], table: Some(table), ..Default::default() })
            .await;
    let a = fleet.region(A);
    fleet.wait_settled().await;
    let client = h1_client();
    let forged: &[(&str, &str)] = &[
        ("5", "eu-west-1"),
        ("1", "us-west-2"),
        ("0", "us-east-1"),
        ("not-a-number", "nowhere"),
        ("4294967295", "eu-west-1"),
    ];
    for (hops, source) in forged {
        let req = http::Request::get(a.proxy.url("/headers"))
            .header("x-flowgate-hops", *hops)
            .header("x-flowgate-source-region", *source)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (status, region, body) = one(&client, req).await.expect("answer");
        assert_eq!(status, 200, "hops {hops}: {body:?}");
        assert_eq!(region, B, "a client's x-flowgate-hops: {hops} changed where the request went");
        let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(seen["x-flowgate-hops"], "1", "client sent hops {hops}: {seen}");
        assert_eq!(seen["x-flowgate-source-region"], A, "client sent source {source}: {seen}");
    }
    assert_eq!(a.origin.hits.load(Ordering::SeqCst), 0, "nothing may be served at A");

    // Control: the same forged field on A's peer listener, which trusts it, does keep the
    // request at A. So the header would change routing if the public listener took it.
    let peer = a.proxy.addrs.peer.expect("peer listener");
    let req = http::Request::get(format!("http://{peer}/headers"))
        .header("x-flowgate-hops", "5")
        .header("x-flowgate-source-region", "eu-west-1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, region, body) = one(&client, req).await.expect("answer");
    assert_eq!((status, region.as_str()), (200, A), "{body:?}");
    assert_eq!(a.origin.hits.load(Ordering::SeqCst), 1);
    fleet.stop().await;
}

/// Connections through a TCP forwarder: how many were opened, and the most open at once.
#[derive(Default)]
struct ConnCount {
    accepted: AtomicUsize,
    open: AtomicUsize,
    peak: AtomicUsize,
}

struct OpenGuard(Arc<ConnCount>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A TCP forwarder to `backend` that counts the connections made through it.
async fn counting_forwarder(backend: SocketAddr) -> (SocketAddr, Arc<ConnCount>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind forwarder");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(ConnCount::default());
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { return };
            c.accepted.fetch_add(1, Ordering::SeqCst);
            let now = c.open.fetch_add(1, Ordering::SeqCst) + 1;
            c.peak.fetch_max(now, Ordering::SeqCst);
            let guard = OpenGuard(c.clone());
            tokio::spawn(async move {
                let _guard = guard;
                if let Ok(mut outbound) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, count)
}

/// 64 concurrent clients whose requests all go to one peer. Between proxies
/// HTTP/2 is the default, with one connection per peer endpoint: the proxy opens no more
/// than that one to the peer, however many requests are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_one_connection_to_the_peer() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (origin_a, origin_b) = (origin::start().await, origin::start().await);
    let proxy_b = ProxyConfig::new(B, origin_b.addr).health("200ms", "100ms").start().await;
    let (fwd, conns) = counting_forwarder(proxy_b.addrs.peer.expect("peer listener")).await;
    let table = dir.path().join("table.json");
    std::fs::write(&table, r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 100}}}"#).expect("table");
    let proxy_a = ProxyConfig::new(A, origin_a.addr)
        .table(&table)
        .peer(B, &[fwd])
        .health("200ms", "100ms")
        .start()
        .await;
    wait_probed_and_healthy(&[proxy_a.addrs.admin, proxy_b.addrs.admin], Duration::from_secs(10)).await;

    // Each client holds a request open for 40 ms at B's origin, so that all 64 overlap.
    let results = burst(&proxy_a.url("/slow/40"), 64, 8).await;
    let bad: Vec<_> = results.iter().filter(|r| !matches!(r, Ok((200, region)) if region == B)).collect();
    assert!(
        bad.is_empty(),
        "{} of {} failed or not served by {B}: {:?}",
        bad.len(),
        results.len(),
        &bad[..bad.len().min(5)]
    );
    let peak_at_origin = origin_b.peak.load(Ordering::SeqCst);
    let (accepted, peak) = (conns.accepted.load(Ordering::SeqCst), conns.peak.load(Ordering::SeqCst));
    eprintln!(
        "{} requests, up to {peak_at_origin} at once at {B}'s origin; connections to the peer: \
         {accepted} opened, at most {peak} open at once",
        results.len()
    );
    assert!(
        peak_at_origin >= 32,
        "the clients never overlapped ({peak_at_origin} at once): the test proves nothing"
    );
    assert!(accepted >= 1, "nothing went through the forwarder");
    assert!(peak <= 1, "{peak} connections open at once to one peer endpoint (h2 limit: 1)");
    assert!(accepted <= 2, "{accepted} connections opened to the peer over the test");
    assert_eq!(origin_a.hits.load(Ordering::SeqCst), 0);
    proxy_a.stop().await;
    proxy_b.stop().await;
}
