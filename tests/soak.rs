//! Soak: mixed load for a long while, a table push every second, an origin endpoint
//! restarting every 30 s; zero unexpected errors, and flat memory and file descriptors.
//! `SOAK_SECS` sets the length (600 for the full run; CI runs 120).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::{ProxyProcess, h1_client, h2c_client, origin};

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by .ci/run in a 2-minute form (SOAK_SECS=120)"]
async fn soak_mixed_load_with_pushes_and_origin_restarts() {
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(120);
    let (o1, o2) = (origin::start().await, origin::start().await);
    let text = format!(
        r#"region = "us-east-1"
[listen]
public = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[origins.api]
endpoints = ["{}", "{}"]
[[routes]]
origin = "api"
[health]
interval = "500ms"
timeout = "300ms"
[drain]
delay = "0s"
timeout = "2s"
"#,
        o1.addr, o2.addr
    );
    let proxy = ProxyProcess::spawn_env(&text, &[("FLOWGATE_ADMIN_TOKEN", "soak-token")]);
    let (public, admin, pid) = (proxy.public, proxy.admin, proxy.pid());
    let until = Instant::now() + Duration::from_secs(secs);
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let last_error = Arc::new(std::sync::Mutex::new(String::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (ok, errors, last_error) = (ok.clone(), errors.clone(), last_error.clone());
        tasks.push(tokio::spawn(async move {
            let client = if i % 2 == 0 { h1_client() } else { h2c_client() };
            let mut n = 0u64;
            while Instant::now() < until && n < 10_000_000 {
                n += 1;
                // GETs and idempotent PUTs with a body: both are safe to retry when an
                // origin endpoint goes away under them.
                let req = if n.is_multiple_of(3) {
                    http::Request::put(format!("http://{public}/echo"))
                        .body(Full::new(Bytes::from(vec![b'x'; 2048])))
                } else {
                    http::Request::get(format!("http://{public}/headers")).body(Full::new(Bytes::new()))
                }
                .expect("request");
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(r)) if r.status() == 200 => match r.into_body().collect().await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            *last_error.lock().expect("lock") = format!("body: {e}");
                            errors.fetch_add(1, Ordering::Relaxed)
                        }
                    },
                    other => {
                        *last_error.lock().expect("lock") = format!("{other:?}").chars().take(300).collect();
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
                // The pace of each client.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // A push every second, an origin restart every 30 s, memory and fds sampled.
    let admin_client = h1_client();
    let mut version = 1u64;
    let mut samples: Vec<(u64, usize)> = Vec::new();
    let started = Instant::now();
    while Instant::now() < until {
        // One push a second: the soak's pace.
        tokio::time::sleep(Duration::from_secs(1)).await;
        version += 1;
        let table = format!(
            r#"{{"version": {version}, "weights": {{"us-east-1": {{"us-east-1": {}}}}}, "note": "soak"}}"#,
            version % 5 + 1
        );
        let req = http::Request::put(format!("http://{admin}/v1/table"))
            .header("authorization", "Bearer soak-token")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(table)))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(5), admin_client.request(req))
            .await
            .expect("push in time")
            .expect("push");
        assert_eq!(resp.status(), 200, "push of version {version}");
        let elapsed = started.elapsed().as_secs();
        if elapsed % 30 == 15 {
            o1.kill();
            // The origin stays down for a moment: the outage is part of the soak.
            tokio::time::sleep(Duration::from_millis(500)).await;
            o1.revive().await;
        }
        samples.push((proxy.rss_kib(), fds(pid)));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let (ok, errors) = (ok.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let warm = samples.len() / 4;
    let (rss_warm, fds_warm) = samples[warm];
    let (rss_end, fds_end) = *samples.last().expect("samples");
    let rss_max = samples[warm..].iter().map(|s| s.0).max().unwrap_or(0);
    eprintln!(
        "soak {secs}s: {ok} ok, {errors} errors, {version} tables; rss {rss_warm} -> {rss_end} KiB (max {rss_max}); fds {fds_warm} -> {fds_end}; last error: {}",
        last_error.lock().expect("lock")
    );
    assert!(ok > secs * 100, "load ran: {ok}");
    assert_eq!(errors, 0, "unexpected errors: {}", last_error.lock().expect("lock"));
    assert!(rss_end <= rss_warm + 16 * 1024, "memory grew from {rss_warm} to {rss_end} KiB");
    assert!(fds_end <= fds_warm + 32, "file descriptors grew from {fds_warm} to {fds_end}");
}
