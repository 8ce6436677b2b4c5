//! Health checks that fit the origin: `health = "grpc"` asks a real gRPC server (Python's
//! grpcio, tests/support/grpc_health_server.py) the standard `grpc.health.v1.Health/Check`
//! over the origin's h2c connections and follows what it answers; `health = "tcp"` takes a
//! connection as health. A proxy process (the built binary) in front, read through
//! `/v1/status`, `/metrics` and the peer listener's `/.flowgate/health`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::admin::{get_text, metric_sum, metrics};
use support::grpc::{GrpcHealthServer, ServingStatus};
use support::wait::{wait_for, within};
use support::{ProxyConfig, ProxyProcess};

const INTERVAL: Duration = Duration::from_millis(200);
/// The default `[health] jitter`: each wait is the interval ± 10%.
const JITTER: f64 = 0.1;
/// Beyond the two probes that a change of verdict takes (the default thresholds).
const SLACK: Duration = Duration::from_millis(600);

fn two_intervals() -> Duration {
    (INTERVAL * 2).mul_f64(1.0 + JITTER) + SLACK
}

/// The test config with `lines` added to `[origins.api]`, which probes every 200 ms.
fn config(endpoints: &[SocketAddr], lines: &str, health: &str) -> String {
    ProxyConfig::new("us-east-1", endpoints[0])
        .endpoints(endpoints)
        .origin(lines)
        .drain(Some(("0s", "5s")))
        .health_line("interval = \"200ms\"")
        .health_line(health)
        .text()
}

