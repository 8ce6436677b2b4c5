//! Regions failing: a peer region's proxies dying under load, a peer load balancer that
//! fails or crawls and is bypassed, then used again, the retry budget when every upstream
//! fails, and origin concurrency spilling to a peer, then shedding. Real proxies, origins
//! and load balancers on loopback.
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use support::admin::{HttpClient, metric_sum, metrics};
use support::fleet::{Fleet, FleetSpec, LbMode, Region};
use support::h1_client;
use support::wait::{poll, wait_until};
use tokio::sync::Mutex;

const A: &str = "us-east-1";
const B: &str = "us-west-2";
const C: &str = "eu-west-1";

/// One exchange as a client saw it; transport failures are `Err`, not panics, so that
/// load loops can count them.
async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let req = Request::builder().method(method).uri(url).body(Full::new(body)).map_err(|e| e.to_string())?;
    support::exchange(client, req).await
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// B's proxies stop (drain, then connections refused) while GETs and small POSTs
/// run at full speed through A, whose row sends most traffic to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_regions_proxies_dying_under_load_fail_no_request() {
    let table = format!(r#"{{"version": 1, "weights": {{"{A}": {{"{A}": 20, "{B}": 60, "{C}": 20}}}}}}"#);
    let mut fleet = Fleet::start(FleetSpec { table: Some(&table), ..Default::default() }).await;
    let b_index = fleet.regions.iter().position(|r| r.name == B).expect("region B");
    let b = fleet.regions.remove(b_index);
    let a = fleet.region(A);
    fleet.wait_settled().await;

    let url_get = a.proxy.url("/headers");
    let url_post = a.proxy.url("/count");
    let t0 = Instant::now();
    let run_for = Duration::from_millis(3500);
    let kill_at = Duration::from_millis(1000);
    // (started, post, outcome: region and attempts, or the failure)
    type Seen = (Duration, bool, Result<(String, u32), String>);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..6 {
        let post = w >= 4;
        let url = if post { url_post.clone() } else { url_get.clone() };
        let seen = seen.clone();
        workers.push(tokio::spawn(async move {
            let client = h1_client();
            let body = Bytes::from(vec![b'p'; 1024]);
            let mut mine = Vec::new();
            // Bounded in time and count.
            for _ in 0..200_000 {
                let started = t0.elapsed();
                if started >= run_for {
                    break;
                }
                let (method, b) =
                    if post { (Method::POST, body.clone()) } else { (Method::GET, Bytes::new()) };
                let outcome = match send(&client, method, &url, b).await {
                    Ok((s, h, body)) if s == 200 && (!post || body == "1024") => Ok((
                        header(&h, "x-flowgate-region").to_owned(),
                        header(&h, "x-flowgate-attempts").parse().unwrap_or(1),
                    )),
                    Ok((s, h, body)) => Err(format!("{s} {:?} {body:?}", header(&h, "x-flowgate-error"))),
                    Err(e) => Err(e),
                };
                mine.push((started, post, outcome));
            }
            seen.lock().await.extend(mine);
        }));
    }
    // B's proxies die at a set moment of the load.
    tokio::time::sleep(kill_at.saturating_sub(t0.elapsed())).await;
    let Region { proxy: b_proxy, origin: _b_origin, .. } = b;
    let killed = t0.elapsed();
    tokio::time::timeout(Duration::from_secs(10), b_proxy.stop()).await.expect("B stops");
    let stopped = t0.elapsed();
    for w in workers {
        w.await.expect("worker");
    }

    let seen = seen.lock().await;
    let failed: Vec<&Seen> = seen.iter().filter(|s| s.2.is_err()).collect();
    let (gets, posts) = (seen.iter().filter(|s| !s.1).count(), seen.iter().filter(|s| s.1).count());
    let from_b_before = seen.iter().filter(|s| s.0 < killed && matches!(&s.2, Ok((r, _)) if r == B)).count();
    // Two health intervals (200 ms) after B's listeners closed, nothing may go there.
    let late = stopped + Duration::from_millis(600);
    let from_b_late = seen.iter().filter(|s| s.0 > late && matches!(&s.2, Ok((r, _)) if r == B)).count();
    let retried_posts = seen.iter().filter(|s| s.1 && matches!(&s.2, Ok((_, n)) if *n > 1)).count();
    let m = metrics(a.proxy.addrs.admin).await;
    let connect_retries = metric_sum(&m, "flowgate_retries_total", &["connect-failure"]);
    eprintln!(
        "peer proxies dying: {gets} GETs, {posts} POSTs, {} failed; B served {from_b_before} before the kill \
         (stop took {:?}); {retried_posts} POSTs took more than one attempt; A counted \
         {connect_retries} connect-failure retries",
        failed.len(),
        stopped - killed
    );
    assert!(gets > 400 && posts > 150, "too little load to judge: {gets} GETs, {posts} POSTs");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, first: {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(from_b_before > 100, "B must carry traffic before it dies: {from_b_before}");
    assert_eq!(from_b_late, 0, "requests still answered by B after its proxies died");
    assert!(connect_retries > 0.0, "the refused connections to B must have been retried");
    // A refused connection takes the endpoint out at once, so only the requests in flight
    // at the kill meet one, and whether a POST is among them is luck: that a refused POST
    // is retried elsewhere is checked deterministically in tests/crash.rs.
    let _ = retried_posts;
    fleet.stop().await;
}

/// What one load-balancer episode looked like to clients.
struct Episode {
    to_bypass: Duration,
    to_return: Duration,
    requests: usize,
    errors_before_switch: usize,
    errors_after_switch: usize,
    lb_seen_during_bypass: usize,
    requests_during_bypass: usize,
    lb_seen_after_return: usize,
    requests_after_return: usize,
}

/// A sends everything to B (`auto`); B's load balancer turns `bad`, then heals.
async fn lb_episode(bad: LbMode) -> Episode {
    let table =
        format!(r#"{{"version": 1, "weights": {{"{A}": {{"{B}": 100}}}}, "peer_modes": {{"{B}": "auto"}}}}"#);
    // Probes time out after 600 ms, above the slow load balancer's 500 ms: its probes
    // succeed, slowly, so the switch is the bypass judge's and not the health checks'.
    let extra = "[bypass]\nwindow = \"2s\"\nmin_samples = 5\nrecover_after = \"2s\"\n";
    let fleet = Fleet::start(FleetSpec {
        regions: &[A, B],
        table: Some(&table),
        lbs: true,
        extra,
        health_interval: Duration::from_millis(1200),
        ..Default::default()
    })
    .await;
    let (a, b) = (fleet.region(A), fleet.region(B));
    let lb = b.lb.as_ref().expect("B has a load balancer");
    let admin = a.proxy.addrs.admin;
    let bypass = |m: &str| metric_sum(m, "flowgate_bypass_active", &[&format!("region=\"{B}\"")]);
    fleet.wait_settled().await;
    assert_eq!(bypass(&metrics(admin).await), 0.0, "no bypass while the load balancer is well");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t0 = Instant::now();
    // (started, status, error header)
    let seen: Arc<Mutex<Vec<(Duration, StatusCode, String)>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, seen, sent, url) = (stop.clone(), seen.clone(), sent.clone(), a.proxy.url("/headers"));
        workers.push(tokio::spawn(async move {
            let client = h1_client();
            let mut mine = Vec::new();
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) || t0.elapsed() > Duration::from_secs(25) {
                    break;
                }
                let started = t0.elapsed();
                match send(&client, Method::GET, &url, Bytes::new()).await {
                    Ok((s, h, _)) => mine.push((started, s, header(&h, "x-flowgate-error").to_owned())),
                    Err(e) => mine.push((started, StatusCode::IM_A_TEAPOT, e)),
                }
                sent.fetch_add(1, Ordering::SeqCst);
                // The pace of each client.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen.lock().await.extend(mine);
        }));
    }
    let count = |seen: &[(Duration, StatusCode, String)], from: Duration, to: Duration| {
        seen.iter().filter(|s| s.0 >= from && s.0 < to).count()
    };
    // Polls A's gauge until it reads `want`, at most `limit`; returns when it did.
    let wait_gauge = |want: f64, limit: Duration| async move {
        let reads = |want| async move {
            if bypass(&metrics(admin).await) == want { Ok(t0.elapsed()) } else { Err(()) }
        };
        poll(limit, Duration::from_millis(50), || reads(want)).await.ok()
    };

    wait_until("the clients to get going", Duration::from_secs(10), || async {
        sent.load(Ordering::SeqCst) >= 20
    })
    .await;
    let went_bad = t0.elapsed();
    lb.set_mode(bad);
    let switched = wait_gauge(1.0, Duration::from_secs(8))
        .await
        .unwrap_or_else(|| panic!("{bad:?}: no bypass within 8 s"));
    // While the load balancer stays bad the bypass holds (no flapping back to it on a
    // lucky probe or two); clients see no error; the load balancer only gets probes.
    let lb_before = lb.seen.load(Ordering::SeqCst);
    let mut lifted = Vec::new();
    for _ in 0..30 {
        // Samples over a watched window: that the bypass holds is the test.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if bypass(&metrics(admin).await) != 1.0 {
            lifted.push(t0.elapsed() - switched);
        }
    }
    let lb_during = lb.seen.load(Ordering::SeqCst) - lb_before;
    let bypass_end = t0.elapsed();
    assert!(
        lifted.is_empty(),
        "{bad:?}: the bypass lifted while the load balancer was still bad, at {lifted:?} after it began"
    );

    lb.set_mode(LbMode::Pass);
    let healed = t0.elapsed();
    let returned = wait_gauge(0.0, Duration::from_secs(12))
        .await
        .unwrap_or_else(|| panic!("{bad:?}: no return to the load balancer within 12 s"));
    let lb_back = lb.seen.load(Ordering::SeqCst);
    // A second of traffic after the return, through the load balancer or not: the measure.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let lb_after = lb.seen.load(Ordering::SeqCst) - lb_back;
    let end = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("worker");
    }
    let seen = seen.lock().await;
    let errors: Vec<_> = seen.iter().filter(|s| s.1 != 200).collect();
    let ep = Episode {
        to_bypass: switched - went_bad,
        to_return: returned - healed,
        requests: seen.len(),
        errors_before_switch: errors.iter().filter(|s| s.0 < switched).count(),
        errors_after_switch: errors.iter().filter(|s| s.0 >= switched).count(),
        lb_seen_during_bypass: lb_during,
        requests_during_bypass: count(&seen, switched, bypass_end),
        lb_seen_after_return: lb_after,
        requests_after_return: count(&seen, returned, end),
    };
    eprintln!(
        "peer lb {bad:?}: bypass after {:?}, back to the lb {:?} after it healed; {} requests, \
         {} errors before the switch, {} after (first: {:?}); the lb saw {} requests during \
         the bypass ({} client requests), {} in the second after the return ({} client requests)",
        ep.to_bypass,
        ep.to_return,
        ep.requests,
        ep.errors_before_switch,
        ep.errors_after_switch,
        errors.first(),
        ep.lb_seen_during_bypass,
        ep.requests_during_bypass,
        ep.lb_seen_after_return,
        ep.requests_after_return
    );
    fleet.stop().await;
    ep
}

