//! The autopilot against real outages: the built binaries (three regions of proxy
//! processes, the autopilot), real origins that die or answer errors, a steady client
//! load, and real hooks.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::outage::{
    self, AutopilotProcess, FAST, Load, OutageFleet, admins, keeps, recording_hook, targets, wait_evacuated,
    wait_watching,
};
use support::wait::within;

/// These tests each run a fleet of processes: one at a time on a two-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";

async fn versions(fleet: &OutageFleet) -> Vec<u64> {
    let mut out = Vec::new();
    for a in admins(fleet, &[]) {
        out.push(outage::table(a).await.and_then(|t| t["version"].as_u64()).unwrap_or(u64::MAX));
    }
    out
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// An outage of us-east-1's origin (`break_it`), the autopilot running; returns the
/// fleet, the autopilot, the load, when the failure began and when the evacuation was in
/// force everywhere reachable.
struct Outcome {
    fleet: OutageFleet,
    pilot: AutopilotProcess,
    answers: Vec<outage::Answer>,
    failed_at: Duration,
    in_force_at: Duration,
    load_started: Instant,
}

async fn outage_run(
    confirm: &str,
    break_it: impl FnOnce(&OutageFleet),
    stopped: Option<usize>,
    watch_after: Duration,
) -> Outcome {
    let fleet = OutageFleet::start(2).await;
    let (before, before_log) = recording_hook(fleet.dir.path(), "before");
    let (dns, dns_log) = recording_hook(fleet.dir.path(), "dns");
    let notify = format!("cat >> '{}'", fleet.dir.path().join("notify.jsonl").display());
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--confirm", confirm, "--before-shift", &before, "--dns", &dns, "--notify", &notify]);
    let pilot = AutopilotProcess::spawn(&fleet.fleet_file, &args);
    wait_watching(&pilot).await;
    let skip: Vec<SocketAddr> = stopped.map(|i| fleet.region(EAST).proxies[i].public).into_iter().collect();
    let skip_admin: Vec<SocketAddr> =
        stopped.map(|i| fleet.region(EAST).proxies[i].admin).into_iter().collect();
    let load = Load::start(targets(&fleet, &skip), 20);
    load.wait_flowing(20).await;
    if let Some(i) = stopped {
        fleet.region(EAST).proxies[i].signal("STOP");
    }
    let failed_at = load.started.elapsed();
    break_it(&fleet);
    let limit = humantime::parse_duration(confirm).expect("confirm") + Duration::from_secs(15);
    let in_force = wait_evacuated(&admins(&fleet, &skip_admin), EAST, limit + Duration::from_secs(5)).await;
    let Some(in_force) = in_force else {
        panic!("{EAST} was not evacuated within {limit:?}:\n{}", pilot.dump());
    };
    let in_force_at = in_force.duration_since(load.started);
    assert!(
        in_force_at - failed_at <= limit,
        "evacuated {:?} after the failure, more than --confirm + 15 s:\n{}",
        in_force_at - failed_at,
        pilot.dump()
    );
    pilot
        .wait_for(Duration::from_secs(20), |d| d["rule"] == "evacuated" && d["result"] == "done")
        .await
        .unwrap_or_else(|| panic!("the evacuation did not end as done:\n{}", pilot.dump()));
    // The load goes on after the evacuation: what it meets then is the test.
    tokio::time::sleep(watch_after).await;
    let load_started = load.started;
    let answers = load.stop().await;
    assert_eq!(lines(&before_log), vec![format!("region={EAST} phase=before-evacuate trigger=autopilot")]);
    assert_eq!(lines(&dns_log), vec![format!("region={EAST} phase=evacuated trigger=autopilot")]);
    Outcome { fleet, pilot, answers, failed_at, in_force_at, load_started }
}

impl Outcome {
    fn failed_between(&self, from: Duration, to: Duration) -> Vec<&outage::Answer> {
        self.answers.iter().filter(|a| !a.ok && a.sent >= from && a.sent < to).collect()
    }

    fn report(&self, what: &str) {
        let end = self.load_started.elapsed();
        let before = self.failed_between(self.failed_at, self.in_force_at).len();
        let total =
            self.answers.iter().filter(|a| a.sent >= self.failed_at && a.sent < self.in_force_at).count();
        eprintln!(
            "{what}: evacuation in force {:.1} s after the failure; {before} of {total} client requests failed in between; {} failed after (of {})",
            (self.in_force_at - self.failed_at).as_secs_f64(),
            self.failed_between(self.in_force_at, end).len(),
            self.answers.iter().filter(|a| a.sent >= self.in_force_at).count(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_origin_is_evacuated_unattended_and_no_request_fails_after() {
    let _turn = SERIAL.lock().await;
    let o = outage_run("3s", |f| f.region(EAST).origin.kill(), None, Duration::from_secs(5)).await;
    o.report("origin killed");
    let after = o.failed_between(o.in_force_at, Duration::MAX);
    assert!(after.is_empty(), "requests failed after the evacuation was in force: {after:?}");
    // Every proxy ends on one table, the evacuation's last step.
    let v = versions(&o.fleet).await;
    assert!(v.iter().all(|x| *x == v[0] && *x > 0), "{v:?}");
    let notified = lines(&o.fleet.dir.path().join("notify.jsonl"));
    assert!(
        notified.iter().any(|l| l.contains("\"action\":\"evacuate\"") && l.contains(EAST)),
        "--notify must get the evacuation: {notified:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evacuation_completes_around_a_hung_proxy_of_the_failing_region_and_names_it() {
    let _turn = SERIAL.lock().await;
    let o = outage_run("3s", |f| f.region(EAST).origin.kill(), Some(1), Duration::from_secs(2)).await;
    o.report("origin killed, one us-east-1 proxy stopped");
    let stopped = o.fleet.region(EAST).proxies[1].admin.to_string();
    let done = o.pilot.decisions().into_iter().find(|d| d["rule"] == "evacuated").expect("done");
    let unreached: Vec<String> = done["run"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .flat_map(|s| s["unreached"].as_array().cloned().unwrap_or_default())
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect();
    assert!(unreached.iter().any(|u| u.contains(&stopped)), "the stopped proxy must be named: {unreached:?}");
    assert!(
        o.pilot.decisions().iter().all(|d| d["result"] != "rolled-back" && d["result"] != "held"),
        "nothing may be rolled back:\n{}",
        o.pilot.dump()
    );
    o.fleet.region(EAST).proxies[1].signal("CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_behind_passing_health_checks_are_evacuated_and_clients_stop_seeing_them() {
    let _turn = SERIAL.lock().await;
    let o =
        outage_run("3s", |f| f.region(EAST).origin.fail_share(500, 30), None, Duration::from_secs(60)).await;
    o.report("30 % 500s");
    let minute = o.in_force_at + Duration::from_secs(60);
    let sent = o.answers.iter().filter(|a| a.sent >= o.in_force_at && a.sent < minute).count();
    let failed = o.failed_between(o.in_force_at, minute).len();
    assert!(sent > 1000, "the load must go on through the minute after: {sent}");
    let ratio = failed as f64 / sent as f64;
    assert!(ratio < 0.005, "client error ratio over the minute after: {ratio} ({failed} of {sent})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_cut_off_from_a_region_does_not_evacuate_it_and_says_why() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    let cut = fleet.dir.path().join("cut-off.toml");
    fleet.write_fleet_file(&cut, &[EAST]);
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--confirm", "2s"]);
    let pilot = AutopilotProcess::spawn(&cut, &args);
    let held = pilot
        .wait_for(Duration::from_secs(10), |d| d["region"] == EAST && d["action"] == "held")
        .await
        .unwrap_or_else(|| panic!("no held decision:\n{}", pilot.dump()));
    assert_eq!(held["rule"], "quorum-missing", "{held}");
    let why = held["why"].as_str().unwrap_or("");
    assert!(why.contains("quorum not met") && why.contains("see it healthy"), "{why}");
    // Well past --confirm: nothing moved (the absence is the point).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(pilot.decisions().iter().all(|d| d["action"] != "evacuate"), "{}", pilot.dump());
    assert!(versions(&fleet).await.iter().all(|v| *v == 0), "no table may change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blip_shorter_than_confirm_changes_nothing() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--confirm", "6s"]);
    let pilot = AutopilotProcess::spawn(&fleet.fleet_file, &args);
    wait_watching(&pilot).await;
    fleet.region(EAST).origin.kill();
    pilot
        .wait_for(Duration::from_secs(5), |d| d["region"] == EAST && d["rule"] == "confirming")
        .await
        .unwrap_or_else(|| panic!("the failure was not seen:\n{}", pilot.dump()));
    // The blip itself: shorter than --confirm.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fleet.region(EAST).origin.revive().await;
    fleet.wait_ready().await;
    // Past when --confirm would have run out: nothing moved (the absence is the point).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(pilot.decisions().iter().all(|d| d["action"] != "evacuate"), "{}", pilot.dump());
    assert!(versions(&fleet).await.iter().all(|v| *v == 0), "no table may change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_failing_regions_never_leave_too_few_healthy_and_the_held_one_is_named() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    let notify_log = fleet.dir.path().join("notify.jsonl");
    let notify = format!("cat >> '{}'", notify_log.display());
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--confirm", "2s", "--min-healthy-regions", "2", "--notify", &notify]);
    let pilot = AutopilotProcess::spawn(&fleet.fleet_file, &args);
    wait_watching(&pilot).await;
    fleet.region(EAST).origin.kill();
    fleet.region(WEST).origin.kill();
    let held = |region: &'static str| {
        move |d: &Value| d["region"] == region && d["action"] == "held" && d["rule"] == "min-healthy-regions"
    };
    for region in [EAST, WEST] {
        pilot
            .wait_for(Duration::from_secs(15), held(region))
            .await
            .unwrap_or_else(|| panic!("{region} not held:\n{}", pilot.dump()));
    }
    // A few rounds more, in which at most one region may be evacuated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v = versions(&fleet).await;
    let table = outage::table(fleet.regions[0].proxies[0].admin).await.expect("table");
    let evacuated = [EAST, WEST].iter().filter(|r| keeps(&table, r) <= 0.0).count();
    assert!(evacuated <= 1, "at most one region evacuated: {table}");
    assert!(v.iter().all(|x| *x == v[0]), "{v:?}");
    let notified = lines(&notify_log);
    for region in [EAST, WEST] {
        assert!(
            notified.iter().any(|l| l.contains("\"action\":\"held\"") && l.contains(&format!("\"region\":\"{region}\""))),
            "the notification must name {region}: {notified:?}"
        );
    }
}

async fn switch(fleet: &OutageFleet, word: &str) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["autopilot", word, "--fleet"])
        .arg(&fleet.fleet_file)
        .env_remove("FLOWGATE_AUTOPILOT_STATE")
        .output()
        .await
        .expect("run");
    assert!(out.status.success(), "autopilot {word}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_holds_across_a_restart_and_resume_lets_it_act() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    switch(&fleet, "pause").await;
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--confirm", "2s"]);
    let mut pilot = AutopilotProcess::spawn(&fleet.fleet_file, &args);
    wait_watching(&pilot).await;
    fleet.region(EAST).origin.kill();
    let paused = |d: &Value| d["region"] == EAST && d["action"] == "held" && d["rule"] == "paused";
    pilot.wait_for(Duration::from_secs(10), paused).await.unwrap_or_else(|| panic!("{}", pilot.dump()));
    let status = pilot.terminate().expect("the autopilot must exit on SIGTERM");
    assert!(status.success(), "SIGTERM: {status}");
    let pilot = AutopilotProcess::spawn(&fleet.fleet_file, &args);
    pilot.wait_for(Duration::from_secs(10), paused).await.unwrap_or_else(|| panic!("{}", pilot.dump()));
    assert!(versions(&fleet).await.iter().all(|v| *v == 0), "paused: no table may change");
    switch(&fleet, "resume").await;
    wait_evacuated(&admins(&fleet, &[]), EAST, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("resumed, it must evacuate:\n{}", pilot.dump()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_decides_and_logs_but_pushes_nothing() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--confirm", "2s", "--dry-run"]);
    let pilot = AutopilotProcess::spawn(&fleet.fleet_file, &args);
    wait_watching(&pilot).await;
    fleet.region(EAST).origin.kill();
    let d = pilot
        .wait_for(Duration::from_secs(15), |d| d["region"] == EAST && d["result"] == "dry-run")
        .await
        .unwrap_or_else(|| panic!("{}", pilot.dump()));
    assert!(d["why"].as_str().unwrap_or("").contains("would evacuate"), "{d}");
    assert_eq!(d["dry_run"], true);
    // A few rounds more, in which a dry run must push nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(versions(&fleet).await.iter().all(|v| *v == 0), "a dry run pushes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn its_listener_shows_the_fleet_exports_metrics_and_flips_the_switch_with_the_token() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(1).await;
    let pilot = AutopilotProcess::spawn(&fleet.fleet_file, &FAST);
    wait_watching(&pilot).await;
    let base = format!("http://{}", pilot.listen);
    let client = support::h1_client();
    let get = |path: &str| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move {
            let (status, _, body) = support::get(&client, &url).await;
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    let (_, metrics) = get("/metrics").await;
    let sample = |text: &str, line: &str| text.lines().any(|l| l == line);
    for family in [
        "flowgate_autopilot_region_verdict{region=\"us-east-1\",verdict=\"healthy\"} 1",
        "flowgate_autopilot_paused 0",
        "flowgate_autopilot_actions_total{action=\"evacuate\",outcome=\"done\"} 0",
        "flowgate_autopilot_operation_in_progress 0",
    ] {
        assert!(sample(&metrics, family), "{family} missing:\n{metrics}");
    }
    let (_, decisions) = get("/v1/decisions").await;
    let decisions: Value = serde_json::from_str(&decisions).expect("JSON");
    assert!(decisions.as_array().is_some_and(|d| d.len() >= 3), "{decisions}");
    let (_, page) = get("/").await;
    for r in outage::REGIONS {
        assert!(page.contains(r), "the page names {r}");
    }
    assert!(page.contains("no operation in progress"), "{page}");
    // The switch over HTTP: refused without the token, flipped with it.
    let post = |token: Option<&str>| {
        let mut b = http::Request::post(format!("{base}/v1/pause"));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = b.body(http_body_util::Full::new(bytes::Bytes::new())).expect("request");
        let client = client.clone();
        async move { client.request(req).await.expect("answer").status() }
    };
    assert_eq!(post(None).await, 401);
    assert_eq!(post(Some("wrong")).await, 401);
    assert_eq!(post(Some(outage::TOKEN)).await, 200);
    within(Duration::from_secs(5), || async {
        sample(&get("/metrics").await.1, "flowgate_autopilot_paused 1")
    })
    .await;
    assert!(sample(&get("/metrics").await.1, "flowgate_autopilot_paused 1"), "paused over HTTP");
    let page = get("/").await.1;
    assert!(page.contains("PAUSED"), "the page says so:\n{page}");
}
