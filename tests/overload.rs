//! Overload: at twice what the proxy may hold in flight, high-priority requests still get
//! through while low-priority ones are shed with 503, and the admin listener answers.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::wait::wait_until;
use support::{TestProxy, config_text, h1_client, origin};

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    shed: AtomicU64,
    other: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_priority_is_shed_first_and_high_priority_gets_through() {
    let o = origin::start().await;
    // 20 in flight at most; each request holds its slot 200 ms: ~100 rps of capacity.
    let extra = "[overload]\nmax_inflight = 20\nshed_low_at = 50\nshed_normal_at = 80\nshed_high_at = 95\n";
    let p = TestProxy::start(&config_text(o.addr, extra)).await;
    let url: http::Uri = p.url("/slow/200").parse().expect("url");
    let client = h1_client();
    let (low, high) = (Arc::new(Counts::default()), Arc::new(Counts::default()));
    let until = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    // 40 low-priority clients: twice the cap on their own.
    for i in 0..44 {
        let (client, url) = (client.clone(), url.clone());
        let (counts, priority) = if i < 40 { (low.clone(), "low") } else { (high.clone(), "high") };
        tasks.push(tokio::spawn(async move {
            // Bounded by the deadline, and by a request count in case the clock stalls.
            for _ in 0..200 {
                if Instant::now() >= until {
                    break;
                }
                let req = http::Request::get(url.clone())
                    .header("x-priority", priority)
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
                    Ok(Ok(resp)) => {
                        let status = resp.status();
                        let shed = resp.headers().get("x-flowgate-error").is_some_and(|v| v == "shed")
                            && resp.headers().contains_key("retry-after");
                        let _ = resp.into_body().collect().await;
                        if status == 200 {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                        } else if status == 503 && shed {
                            counts.shed.fetch_add(1, Ordering::Relaxed);
                            // A shed client backs off a little, as Retry-After asks (pacing).
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        } else {
                            counts.other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        counts.other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // The admin listener keeps answering quickly while the public side is saturated
    // (low-priority requests being shed says it is).
    wait_until("the public side to shed", Duration::from_secs(3), || async {
        low.shed.load(Ordering::Relaxed) > 0
    })
    .await;
    let admin = h1_client();
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t0 = Instant::now();
        let (status, _, _) = support::get(&admin, &format!("http://{}/healthz", p.addrs.admin)).await;
        worst = worst.max(t0.elapsed());
        assert_eq!(status, 200);
        // Samples spread over the overload.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let (l_ok, l_shed, l_other) =
        (low.ok.load(Ordering::Relaxed), low.shed.load(Ordering::Relaxed), low.other.load(Ordering::Relaxed));
    let (h_ok, h_shed, h_other) = (
        high.ok.load(Ordering::Relaxed),
        high.shed.load(Ordering::Relaxed),
        high.other.load(Ordering::Relaxed),
    );
    eprintln!(
        "low: {l_ok} ok, {l_shed} shed, {l_other} other; high: {h_ok} ok, {h_shed} shed, {h_other} other; healthz worst {worst:?}"
    );
    assert_eq!(l_other + h_other, 0, "only 200 or 503 shed");
    assert!(l_shed > 0, "low-priority requests are shed under overload");
    let h_total = h_ok + h_shed;
    assert!(h_total >= 20, "high-priority clients made requests: {h_total}");
    assert!(h_ok * 100 >= h_total * 99, "high priority: {h_ok} of {h_total} succeeded");
    assert!(worst < Duration::from_millis(100), "/healthz took {worst:?} under overload");
    assert!(o.peak.load(Ordering::SeqCst) <= 20, "never more than max_inflight at the origin");
    p.stop().await;
}

/// Sends one request on `s` and returns the first bytes of the answer.
async fn ask(s: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: cap.test\r\n\r\n").await.ok()?;
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (_o, p) = support::fronted("[limits]\nmax_connections = 4\n").await;
    // Four keep-alive clients hold every slot.
    let mut held = Vec::new();
    for i in 0..4 {
        let mut s = tokio::net::TcpStream::connect(p.addrs.public).await.expect("connect");
        let answer = ask(&mut s, Duration::from_secs(5)).await.unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 200"), "client {i}: {answer:?}");
        held.push(s);
    }
    // A fifth connects (the kernel's backlog takes it) but is not served while they stay.
    let mut fifth = tokio::net::TcpStream::connect(p.addrs.public).await.expect("connect");
    assert_eq!(ask(&mut fifth, Duration::from_millis(700)).await, None, "a fifth connection was served");
    // The admin listener is not capped by the data plane.
    let admin = h1_client();
    let (status, _, _) = support::get(&admin, &format!("http://{}/healthz", p.addrs.admin)).await;
    assert_eq!(status, 200);
    // One client leaves: the waiting one is accepted and answered.
    drop(held.pop());
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut fifth, &mut buf))
        .await
        .expect("the fifth connection is served once a slot frees")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "fifth: {:?}", &buf[..n]);
    p.stop().await;
}