fn check_episode(bad: LbMode, ep: &Episode) {
    assert!(ep.to_bypass <= Duration::from_secs(5), "{bad:?}: bypass took {:?}", ep.to_bypass);
    assert_eq!(ep.errors_after_switch, 0, "{bad:?}: clients saw errors once the bypass was on");
    assert_eq!(ep.errors_before_switch, 0, "{bad:?}: clients saw errors before the bypass was on");
    // While bypassed the load balancer sees health probes only (about one a second), not
    // the hundreds of client requests.
    assert!(ep.requests_during_bypass > 100, "{bad:?}: too little load: {}", ep.requests_during_bypass);
    assert!(
        ep.lb_seen_during_bypass * 20 < ep.requests_during_bypass,
        "{bad:?}: the load balancer still got {} of {} requests during the bypass",
        ep.lb_seen_during_bypass,
        ep.requests_during_bypass
    );
    // The return needs `recover_after` (2 s) and `min_samples` (5) good probes in a row,
    // 1.2 s apart: about 6 s.
    assert!(ep.to_return <= Duration::from_secs(10), "{bad:?}: return took {:?}", ep.to_return);
    assert!(
        ep.lb_seen_after_return * 2 > ep.requests_after_return,
        "{bad:?}: traffic did not go back through the load balancer: {} of {}",
        ep.lb_seen_after_return,
        ep.requests_after_return
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_failing_peer_lb_is_bypassed_then_used_again() {
    let ep = lb_episode(LbMode::HalfFail).await;
    check_episode(LbMode::HalfFail, &ep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_peer_lb_is_bypassed_then_used_again() {
    let ep = lb_episode(LbMode::Slow).await;
    check_episode(LbMode::Slow, &ep);
}

/// Every origin of every region answers 503. A retries elsewhere, but its budget
/// (20 % of requests plus `min_per_second` per second, over tower's 10 s window) caps the
/// attempts that reach the origins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_when_everything_fails_stay_within_the_budget() {
    let table = format!(r#"{{"version": 1, "weights": {{"{A}": {{"{A}": 34, "{B}": 33, "{C}": 33}}}}}}"#);
    let min_per_second = 1;
    let extra = format!("[retry]\nmin_per_second = {min_per_second}\n");
    let fleet = Fleet::start(FleetSpec { table: Some(&table), extra: &extra, ..Default::default() }).await;
    let a = fleet.region(A);
    fleet.wait_settled().await;
    let hits = |f: &Fleet| f.regions.iter().map(|r| r.origin.hits.load(Ordering::SeqCst)).sum::<usize>();
    let before = hits(&fleet);
    let t0 = Instant::now();
    let clients = 4;
    let mut workers = Vec::new();
    for _ in 0..clients {
        let url = a.proxy.url("/status/503");
        workers.push(tokio::spawn(async move {
            let client = h1_client();
            let mut statuses = Vec::new();
            for _ in 0..250 {
                let (s, _, _) = send(&client, Method::GET, &url, Bytes::new()).await.expect("an answer");
                statuses.push(s);
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for w in workers {
        statuses.extend(w.await.expect("worker"));
    }
    let secs = t0.elapsed().as_secs_f64();
    let requests = statuses.len();
    let attempts = hits(&fleet) - before;
    // tower's TpsBudget grants the floor as a reserve of min_per_second × its 10 s window.
    // It checks the balance and withdraws in two steps, so each concurrent client could
    // overdraw it by one retry: that slack is allowed, no more.
    let floor = min_per_second as f64 * 10.0 * (secs / 10.0).ceil().max(1.0) + clients as f64;
    let m = metrics(a.proxy.addrs.admin).await;
    let exhausted = metric_sum(&m, "flowgate_retry_budget_exhausted_total", &[]);
    let retries = metric_sum(&m, "flowgate_retries_total", &[]);
    eprintln!(
        "retry budget: {requests} requests in {secs:.2} s made {attempts} origin attempts (ratio {:.3}, \
         bound {:.0} with floor {floor}); A: {retries} retries, budget exhausted {exhausted} times; per origin: {:?}",
        attempts as f64 / requests as f64,
        1.2 * requests as f64 + floor,
        fleet
            .regions
            .iter()
            .map(|r| (r.name.as_str(), r.origin.hits.load(Ordering::SeqCst)))
            .collect::<Vec<_>>()
    );
    assert!(
        statuses.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "every answer is the origins' 503"
    );
    assert!(retries > 0.0, "some retries must have been tried");
    assert!(attempts > requests, "retries must reach origins: {attempts} attempts for {requests} requests");
    assert!(
        attempts as f64 <= 1.2 * requests as f64 + floor,
        "{attempts} origin attempts for {requests} requests exceed 1.2 × requests + {floor}"
    );
    assert!(exhausted > 0.0, "flowgate_retry_budget_exhausted_total must grow");
    fleet.stop().await;
}

/// A's origin takes at most 10 at once; the excess goes to B (in A's row with a
/// token weight), and once B is full too the answer is 503 `shed` with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn origin_concurrency_spills_to_the_peer_then_sheds() {
    let table = format!(r#"{{"version": 1, "weights": {{"{A}": {{"{A}": 99, "{B}": 1}}}}}}"#);
    let fleet =
        Fleet::start(FleetSpec { table: Some(&table), max_concurrency: 10, ..Default::default() }).await;
    let a = fleet.region(A);
    fleet.wait_settled().await;
    let burst = |n: usize| {
        let url = a.proxy.url("/slow/1000");
        async move {
            let mut tasks = Vec::new();
            for _ in 0..n {
                let url = url.clone();
                // One client (so one connection) per request: 50 really at once.
                tasks.push(tokio::spawn(
                    async move { send(&h1_client(), Method::GET, &url, Bytes::new()).await },
                ));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("task").expect("an answer"));
            }
            out
        }
    };
    let served_by = |out: &[(StatusCode, HeaderMap, Bytes)], region: &str| {
        out.iter().filter(|r| r.0 == 200 && header(&r.1, "x-flowgate-region") == region).count()
    };

    // 20 at once: 10 for A's origin, the other 10 spill to B; nobody is refused.
    let out = burst(20).await;
    let (by_a, by_b) = (served_by(&out, A), served_by(&out, B));
    let peaks = |f: &Fleet| {
        f.regions.iter().map(|r| (r.name.clone(), r.origin.peak.load(Ordering::SeqCst))).collect::<Vec<_>>()
    };
    eprintln!(
        "origin concurrency, 20 at once: A served {by_a}, B served {by_b}; origin peaks {:?}",
        peaks(&fleet)
    );
    assert!(
        out.iter().all(|r| r.0 == 200),
        "20 fit in A + B: {:?}",
        out.iter().map(|r| (r.0, header(&r.1, "x-flowgate-error").to_owned())).collect::<Vec<_>>()
    );
    assert!(by_b >= 5, "the excess over A's 10 must spill to B: A {by_a}, B {by_b}");
    assert!(a.origin.peak.load(Ordering::SeqCst) <= 10, "A's origin went above max_concurrency");

    // 50 at once: A and B take 10 each, the rest is shed.
    let out = burst(50).await;
    let (by_a, by_b) = (served_by(&out, A), served_by(&out, B));
    let shed: Vec<_> = out.iter().filter(|r| r.0 != 200).collect();
    eprintln!(
        "origin concurrency, 50 at once: A served {by_a}, B served {by_b}, {} shed (by {:?}); origin peaks {:?}",
        shed.len(),
        shed.iter().map(|r| header(&r.1, "x-flowgate-region")).fold(
            std::collections::BTreeMap::new(),
            |mut m, r| {
                *m.entry(r.to_owned()).or_insert(0) += 1;
                m
            }
        ),
        peaks(&fleet)
    );
    for r in &shed {
        assert_eq!(r.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&r.1, "x-flowgate-error"), "shed", "{:?}", r.1);
        assert!(r.1.contains_key(http::header::RETRY_AFTER), "shed without Retry-After: {:?}", r.1);
    }
    assert!(shed.len() >= 30, "50 requests for 20 slots: {} shed", shed.len());
    assert!(by_a >= 1 && by_b >= 1, "both regions serve: A {by_a}, B {by_b}");
    assert!(a.origin.peak.load(Ordering::SeqCst) <= 10, "A's origin went above max_concurrency");
    assert!(
        fleet.region(B).origin.peak.load(Ordering::SeqCst) <= 10,
        "B's origin went above max_concurrency"
    );
    assert_eq!(fleet.region(C).origin.hits.load(Ordering::SeqCst), 0, "C is not in A's row");
    fleet.stop().await;
}
