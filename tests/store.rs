//! The fleet's state on a real three-member etcd cluster (Debian's etcd-server, started on
//! loopback by `tests/support/etcd.rs`): proxies follow the table in the store, keep
//! serving through the loss of the quorum and converge once it is back; the commands write
//! through it with compare-and-swap and a lease lock; autopilots elect one leader.
//!
//! Built only with the `etcd` feature, and ignored by default (it needs etcd-server and
//! etcd-client): `.ci/run` runs `cargo test --features etcd --test store -- --ignored`.
#![cfg(feature = "etcd")]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::etcd::EtcdCluster;
use support::{ProxyProcess, get, h1_client};

fn table(version: u64, note: &str) -> String {
    format!(r#"{{"version": {version}, "weights": {{"us-east-1": {{"us-east-1": 100}}}}, "note": "{note}"}}"#)
}

async fn status(admin: SocketAddr) -> Value {
    let (_, _, body) = get(&h1_client(), &format!("http://{admin}/v1/status")).await;
    serde_json::from_slice(&body).expect("status json")
}

/// Polls `admin`'s status until `what` holds; the time it took, or a panic after `limit`.
async fn wait_status(admin: SocketAddr, limit: Duration, what: impl Fn(&Value) -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        let st = status(admin).await;
        if what(&st) {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "not within {limit:?}: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One proxy of `us-east-1` in front of `origin`, following the store, with its state in
/// `state_dir`.
fn proxy_config(origin: SocketAddr, etcd: &EtcdCluster, state_dir: &std::path::Path) -> String {
    format!(
        r#"region = "us-east-1"
[listen]
public = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
state_dir = {state:?}
[origins.api]
endpoints = ["{origin}"]
[[routes]]
origin = "api"
[drain]
delay = "0s"
timeout = "2s"
[fleet]
sync_timeout = "5s"
[store]
etcd = {list}
prefix = "/flowgate"
timeout = "1s"
"#,
        state = state_dir.display().to_string(),
        list = etcd.toml_list(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd-server and etcd-client (apt-get install etcd-server etcd-client; .ci/run does)"]
async fn a_proxy_follows_the_store_and_keeps_serving_without_a_quorum() {
    let mut etcd = EtcdCluster::start(3);
    etcd.put("/flowgate/table", &table(5, "in the store before the proxy started"));
    let origin = support::origin::start().await;
    let state = tempfile::tempdir().expect("state dir");
    let proxy = ProxyProcess::spawn(&proxy_config(origin.addr, &etcd, state.path()));

    // Ready only on the store's table: the empty state folder gave it nothing.
    let st = status(proxy.admin).await;
    assert_eq!(st["ready"], true, "{st}");
    assert_eq!(st["table_version"], 5, "{st}");
    assert_eq!(st["store"], "connected", "{st}");

    // A write to the store is applied within a second.
    etcd.put("/flowgate/table", &table(6, "written to the store"));
    let took = wait_status(proxy.admin, Duration::from_secs(1), |st| st["table_version"] == 6).await;
    println!("store write applied in {took:?}");

    // Two of three members gone: no quorum. The proxy says so and keeps serving.
    etcd.kill(1);
    etcd.kill(2);
    wait_status(proxy.admin, Duration::from_secs(15), |st| st["store"] == "disconnected").await;
    let client = h1_client();
    for _ in 0..20 {
        let (code, _, _) = get(&client, &format!("http://{}/", proxy.public)).await;
        assert_eq!(code, 200);
    }
    let st = status(proxy.admin).await;
    assert_eq!(st["ready"], true, "{st}");
    assert_eq!(st["table_version"], 6, "{st}");

    // Quorum back: connected again, and the next write arrives.
    etcd.restart(1);
    etcd.restart(2);
    wait_status(proxy.admin, Duration::from_secs(20), |st| st["store"] == "connected").await;
    etcd.put("/flowgate/table", &table(7, "after the quorum came back"));
    wait_status(proxy.admin, Duration::from_secs(2), |st| st["table_version"] == 7).await;
}
