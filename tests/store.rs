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
use support::wait::{wait_for, wait_for_every, wait_until};
use support::{ProxyConfig, ProxyProcess, get, h1_client};

fn table(version: u64, note: &str) -> String {
    format!(r#"{{"version": {version}, "weights": {{"us-east-1": {{"us-east-1": 100}}}}, "note": "{note}"}}"#)
}

async fn status(admin: SocketAddr) -> Value {
    support::admin::status(admin).await
}

/// Polls `admin`'s status until `what` holds; the time it took, or a panic after `limit`.
async fn wait_status(admin: SocketAddr, limit: Duration, what: impl Fn(&Value) -> bool) -> Duration {
    let t0 = Instant::now();
    wait_for(&format!("the status of {admin}"), limit, || async {
        let st = status(admin).await;
        if what(&st) { Ok(()) } else { Err(st) }
    })
    .await;
    t0.elapsed()
}

/// One proxy of `us-east-1` in front of `origin`, following the store, with its state in
/// `state_dir`.
fn proxy_config(origin: SocketAddr, etcd: &EtcdCluster, state_dir: &std::path::Path) -> String {
    ProxyConfig::new("us-east-1", origin)
        .peer_listen(None::<SocketAddr>)
        .state_dir(state_dir)
        .extra(&format!(
            "[fleet]\nsync_timeout = \"5s\"\n[store]\netcd = {}\nprefix = \"/flowgate\"\ntimeout = \"1s\"",
            etcd.toml_list()
        ))
        .text()
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
    let what = format!("every proxy to reach version {version}");
    wait_for_every(&what, limit, Duration::from_millis(5), || async {
        for a in admins {
            if outage::status(*a).await.is_none_or(|st| st["table_version"] != version) {
                return Err(format!("{a} is not there yet"));
            }
        }
        Ok(())
    })
    .await;
    t0.elapsed()
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
    let file = fleet.file();
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

    // A direct push past the store: status names the proxy and by how much, and fails;
    // the store's next write brings the fleet back together.
    let ahead = fleet.region("eu-west-1").proxies[0].admin;
    let direct = fleet_table(5, 60, "pushed past the store");
    let answer = support::admin::put_str(ahead, outage::TOKEN, &direct).await;
    assert_eq!(answer.0, 200);
    let (code, out, _) = outage::flowgate(&["status", "--fleet", &file]).await;
    assert_eq!(code, Some(1), "a proxy off the store's table fails status:\n{out}");
    assert!(out.contains(&format!("LAGGING: {ahead} (eu-west-1) on version 5: 3 AHEAD")), "{out}");
    etcd.put("/flowgate/table", &fleet_table(6, 50, "the store passes it"));
    wait_everywhere(&admins, 6, Duration::from_secs(5)).await;
}

/// Every reachable proxy's table version.
async fn proxy_versions(admins: &[SocketAddr]) -> Vec<u64> {
    let mut out = Vec::new();
    for a in admins {
        if let Some(st) = outage::status(*a).await {
            out.push(st["table_version"].as_u64().unwrap_or(0));
        }
    }
    out
}

/// Every reachable proxy's table version, and the store's.
async fn versions(admins: &[SocketAddr], etcd: &EtcdCluster) -> (Vec<u64>, u64) {
    let out = proxy_versions(admins).await;
    let stored = etcd
        .get("/flowgate/table")
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|t| t["version"].as_u64())
        .unwrap_or(0);
    (out, stored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd-server and etcd-client (apt-get install etcd-server etcd-client; .ci/run does)"]
async fn one_evacuation_holds_the_lease_and_a_killed_holder_frees_it_within_the_ttl() {
    let (etcd, fleet) = store_fleet(2).await;
    let admins = all_admins(&fleet);
    let file = fleet.file();
    // Two at once: exactly one runs, the other names it.
    let east = outage::operation("evacuate", "us-east-1", &file, "2", "1s");
    let west = outage::operation("evacuate", "us-west-2", &file, "2", "1s");
    let (a, b) = tokio::join!(outage::flowgate(&east), outage::flowgate(&west));
    let codes = [a.0, b.0];
    assert_eq!(codes.iter().filter(|c| **c == Some(0)).count(), 1, "{codes:?}\n{}\n{}", a.2, b.2);
    let loser = if a.0 == Some(0) { &b } else { &a };
    assert_eq!(loser.0, Some(1));
    assert!(loser.2.contains("holds the store's lock") && loser.2.contains(" by "), "{}", loser.2);
    let (v, stored) = versions(&admins, &etcd).await;
    assert!(v.iter().all(|x| *x == stored) && stored > 0, "one table everywhere: {v:?}, store {stored}");
    assert_eq!(etcd.get("/flowgate/lock"), None, "the finished run released the lock");

    // The holder killed mid-run: a new run is refused while its lease lives, then runs.
    let winner_region = if a.0 == Some(0) { "us-east-1" } else { "us-west-2" };
    let restore = outage::operation("restore", winner_region, &file, "6", "2s");
    let mut holder = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(&restore)
        .env("FLOWGATE_ADMIN_TOKEN", outage::TOKEN)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn restore");
    wait_until("the restore to take the lock and push a step", Duration::from_secs(20), || async {
        etcd.get("/flowgate/lock").is_some() && versions(&admins, &etcd).await.1 > stored + 1
    })
    .await;
    holder.start_kill().expect("kill -9");
    let _ = holder.wait().await;
    let killed_at = Instant::now();
    let refused = outage::flowgate(&restore).await;
    assert_eq!(refused.0, Some(1), "{}", refused.2);
    assert!(refused.2.contains("holds the store's lock"), "{}", refused.2);
    wait_until("the dead holder's lock to lapse", Duration::from_secs(10), || async {
        etcd.get("/flowgate/lock").is_none()
    })
    .await;
    let lapsed = killed_at.elapsed();
    println!("a killed holder's lock lapsed {lapsed:?} after the kill (lease TTL 3 s)");
    assert!(lapsed <= Duration::from_secs(4), "{lapsed:?}");
    let (v, stored) = versions(&admins, &etcd).await;
    assert!(v.iter().all(|x| *x == stored), "one table throughout: {v:?}, store {stored}");
    let again = outage::flowgate(&restore).await;
    assert_eq!(again.0, Some(0), "{}", again.2);
    let (v, stored) = versions(&admins, &etcd).await;
    assert!(v.iter().all(|x| *x == stored), "one table at the end: {v:?}, store {stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd-server and etcd-client (apt-get install etcd-server etcd-client; .ci/run does)"]
async fn losing_the_quorum_fails_no_request_refuses_pushes_and_its_return_needs_no_push() {
    let (mut etcd, fleet) = store_fleet(2).await;
    let admins = all_admins(&fleet);
    let file = fleet.file();
    let dir = tempfile::tempdir().expect("dir");
    let push = |v: u64| {
        let path = dir.path().join(format!("t{v}.json"));
        std::fs::write(&path, fleet_table(v, 90, &format!("push {v}"))).expect("table");
        path.to_str().expect("path").to_owned()
    };
    let load = outage::Load::start(outage::targets(&fleet, &[]), 30);

    // One member gone: pushes still work.
    etcd.kill(2);
    let p1 = push(1);
    let r = outage::flowgate(&["push", "--fleet", &file, &p1]).await;
    assert_eq!(r.0, Some(0), "{}", r.2);
    wait_everywhere(&admins, 1, Duration::from_secs(5)).await;

    // Two gone: pushes refused, clearly; proxies keep serving.
    etcd.kill(1);
    for a in &admins {
        wait_status(*a, Duration::from_secs(15), |st| st["store"] == "disconnected").await;
    }
    let p2 = push(2);
    let r = outage::flowgate(&["push", "--fleet", &file, &p2, "--timeout", "1s"]).await;
    assert_eq!(r.0, Some(1), "{}", r.2);
    assert!(r.2.contains("store is unavailable") && r.2.contains("nothing pushed"), "{}", r.2);
    let v = proxy_versions(&admins).await;
    assert!(v.iter().all(|x| *x == 1), "nothing of the refused push applied: {v:?}");
    // The fleet serves on without a quorum for a while, under the load: part of the test.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Quorum back: every proxy reconnects; a write made meanwhile by a store client
    // reaches all of them with no push.
    etcd.restart(1);
    etcd.restart(2);
    for a in &admins {
        wait_status(*a, Duration::from_secs(20), |st| st["store"] == "connected").await;
    }
    etcd.put("/flowgate/table", &fleet_table(3, 80, "written while nobody pushed"));
    wait_everywhere(&admins, 3, Duration::from_secs(5)).await;
    let answers = load.stop().await;
    let failed: Vec<_> = answers.iter().filter(|a| !a.ok).collect();
    println!(
        "quorum lost and back under client load: {} of {} client requests failed",
        failed.len(),
        answers.len()
    );
    assert!(!answers.is_empty());
    assert!(
        failed.is_empty(),
        "{} of {} client requests failed: {:?}",
        failed.len(),
        answers.len(),
        failed.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd-server and etcd-client (apt-get install etcd-server etcd-client; .ci/run does)"]
async fn of_two_autopilots_only_the_leader_acts_and_the_other_finishes_when_it_dies() {
    let (_etcd, fleet) = store_fleet(2).await;
    let admins = all_admins(&fleet);
    let state = tempfile::tempdir().expect("state");
    let spawn = |name: &str| {
        let file = state.path().join(format!("{name}.json"));
        let mut args: Vec<String> = outage::FAST.iter().map(|s| s.to_string()).collect();
        // Slow steps: the leader is killed while its evacuation is under way.
        let at = args.iter().position(|a| a == "--step-interval").expect("flag");
        args[at + 1] = "3s".into();
        let steps = args.iter().position(|a| a == "--steps").expect("flag");
        args[steps + 1] = "4".into();
        args.extend(["--confirm".into(), "2s".into(), "--state-file".into(), file.display().to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        outage::AutopilotProcess::spawn(&fleet.fleet_file, &refs)
    };
    let first = spawn("a");
    outage::wait_watching(&first).await;
    let second = spawn("b");
    let metric = |p: &outage::AutopilotProcess, name: &'static str| {
        let url = format!("http://{}/metrics", p.listen);
        async move {
            let body = match tokio::time::timeout(
                Duration::from_secs(2),
                h1_client().get(url.parse().expect("url")),
            )
            .await
            {
                Ok(Ok(resp)) => http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default(),
                _ => Default::default(),
            };
            support::admin::metric_sum(&String::from_utf8_lossy(&body), name, &[])
        }
    };
    // The standby judges every round but logs nothing: wait for its rounds.
    let rounds = support::wait::within(Duration::from_secs(20), || async {
        metric(&second, "flowgate_autopilot_rounds_total").await >= 2.0
    });
    assert!(rounds.await.is_some(), "the second autopilot never ran a round:\n{}", second.dump());
    let role = |p| metric(p, "flowgate_autopilot_leader");
    assert_eq!(role(&first).await + role(&second).await, 1.0, "exactly one leader");
    let first_leads = role(&first).await == 1.0;
    let (mut leader, standby) = if first_leads { (first, second) } else { (second, first) };

    // An outage: 30 % of what us-east-1's origin serves fails (its health checks pass),
    // under client load, so that the evacuation ramps in steps. The leader starts it.
    let load = outage::Load::start(outage::targets(&fleet, &[]), 20);
    load.wait_flowing(20).await;
    fleet.region("us-east-1").origin.fail_share(500, 30);
    leader
        .wait_for(Duration::from_secs(20), |d| d["action"] == "evacuate")
        .await
        .unwrap_or_else(|| panic!("the leader did not start evacuating:\n{}", leader.dump()));
    let partial = support::wait::within(Duration::from_secs(20), || async {
        let t = outage::table(admins[0]).await.expect("table");
        let keeps = outage::keeps(&t, "us-east-1");
        keeps < 1.0 && keeps > 0.0
    });
    if partial.await.is_none() {
        let t = outage::table(admins[0]).await.expect("table");
        panic!("no partial step seen: {t}\n{}", leader.dump());
    }
    assert!(
        standby.decisions().iter().all(|d| d["action"] != "evacuate"),
        "the standby must not act:\n{}",
        standby.dump()
    );
    leader.child.kill().expect("kill -9 the leader");
    let killed = Instant::now();
    let took_over = standby
        .wait_for(Duration::from_secs(15), |d| d["action"] == "evacuate")
        .await
        .unwrap_or_else(|| panic!("the standby never took over:\n{}", standby.dump()));
    let took = killed.elapsed();
    println!("the standby took over {took:?} after the leader was killed: {took_over}");
    // Within the lease's TTL (3 s), plus a round of the new leader (0.5 s) and slack for
    // a busy machine.
    assert!(took <= Duration::from_millis(4000), "{took:?}");
    let done = outage::wait_evacuated(&admins, "us-east-1", Duration::from_secs(30)).await;
    assert!(done.is_some(), "the evacuation did not complete:\n{}", standby.dump());
    drop(load.stop().await);
}