async fn get(url: &str) -> (http::StatusCode, Value) {
    let (status, text) = get_text(url).await;
    (http::StatusCode::from_u16(status).expect("status"), serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn status(p: &ProxyProcess) -> Value {
    get(&format!("http://{}/v1/status", p.admin)).await.1
}

async fn api_healthy(p: &ProxyProcess) -> bool {
    status(p).await["origins"]["api"]["healthy"].as_bool().expect("origins.api.healthy")
}

/// The peer listener's region health: its status, and whether it says `api` is healthy.
async fn region_health(p: &ProxyProcess) -> (http::StatusCode, bool) {
    let peer = p.peer.expect("peer listener");
    let (code, doc) = get(&format!("http://{peer}/.flowgate/health")).await;
    (code, doc["origins"]["api"]["healthy"].as_bool().expect("origins.api.healthy in the health document"))
}

/// Waits until the server has answered `n` more Checks (so the verdict seen comes from
/// probes, not from the healthy state endpoints start in).
async fn checks_answered(server: &GrpcHealthServer, n: usize) -> Vec<String> {
    let lines = std::cell::RefCell::new(Vec::new());
    wait_for(&format!("{n} Checks answered"), Duration::from_secs(10), || {
        let mut lines = lines.borrow_mut();
        lines.extend(server.log());
        let answered = lines.iter().filter(|l: &&String| l.starts_with("check ")).count() >= n;
        let seen = format!("{lines:?}");
        async move { if answered { Ok(()) } else { Err(seen) } }
    })
    .await;
    lines.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3-grpcio (apt-get install python3-grpcio; .ci/run does)"]
async fn grpc_health_follows_what_the_server_answers() {
    let server = GrpcHealthServer::start();
    let text = config(&[server.addr], "protocol = \"h2\"\nhealth = \"grpc\"", "");
    let p = ProxyProcess::spawn(&text);

    let lines = checks_answered(&server, 3).await;
    assert!(lines.iter().all(|l| !l.starts_with("check ") || l.contains("service=''")), "{lines:?}");
    assert!(api_healthy(&p).await, "SERVING: healthy: {}", status(&p).await);
    assert_eq!(region_health(&p).await, (http::StatusCode::OK, true));

    server.set(ServingStatus::NotServing);
    let t0 = Instant::now();
    let took = within(two_intervals(), || async { !api_healthy(&p).await }).await;
    let Some(took) = took else {
        panic!("still healthy {:?} after NOT_SERVING: {}", t0.elapsed(), status(&p).await);
    };
    println!("NOT_SERVING: unhealthy after {took:?} (interval {INTERVAL:?}, limit {:?})", two_intervals());
    assert_eq!(region_health(&p).await, (http::StatusCode::SERVICE_UNAVAILABLE, false));

    // UNKNOWN (proto3's empty message) is not SERVING either.
    server.set(ServingStatus::Unknown);
    checks_answered(&server, 3).await;
    assert!(!api_healthy(&p).await, "UNKNOWN: unhealthy");

    server.set(ServingStatus::Serving);
    let took = within(two_intervals(), || async { api_healthy(&p).await }).await;
    let took = took.expect("healthy again within two intervals after SERVING");
    println!("SERVING again: healthy after {took:?}");
    assert_eq!(region_health(&p).await, (http::StatusCode::OK, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3-grpcio (apt-get install python3-grpcio; .ci/run does)"]
async fn grpc_health_asks_about_health_service() {
    const SVC: &str = "flowgate.test.Api";
    // The whole server serves, the service does not: the service's answer counts.
    let server =
        GrpcHealthServer::start_with(&[("", ServingStatus::Serving), (SVC, ServingStatus::NotServing)]);
    let lines = format!("protocol = \"h2\"\nhealth = \"grpc\"\nhealth_service = \"{SVC}\"");
    let p = ProxyProcess::spawn(&config(&[server.addr], &lines, ""));

    let log = checks_answered(&server, 3).await;
    let asked = format!("service='{SVC}'");
    assert!(log.iter().filter(|l| l.starts_with("check ")).all(|l| l.contains(&asked)), "{log:?}");
    let took = within(two_intervals(), || async { !api_healthy(&p).await }).await;
    assert!(took.is_some(), "the service is NOT_SERVING: unhealthy: {}", status(&p).await);

    server.set_services(&[("", ServingStatus::NotServing), (SVC, ServingStatus::Serving)]);
    let took = within(two_intervals(), || async { api_healthy(&p).await }).await;
    assert!(took.is_some(), "the service is SERVING: healthy: {}", status(&p).await);

    // A service the server does not know: NOT_FOUND, a trailers-only answer.
    server.set_services(&[("", ServingStatus::Serving)]);
    let took = within(two_intervals(), || async { !api_healthy(&p).await }).await;
    assert!(took.is_some(), "an unknown service: unhealthy: {}", status(&p).await);
}

async fn endpoint_healthy(p: &ProxyProcess, endpoint: SocketAddr) -> Option<f64> {
    let text = metrics(p.admin).await;
    let parts = ["kind=\"origin\"".to_owned(), format!("endpoint=\"{endpoint}\"")];
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    text.lines()
        .any(|l| l.starts_with("flowgate_endpoint_healthy{") && parts.iter().all(|p| l.contains(p)))
        .then(|| metric_sum(&text, "flowgate_endpoint_healthy", &parts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_health_takes_a_connection_as_health() {
    // Accepts connections (the kernel completes them) and never answers a byte: an HTTP
    // check would fail here, a TCP one passes.
    let listening = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = listening.local_addr().expect("addr");
    let down = support::origin::refusing_addr().await;
    // A probe timeout well below the wait below, so that a check that needed an answer
    // would have failed twice by then.
    let p = ProxyProcess::spawn(&config(&[up, down], "health = \"tcp\"", "timeout = \"150ms\"\n"));

    let took = within(two_intervals(), || async { endpoint_healthy(&p, down).await == Some(0.0) }).await;
    assert!(took.is_some(), "the refusing endpoint is unhealthy: {}", status(&p).await);
    // Six intervals in which the listening endpoint must stay healthy: the test.
    tokio::time::sleep(INTERVAL * 6).await;
    assert_eq!(endpoint_healthy(&p, up).await, Some(1.0), "the listening endpoint stays healthy");
    let s = status(&p).await;
    assert_eq!(s["origins"]["api"]["endpoints"]["healthy"], 1, "{s}");
    assert_eq!(s["origins"]["api"]["endpoints"]["total"], 2, "{s}");
    assert!(api_healthy(&p).await);

    // Gone: refused too, and the origin has no healthy endpoint left.
    drop(listening);
    let took = within(two_intervals(), || async { !api_healthy(&p).await }).await;
    assert!(took.is_some(), "no endpoint listens: unhealthy: {}", status(&p).await);
    assert_eq!(endpoint_healthy(&p, up).await, Some(0.0));
}
