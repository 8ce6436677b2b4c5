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
use support::outage::{self, OutageFleet};
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

/// Three regions of `per_region` proxy processes following a three-member etcd, and a
/// fleet file with the same `[store]` (leases of 3 s, so that a dead holder's lock
/// lapses quickly).
async fn store_fleet(per_region: usize) -> (EtcdCluster, OutageFleet) {
    let etcd = EtcdCluster::start(3);
    let store = format!(
        "[store]\netcd = {}\nprefix = \"/flowgate\"\ntimeout = \"1s\"\nlease_ttl = \"3s\"\n",
        etcd.toml_list()
    );
    let fleet =
        OutageFleet::start_tuned(per_region, Duration::from_millis(200), Duration::from_millis(150), &store)
            .await;
    let mut text = std::fs::read_to_string(&fleet.fleet_file).expect("fleet file");
    text.push_str(&store);
    std::fs::write(&fleet.fleet_file, text).expect("fleet file");
    (etcd, fleet)
}

fn all_admins(fleet: &OutageFleet) -> Vec<SocketAddr> {
    outage::admins(fleet, &[])
}

/// Waits until every proxy is on `version`; how long that took.
async fn wait_everywhere(admins: &[SocketAddr], version: u64, limit: Duration) -> Duration {
    let t0 = Instant::now();
    'outer: loop {
        assert!(t0.elapsed() < limit, "not every proxy reached version {version} within {limit:?}");
        for a in admins {
            if outage::status(*a).await.is_none_or(|st| st["table_version"] != version) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue 'outer;
            }
        }
        return t0.elapsed();
    }
}

fn fleet_table(version: u64, east_keeps: u32, note: &str) -> String {
    format!(
        r#"{{"version": {version}, "weights": {{"us-east-1": {{"us-east-1": {east_keeps}, "us-west-2": {}}}}}, "note": "{note}"}}"#,
        100 - east_keeps
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd-server and etcd-client (apt-get install etcd-server etcd-client; .ci/run does)"]
async fn a_write_to_the_store_reaches_3_regions_of_5_proxies_within_a_second() {
    let (etcd, fleet) = store_fleet(5).await;
    let admins = all_admins(&fleet);
    let mut took = Vec::new();
    for v in 1..=20u64 {
        let t0 = Instant::now();
        etcd.put("/flowgate/table", &fleet_table(v, 100 - v as u32, &format!("write {v}")));
        wait_everywhere(&admins, v, Duration::from_secs(5)).await;
        took.push(t0.elapsed());
    }
    took.sort();
    let (median, max) = (took[took.len() / 2], took[took.len() - 1]);
    println!(
        "20 writes to the store, applied by all 15 proxies: median {median:?}, max {max:?} (from before etcdctl put)"
    );
    assert!(max < Duration::from_secs(1), "max {max:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd-server and etcd-client (apt-get install etcd-server etcd-client; .ci/run does)"]
async fn of_two_racing_pushes_through_the_store_exactly_one_is_applied() {
    let (etcd, fleet) = store_fleet(2).await;
    let admins = all_admins(&fleet);
    let file = fleet.fleet_file.to_str().expect("path").to_owned();
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&a, fleet_table(2, 70, "push A")).expect("a");
    std::fs::write(&b, fleet_table(2, 30, "push B")).expect("b");
    let args_a = ["push", "--fleet", &file, a.to_str().expect("a")];
    let args_b = ["push", "--fleet", &file, b.to_str().expect("b")];
    let (ra, rb) = tokio::join!(outage::flowgate(&args_a), outage::flowgate(&args_b));
    let codes = [ra.0, rb.0];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "exit codes {codes:?}:\nA: {}\nB: {}",
        ra.2,
        rb.2
    );
    let (winner, loser) = if ra.0 == Some(0) { ("push A", &rb) } else { ("push B", &ra) };
    assert!(
        loser.2.contains("version 2") && loser.2.contains(winner),
        "the loser names the winner:\n{}",
        loser.2
    );
    wait_everywhere(&admins, 2, Duration::from_secs(5)).await;
    let stored = etcd.get("/flowgate/table").expect("a table in the store");
    assert!(stored.contains(winner), "{stored}");
    for admin in &admins {
        let t = outage::table(*admin).await.expect("table");
        assert_eq!(t["note"], winner, "{admin}: {t}");
    }
    let (code, out, err) = outage::flowgate(&["status", "--fleet", &file]).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("store: version 2 ("), "{out}");
}
