//! One table on every proxy: proxies that start empty, were stopped during a push or
//! missed it converge by themselves through their peers; conditional pushes; a split
//! fleet is shown, never hidden. The built binaries on loopback.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::ProxyProcess;
use support::admin::{get_json, metric_sum, metrics, push, readyz};
use support::outage::{self, OutageFleet, TOKEN, flowgate, keeps, operation};
use support::wait::wait_until;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";

/// PUT a table to one proxy, with an optional `If-Match`; status and body.
async fn put(admin: std::net::SocketAddr, table: &str, if_match: Option<&str>) -> (u16, Value) {
    let (status, body, _) = push(admin).token(TOKEN).if_match(if_match).send(table.to_owned()).await;
    (status, body)
}

fn version(t: &Value) -> u64 {
    t["version"].as_u64().unwrap_or(0)
}

/// Starts the proxy of `old`'s config again (same peer port), with no state folder.
fn restart(old: ProxyProcess) -> ProxyProcess {
    let text = old.config_text();
    drop(old); // SIGKILL, then wait
    ProxyProcess::spawn_env(&text, &[("FLOWGATE_ADMIN_TOKEN", TOKEN)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_restarted_empty_after_an_evacuation_is_ready_only_on_the_evacuation_table() {
    let _turn = SERIAL.lock().await;
    let mut fleet = OutageFleet::start(2).await;
    let file = fleet.file();
    let (code, _, err) = flowgate(&operation("evacuate", EAST, &file, "2", "1s")).await;
    assert_eq!(code, Some(0), "{err}");
    let evacuated = outage::table(fleet.regions[1].proxies[0].admin).await.expect("table");
    assert_eq!(keeps(&evacuated, EAST), 0.0);
    let east = fleet.regions.iter().position(|r| r.name == EAST).expect("east");
    let old = fleet.regions[east].proxies.remove(0);
    let t0 = Instant::now();
    let fresh = restart(old);
    // Poll until ready: never ready on any other table.
    wait_until("the restarted proxy to be ready", Duration::from_secs(15), || async {
        let ready = readyz(fresh.admin).await == 200;
        let t = outage::table(fresh.admin).await;
        if ready {
            let t = t.expect("table");
            assert_eq!(version(&t), version(&evacuated), "ready on another table: {t}");
        }
        ready
    })
    .await;
    let ready_at = t0.elapsed();
    let st = outage::status(fresh.admin).await.expect("status");
    assert_eq!(st["table_version"], version(&evacuated), "{st}");
    let h = get_json(fresh.admin, "/v1/table/history").await;
    assert!(h[0]["who"].as_str().unwrap_or("").starts_with("catch-up from peer "), "{h}");
    // What it serves goes to the other regions, never to the evacuated origin.
    let hits = fleet.region(EAST).origin.hits.load(std::sync::atomic::Ordering::SeqCst);
    let client = support::h1_client();
    for _ in 0..40 {
        let (status, headers, _) = support::get(&client, &format!("http://{}/x", fresh.public)).await;
        assert_eq!(status, 200);
        assert_ne!(headers["x-flowgate-region"], EAST);
    }
    assert_eq!(fleet.region(EAST).origin.hits.load(std::sync::atomic::Ordering::SeqCst), hits);
    eprintln!("restarted empty: ready on the evacuation table {ready_at:?} after start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_stopped_during_a_push_converges_once_resumed_without_another_push() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    let stopped = &fleet.region(WEST).proxies[1];
    stopped.signal("STOP");
    let table = fleet.dir.path().join("v3.json");
    std::fs::write(
        &table,
        format!(r#"{{"version": 3, "weights": {{"{EAST}": {{"{EAST}": 50, "{WEST}": 50}}}}}}"#),
    )
    .expect("table");
    let file = fleet.file();
    let (code, out, _) =
        flowgate(&["push", "--fleet", &file, table.to_str().expect("path"), "--timeout", "1s"]).await;
    assert_eq!(code, Some(1), "the stopped proxy misses it:\n{out}");
    stopped.signal("CONT");
    let caught = wait_until("the resumed proxy to catch up", Duration::from_secs(10), || async {
        outage::table(stopped.admin).await.map(|t| version(&t)) == Some(3)
    })
    .await;
    // Health probes every 200 ms: two intervals and the fetch, with room for a busy machine.
    assert!(caught < Duration::from_secs(2), "caught up after {caught:?}");
    eprintln!("resumed after a missed push: caught up in {caught:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_pushes_and_a_split_fleet_is_shown_not_hidden() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    let a = fleet.region(EAST).proxies[0].admin;
    let v1 = r#"{"version": 1, "weights": {"us-east-1": {"us-east-1": 100}}}"#;
    assert_eq!(put(a, v1, Some("\"0\"")).await.0, 200, "If-Match the version in force");
    let (status, body) = put(a, r#"{"version": 2}"#, Some("\"0\"")).await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["current_version"], 1, "{body}");
    assert_eq!(put(a, r#"{"version": 2}"#, Some("seven")).await.0, 400);
    // One version, two contents, on different proxies: a split fleet.
    let split_a = r#"{"version": 5, "weights": {"us-east-1": {"us-east-1": 70, "us-west-2": 30}}}"#;
    let split_b = r#"{"version": 5, "weights": {"us-east-1": {"us-east-1": 30, "us-west-2": 70}}}"#;
    // All at once: pushed one by one, a proxy of the second region could fetch the first
    // region's version 5 from a peer (probes every 200 ms) before its own push arrived,
    // and refuse that push as not newer (seen once on a loaded machine).
    let pushes = fleet.regions.iter().enumerate().flat_map(|(i, r)| {
        r.proxies.iter().map(move |p| put(p.admin, if i == 0 { split_a } else { split_b }, None))
    });
    for (s, b) in futures_util::future::join_all(pushes).await {
        assert_eq!(s, 200, "{b}");
    }
    let file = fleet.file();
    let (code, out, _) = flowgate(&["status", "--fleet", &file]).await;
    assert_eq!(code, Some(1), "a split fleet fails status:\n{out}");
    assert!(out.contains("CONFLICT: version 5 has 2 different contents"), "{out}");
    // The proxies see it too, in their status and a metric, and neither side wins.
    let seen = support::wait::within(Duration::from_secs(5), || async {
        let st = outage::status(a).await.expect("status");
        st["table_conflicts"].as_array().is_some_and(|c| !c.is_empty())
    })
    .await
    .is_some();
    assert!(seen, "the proxy must report the conflict");
    let conflicts = metric_sum(&metrics(a).await, "flowgate_table_conflicts", &[]);
    assert!(conflicts >= 1.0, "flowgate_table_conflicts: {conflicts}");
    assert_eq!(
        outage::table(a).await.map(|t| t["weights"][EAST][EAST].clone()),
        Some(70.into()),
        "no side picked"
    );
    // And no fleet operation starts on a split fleet.
    let (code, _, err) = flowgate(&["evacuate", EAST, "--fleet", &file, "--steps", "1", "--yes"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the fleet is split"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_operations_at_once_one_runs_and_the_other_names_it() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    let file = fleet.file();
    let args = |region: &'static str| {
        let file = file.clone();
        async move { flowgate(&operation("evacuate", region, &file, "2", "1s")).await }
    };
    // Started at the same moment: exactly one runs.
    let (a, b) = tokio::join!(args(EAST), args(WEST));
    let codes = [a.0, b.0];
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        1,
        "exactly one runs: {codes:?}\n{}\n{}",
        a.2,
        b.2
    );
    let loser = if a.0 == Some(0) { &b } else { &a };
    assert_eq!(loser.0, Some(1));
    assert!(
        loser.2.contains("refused") && loser.2.contains(" by "),
        "the loser names the winner:\n{}",
        loser.2
    );
    let mut tables = Vec::new();
    for r in &fleet.regions {
        for p in &r.proxies {
            tables.push(outage::table(p.admin).await.expect("table"));
        }
    }
    assert!(tables.iter().all(|t| t == &tables[0]), "the fleet ends on one table: {tables:?}");
    assert!(tables[0]["operation"].is_null(), "the finished run released its claim: {}", tables[0]);
    let (code, out, _) = flowgate(&["status", "--fleet", &file]).await;
    assert_eq!(code, Some(0), "{out}");

    // One started while another runs refuses at once, naming it; the first goes on.
    let first = tokio::spawn(args(if a.0 == Some(0) { WEST } else { EAST }));
    let watched = fleet.regions[2].proxies[0].admin;
    support::wait::within(Duration::from_secs(10), || async {
        !outage::table(watched).await.is_some_and(|t| t["operation"].is_null())
    })
    .await;
    let second =
        flowgate(&["restore", EAST, "--fleet", &file, "--steps", "1", "--timeout", "1s", "--yes"]).await;
    assert_eq!(second.0, Some(1), "{}", second.2);
    assert!(second.2.contains("another operation is in progress: evacuate "), "{}", second.2);
    let first = first.await.expect("first");
    assert_eq!(first.0, Some(0), "the first goes on:\n{}", first.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_restarted_empty_mid_evacuation_does_not_roll_it_back() {
    let _turn = SERIAL.lock().await;
    let mut fleet = OutageFleet::start(2).await;
    let file = fleet.file();
    let run = tokio::spawn(async move { flowgate(&operation("evacuate", EAST, &file, "4", "1s")).await });
    // Once step 1 is in force, a receiving proxy dies and comes back empty at the same
    // address (as a pod behind the same name would).
    let west = fleet.regions.iter().position(|r| r.name == WEST).expect("west");
    let watched = fleet.regions[west].proxies[1].admin;
    support::wait::within(Duration::from_secs(15), || async {
        outage::table(watched).await.is_some_and(|t| t["note"].as_str().unwrap_or("").contains("step 1 of"))
    })
    .await;
    let old = fleet.regions[west].proxies.remove(1);
    let cfg = fleet.regions[west].configs.remove(1).admin_listen(old.admin);
    let admin = old.admin;
    drop(old);
    let fresh = cfg.spawn(&[("FLOWGATE_ADMIN_TOKEN", TOKEN)]);
    assert_eq!(fresh.admin, admin);
    let (code, _, err) = run.await.expect("run");
    assert_eq!(code, Some(0), "the evacuation goes on:\n{err}");
    assert!(!err.contains("rolling back"), "{err}");
    let t = outage::table(fresh.admin).await.expect("table");
    assert_eq!(keeps(&t, EAST), 0.0, "the restarted pod ends on the evacuation table: {t}");
    fleet.regions[west].proxies.push(fresh);
    fleet.regions[west].configs.push(cfg);
}
