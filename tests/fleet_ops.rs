//! The fleet commands (`push`, `status`, `evacuate`, `restore`,
//! `exercise`) run as the built binary against a real fleet on loopback: 3 regions × 2
//! in-process proxies, one real origin per region shared by its two proxies, every proxy
//! listing both proxies of every other region as its peers, and continuous GET and POST
//! load spread over all six proxies. The commands get the admin token in their own
//! environment and a fleet file listing every proxy's admin address.
//!
//! The tests take turns (one lock): each one measures load, error ratios and timings,
//! which other tests' load on the same two cores would only blur.
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use support::TestProxy;
use support::admin::{HttpClient, get_json, put, status};
use support::fleet::{Fleet, FleetSpec};
use support::h1_client;
use support::run::flowgate_as;
use support::wait::{wait_until, within};

const A: &str = "us-east-1";
const B: &str = "us-west-2";
const C: &str = "eu-west-1";
const TOKEN: &str = "fleet-ops-test-token-7f3a";

/// Version 1 of the table every test starts with: A keeps 90 % and sends 10 % to B, B
/// serves itself, C sends 20 % of its traffic to A (so evacuating A moves two rows).
fn initial_table() -> String {
    format!(
        r#"{{"version": 1, "weights": {{
            "{A}": {{"{A}": 90, "{B}": 10}},
            "{B}": {{"{B}": 100}},
            "{C}": {{"{C}": 80, "{A}": 20}}
        }}}}"#
    )
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One exchange; transport failures are `Err` so that load loops can count them.
async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let req = Request::builder().method(method).uri(url).body(Full::new(body)).map_err(|e| e.to_string())?;
    support::exchange(client, req).await.map(|(status, _, body)| (status, body))
}

async fn table_of(p: &TestProxy) -> Value {
    support::admin::table(p.addrs.admin).await
}

async fn history_of(p: &TestProxy) -> Vec<Value> {
    get_json(p.addrs.admin, "/v1/table/history").await.as_array().cloned().expect("history is an array")
}

async fn history_table(p: &TestProxy, version: u64) -> Value {
    get_json(p.addrs.admin, &format!("/v1/table/history/{version}")).await
}

fn version(t: &Value) -> u64 {
    t["version"].as_u64().expect("table version")
}

/// The share a row gives a target (0 when absent).
fn weight(t: &Value, src: &str, target: &str) -> u64 {
    t["weights"][src][target].as_u64().unwrap_or(0)
}

/// Continuous client load: on every proxy one worker sending GETs and one sending POSTs
/// whose echoed body is checked, a few milliseconds apart.
struct Load {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    gets: Arc<AtomicUsize>,
    posts: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(fleet: &Fleet) -> Load {
        let load = Load {
            ok: Arc::default(),
            failed: Arc::default(),
            gets: Arc::default(),
            posts: Arc::default(),
            failures: Arc::default(),
            stop: Arc::default(),
            workers: Vec::new(),
        };
        let mut workers = Vec::new();
        let publics: Vec<SocketAddr> =
            fleet.regions.iter().flat_map(|r| r.proxies().map(|p| p.addrs.public)).collect();
        for (w, public) in publics.iter().enumerate() {
            for post in [false, true] {
                let (ok, failed, failures, stop) =
                    (load.ok.clone(), load.failed.clone(), load.failures.clone(), load.stop.clone());
                let counter = if post { load.posts.clone() } else { load.gets.clone() };
                let public = *public;
                workers.push(tokio::spawn(async move {
                    let client = h1_client();
                    let deadline = Instant::now() + Duration::from_secs(100);
                    // Bounded in count and time.
                    for i in 0..100_000u32 {
                        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                            break;
                        }
                        let outcome = if post {
                            let body = Bytes::from(format!("{w}/{i}:{}", "p".repeat(500)));
                            let url = format!("http://{public}/echo");
                            match send(&client, Method::POST, &url, body.clone()).await {
                                Ok((s, got)) if s == 200 && got == body => Ok(()),
                                Ok((s, got)) => Err(format!("POST {url}: {s} {:?}", short(&got))),
                                Err(e) => Err(format!("POST {url}: {e}")),
                            }
                        } else {
                            let url = format!("http://{public}/get/{i}");
                            match send(&client, Method::GET, &url, Bytes::new()).await {
                                Ok((s, got)) if s == 200 && got == "ok" => Ok(()),
                                Ok((s, got)) => Err(format!("GET {url}: {s} {:?}", short(&got))),
                                Err(e) => Err(format!("GET {url}: {e}")),
                            }
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                        match outcome {
                            Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                            Err(e) => {
                                let mut f = failures.lock().expect("failures");
                                if f.len() < 20 {
                                    f.push(e);
                                }
                                failed.fetch_add(1, Ordering::SeqCst)
                            }
                        };
                        // The pace of each worker.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }));
            }
        }
        Load { workers, ..load }
    }

    /// (answered well, failed) so far.
    fn counts(&self) -> (usize, usize) {
        (self.ok.load(Ordering::SeqCst), self.failed.load(Ordering::SeqCst))
    }

    fn first_failures(&self) -> Vec<String> {
        self.failures.lock().expect("failures").clone()
    }

    async fn stop(self) -> Load {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            tokio::time::timeout(Duration::from_secs(20), w)
                .await
                .expect("load worker ends")
                .expect("worker");
        }
        Load { workers: Vec::new(), ..self }
    }
}

fn short(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned()
}

/// A fleet for one test, with the token file, fleet files and tables in a folder.
struct Ops {
    fleet: Fleet,
    dir: tempfile::TempDir,
}

impl Ops {
    async fn start() -> Ops {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, format!("fleet-operator {TOKEN}\n")).expect("token file");
        let admin_extra = format!("token_file = {:?}\n", tokens.display().to_string());
        let table = initial_table();
        let fleet = Fleet::start(FleetSpec {
            regions: &[A, B, C],
            table: Some(&table),
            proxies_per_region: 2,
            admin_extra: &admin_extra,
            // Probes slow enough that two busy cores never miss one by accident: the gates
            // of `evacuate` roll back when a proxy sees a region turn unhealthy.
            health_interval: Duration::from_millis(500),
            ..Default::default()
        })
        .await;
        Ops { fleet, dir }
    }

    fn proxies(&self) -> Vec<(&str, &TestProxy)> {
        self.fleet.regions.iter().flat_map(|r| r.proxies().map(move |p| (r.name.as_str(), p))).collect()
    }

    /// A fleet file with every proxy's admin address, these capacities, and `more`
    /// addresses added to a region's list.
    fn fleet_file(&self, name: &str, capacity: &[(&str, f64)], more: &[(&str, SocketAddr)]) -> PathBuf {
        let mut text = String::from("token_env = \"FLOWGATE_ADMIN_TOKEN\"\n");
        for r in &self.fleet.regions {
            let mut admins: Vec<String> = r.proxies().map(|p| format!("\"{}\"", p.addrs.admin)).collect();
            admins.extend(more.iter().filter(|(m, _)| *m == r.name).map(|(_, a)| format!("\"{a}\"")));
            let cap = capacity.iter().find(|(c, _)| *c == r.name).map(|c| c.1).expect("capacity");
            text.push_str(&format!(
                "\n[regions.{}]\nadmin = [{}]\ncapacity_rps = {cap}\n",
                r.name,
                admins.join(", ")
            ));
        }
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("fleet file");
        path
    }

    fn roomy_fleet_file(&self) -> PathBuf {
        self.fleet_file("fleet.toml", &[(A, 100_000.0), (B, 100_000.0), (C, 100_000.0)], &[])
    }

    /// Every proxy's table, in fleet order.
    async fn tables(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (_, p) in self.proxies() {
            out.push(table_of(p).await);
        }
        out
    }

    /// Every proxy's (version, history length): what a push would change.
    async fn fingerprint(&self) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        for (_, p) in self.proxies() {
            out.push((version(&table_of(p).await), history_of(p).await.len()));
        }
        out
    }

    /// Waits until every proxy measures its demand from the load (`source_rps` over 10).
    async fn warm(&self) {
        let admins = self.fleet.admins();
        wait_until("every proxy to measure its demand", Duration::from_secs(15), || async {
            for a in &admins {
                if status(*a).await["source_rps"].as_f64().unwrap_or(0.0) <= 10.0 {
                    return false;
                }
            }
            true
        })
        .await;
    }

    async fn stop(self) {
        self.fleet.stop().await;
    }
}

/// Runs `flowgate ARGS` to the end (at most `limit`), stdin not a terminal, and shows
/// what it said.
async fn flowgate(args: &[&str], limit: Duration) -> support::run::Run {
    let run = flowgate_as(TOKEN, args, limit).await;
    eprintln!(
        "--- flowgate {} → exit {:?} in {:?}\n{}{}",
        args.join(" "),
        run.code,
        run.took,
        run.stdout,
        run.stderr
    );
    run
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Waits until the region's origin has had `n` more client requests (at most `limit`);
/// how many it had.
async fn origin_gets(hits: &AtomicUsize, n: usize, limit: Duration) -> usize {
    let start = hits.load(Ordering::SeqCst);
    within(limit, || async { hits.load(Ordering::SeqCst) >= start + n }).await;
    hits.load(Ordering::SeqCst) - start
}

/// Evacuate A in 5 gated steps under load, then restore it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evacuate_and_restore_under_load_fail_no_request() {
    let _turn = SERIAL.lock().await;
    let ops = Ops::start().await;
    let fleet_file = ops.roomy_fleet_file();
    let before = ops.tables().await;
    assert!(before.iter().all(|t| version(t) == 1), "every proxy starts at version 1");
    let load = Load::start(&ops.fleet);
    let a_origin = ops.fleet.region(A).origin.hits.clone();
    // Warm up: every region measures its demand, and A's origin serves its share.
    ops.warm().await;
    let a_warm = a_origin.load(Ordering::SeqCst);
    assert!(a_warm > 100, "A's origin must serve traffic before the evacuation: {a_warm} requests");

    let (ok0, failed0) = load.counts();
    let run = flowgate(
        &["evacuate", A, "--fleet", path_str(&fleet_file), "--steps", "5", "--interval", "1s", "--yes"],
        Duration::from_secs(60),
    )
    .await;
    let (ok1, failed1) = load.counts();
    assert_eq!(run.code, Some(0), "evacuate failed:\n{}", run.stderr);
    assert!(run.stderr.contains("step 5/5"), "a log line per step:\n{}", run.stderr);
    assert!(run.took >= Duration::from_secs(5), "5 steps 1 s apart took only {:?}", run.took);

    // Every proxy has the last step's table, and nothing sends A anything.
    let after = ops.tables().await;
    for (t, (region, p)) in after.iter().zip(ops.proxies()) {
        // Version 1, the run's claim of the fleet (2), then its 5 steps (3 to 7).
        assert_eq!(version(t), 7, "{region} proxy {} is not at the last step", p.addrs.admin);
        assert_eq!(t["weights"], after[0]["weights"], "proxies disagree on the shares");
        for src in [A, B, C] {
            assert_eq!(weight(t, src, A), 0, "row {src} still sends {A} traffic: {}", t["weights"]);
        }
    }
    // A's origin gets nothing any more, while the others keep serving.
    let b_origin = ops.fleet.region(B).origin.hits.clone();
    let (a_flat, b_then) = (a_origin.load(Ordering::SeqCst), b_origin.load(Ordering::SeqCst));
    // A window of load in which A's origin must get nothing: the absence is the point.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a_later = a_origin.load(Ordering::SeqCst);
    let b_served = b_origin.load(Ordering::SeqCst) - b_then;
    assert_eq!(a_later, a_flat, "A's origin still got {} requests after the evacuation", a_later - a_flat);
    assert!(b_served > 100, "B's origin must carry the load meanwhile: {b_served} requests");

    // Restore: the shares before the evacuation come back, found in the proxies' history.
    let (ok2, failed2) = load.counts();
    let back = flowgate(
        &["restore", A, "--fleet", path_str(&fleet_file), "--steps", "5", "--interval", "1s", "--yes"],
        Duration::from_secs(60),
    )
    .await;
    let (ok3, failed3) = load.counts();
    assert_eq!(back.code, Some(0), "restore failed:\n{}", back.stderr);
    let restored = ops.tables().await;
    for (t, (region, p)) in restored.iter().zip(ops.proxies()) {
        // 7, the restore's claim (8), then its 5 steps (9 to 13).
        assert_eq!(version(t), 13, "{region} proxy {} is not at the last restore step", p.addrs.admin);
        assert_eq!(t["weights"], before[0]["weights"], "{region}: the shares before the evacuation");
    }
    let a_again = origin_gets(&a_origin, 50, Duration::from_secs(3)).await;
    assert!(a_again >= 50, "A's origin must serve again after the restore: {a_again} requests");

    let load = load.stop().await;
    let (ok, failed) = load.counts();
    let (gets, posts) = (load.gets.load(Ordering::SeqCst), load.posts.load(Ordering::SeqCst));
    eprintln!(
        "evacuate and restore: evacuation {:?}: {} requests answered, {} failed; restore {:?}: {} answered, {} \
         failed; in all {gets} GETs and {posts} POSTs, {failed} failed ({ok} fine)",
        run.took,
        ok1 - ok0,
        failed1 - failed0,
        back.took,
        ok3 - ok2,
        failed3 - failed2
    );
    assert!(ok1 - ok0 > 1000, "too little load during the evacuation to judge: {}", ok1 - ok0);
    assert!(gets > 1000 && posts > 1000, "too little load: {gets} GETs, {posts} POSTs");
    assert_eq!(failed, 0, "client requests failed: {:?}", load.first_failures());
    ops.stop().await;
}

/// The number after `"{region} needs "` in a capacity refusal.
fn missing_capacity(stderr: &str, region: &str) -> Option<f64> {
    let rest = stderr.split(&format!("{region} needs ")).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The other regions cannot take A's load: refused before any push, naming
/// what each region misses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evacuate_refuses_before_any_push_when_capacity_is_short() {
    let _turn = SERIAL.lock().await;
    let ops = Ops::start().await;
    let fleet_file = ops.fleet_file("small.toml", &[(A, 100_000.0), (B, 2.0), (C, 3.0)], &[]);
    let load = Load::start(&ops.fleet);
    ops.warm().await;
    let status = status(ops.fleet.region(A).proxy.addrs.admin).await;
    let a_demand = status["source_rps"].as_f64().unwrap_or(0.0);
    assert!(a_demand > 10.0, "A's proxy must measure its demand: {status}");
    let before = ops.fingerprint().await;

    let run = flowgate(
        &["evacuate", A, "--fleet", path_str(&fleet_file), "--steps", "5", "--interval", "1s", "--yes"],
        Duration::from_secs(30),
    )
    .await;
    let after = ops.fingerprint().await;
    let load = load.stop().await;
    assert_eq!(run.code, Some(1), "a plan that cannot fit must fail:\n{}", run.stderr);
    assert!(run.stderr.contains("refused before any push"), "{}", run.stderr);
    assert!(run.stderr.contains("not enough capacity"), "{}", run.stderr);
    for region in [B, C] {
        let missing = missing_capacity(&run.stderr, region)
            .unwrap_or_else(|| panic!("the refusal must say what {region} misses:\n{}", run.stderr));
        assert!(missing >= 1.0, "{region} misses {missing} rps");
    }
    assert!(missing_capacity(&run.stderr, A).is_none(), "A is being evacuated, it needs nothing");
    assert!(!run.stderr.contains("step 1/"), "nothing may be pushed:\n{}", run.stderr);
    assert_eq!(after, before, "no proxy's table version or history may change");
    assert_eq!(load.counts().1, 0, "client requests failed: {:?}", load.first_failures());
    eprintln!("short capacity: refused in {:?} with A's demand at {a_demand:.0} rps", run.took);
    ops.stop().await;
}

/// B's origin starts answering 500 once step 2 is in force: the gate sees it,
/// the last good table goes back fleet-wide as a new version, and the run exits 1 saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_after_step_two_roll_back_fleet_wide() {
    let _turn = SERIAL.lock().await;
    let ops = Ops::start().await;
    let fleet_file = ops.roomy_fleet_file();
    let load = Load::start(&ops.fleet);
    ops.warm().await;

    let args: Vec<String> = [
        "evacuate",
        A,
        "--fleet",
        path_str(&fleet_file),
        "--steps",
        "5",
        "--interval",
        "1s",
        "--max-error-ratio",
        "0.01",
        "--yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t0 = Instant::now();
    let child = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        flowgate(&args, Duration::from_secs(60)).await
    });
    // Inject the errors as soon as any proxy has step 2 (its note says so: the run's claim
    // of the fleet takes a version of its own before step 1).
    let watched = &ops.fleet.region(B).proxy;
    let step_two = format!("evacuate {A}: step 2 of");
    let mut injected = None;
    let at_step_two = std::cell::Cell::new(false);
    within(Duration::from_secs(30), || async {
        at_step_two.set(table_of(watched).await["note"].as_str().is_some_and(|n| n.starts_with(&step_two)));
        at_step_two.get() || child.is_finished()
    })
    .await;
    if at_step_two.get() {
        ops.fleet.region(B).origin.fail_with(500);
        injected = Some(t0.elapsed());
    }
    let run = child.await.expect("run");
    ops.fleet.region(B).origin.fail_with(0);
    let load = load.stop().await;
    let injected = injected.expect("step 2 must have been pushed");
    assert_eq!(run.code, Some(1), "the run must fail:\n{}", run.stderr);
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    // The reason names the failing region first (the worst), with its error ratio.
    let reason = format!("error: region {B}: error ratio ");
    let ratio: f64 = run
        .stderr
        .split(&reason)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("stderr must name {B} first, with its error ratio:\n{}", run.stderr));
    assert!(ratio > 1.0, "{B}'s error ratio as reported: {ratio} %");

    // Every proxy has the rollback table, a new version with the last good shares.
    let tables = ops.tables().await;
    let rollback = version(&tables[0]);
    for (t, (region, p)) in tables.iter().zip(ops.proxies()) {
        assert_eq!(version(t), rollback, "{region} proxy {} is not at the rollback version", p.addrs.admin);
        assert_eq!(t["weights"], tables[0]["weights"]);
    }
    let note = tables[0]["note"].as_str().unwrap_or("");
    assert!(note.starts_with(&format!("rollback of evacuate {A}")), "note: {note}");
    let first = &ops.fleet.regions[0].proxy;
    let failing = history_table(first, rollback - 1).await;
    let last_good = history_table(first, rollback - 2).await;
    let failing_note = failing["note"].as_str().unwrap_or("").to_owned();
    let step: u32 = failing_note
        .split("step ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("version {} is not a step: {failing_note}", rollback - 1));
    assert!((2..=5).contains(&step), "the gate failed at step {step}, errors came after step 2");
    assert_eq!(tables[0]["weights"], last_good["weights"], "the rollback must restore the last good shares");
    assert_ne!(tables[0]["weights"], failing["weights"], "the failing step's shares must be gone");
    assert!(weight(&tables[0], A, A) > 0, "a rolled-back run leaves A part of its traffic");
    let (ok, failed) = load.counts();
    eprintln!(
        "errors after step 2: injected at {injected:?} (step 2 in force); the gate failed at step {step}; \
         rolled back to the shares of version {} as version {rollback}; exit after {:?}; clients: {ok} \
         fine, {failed} failed (injected errors)",
        rollback - 2,
        run.took
    );
    ops.stop().await;
}

/// One admin address of the fleet where nothing listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_reports_an_unreachable_proxy_and_the_others_apply() {
    let _turn = SERIAL.lock().await;
    let ops = Ops::start().await;
    let dead = support::origin::refusing_addr().await;
    let caps = [(A, 100_000.0), (B, 100_000.0), (C, 100_000.0)];
    let fleet_file = ops.fleet_file("dead.toml", &caps, &[(B, dead)]);
    let table_path = ops.dir.path().join("v2.json");
    let table = format!(
        r#"{{"version": 2, "weights": {{"{A}": {{"{A}": 50, "{C}": 50}}, "{C}": {{"{C}": 100}}}}, "note": "test push"}}"#
    );
    std::fs::write(&table_path, &table).expect("table");

    let run =
        flowgate(&["push", "--fleet", path_str(&fleet_file), path_str(&table_path)], Duration::from_secs(30))
            .await;
    assert_eq!(run.code, Some(1), "a push that misses a proxy must fail:\n{}", run.stderr);
    let dead_line = run
        .stdout
        .lines()
        .find(|l| l.contains(&dead.to_string()))
        .unwrap_or_else(|| panic!("the dead proxy must have a line:\n{}", run.stdout));
    assert!(dead_line.contains("unreachable") && dead_line.contains(B), "{dead_line}");
    for (region, p) in ops.proxies() {
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains(&p.addrs.admin.to_string()))
            .unwrap_or_else(|| panic!("no line for {}:\n{}", p.addrs.admin, run.stdout));
        assert!(line.contains("applied"), "{line}");
        let t = table_of(p).await;
        assert_eq!(version(&t), 2, "{region} proxy {} must have applied the table", p.addrs.admin);
        assert_eq!(weight(&t, A, C), 50);
    }
    assert!(run.stderr.contains("1 of 7 proxies did not apply version 2"), "{}", run.stderr);

    // The same push to the reachable fleet is harmless: every proxy already has it.
    let good = ops.roomy_fleet_file();
    let again =
        flowgate(&["push", "--fleet", path_str(&good), path_str(&table_path)], Duration::from_secs(30)).await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(again.stdout.lines().filter(|l| l.contains("unchanged")).count(), 6, "{}", again.stdout);
    eprintln!("push with a dead proxy took {:?}, the repeat {:?}", run.took, again.took);
    ops.stop().await;
}

/// `status --json`, `--dry-run`, no `--yes` without a
/// terminal, and an exercise that writes its report.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_dry_run_confirmation_and_exercise_report() {
    let _turn = SERIAL.lock().await;
    let ops = Ops::start().await;
    let fleet_file = ops.roomy_fleet_file();
    let fleet = path_str(&fleet_file);
    let load = Load::start(&ops.fleet);
    ops.warm().await;

    // status --json: every proxy, its version, and whether they agree.
    let st = flowgate(&["status", "--fleet", fleet, "--json"], Duration::from_secs(30)).await;
    assert_eq!(st.code, Some(0), "{}", st.stderr);
    let doc: Value = serde_json::from_str(&st.stdout).expect("status --json is JSON");
    let listed = doc["proxies"].as_array().expect("proxies");
    assert_eq!(listed.len(), 6, "{doc}");
    for (region, p) in ops.proxies() {
        let addr = p.addrs.admin.to_string();
        let entry = listed.iter().find(|e| e["addr"] == addr.as_str()).unwrap_or_else(|| panic!("{addr}"));
        assert_eq!(entry["region"], region);
        assert_eq!(entry["status"]["table_version"], 1, "{entry}");
    }
    assert_eq!(doc["versions_agree"], true, "{doc}");
    // One proxy ahead: they no longer agree, and status says so.
    let mut v2: Value = serde_json::from_str(&initial_table()).expect("table");
    v2["version"] = 2.into();
    let lone = &ops.fleet.region(C).more[0];
    let put = put(lone.addrs.admin, TOKEN, &v2).await;
    assert_eq!(put.0, 200, "{:?}", put.1);
    let st2 = flowgate(&["status", "--fleet", fleet, "--json"], Duration::from_secs(30)).await;
    let doc2: Value = serde_json::from_str(&st2.stdout).expect("status --json is JSON");
    assert_eq!(doc2["versions_agree"], false, "{doc2}");
    let v2_path = ops.dir.path().join("v2.json");
    std::fs::write(&v2_path, v2.to_string()).expect("table");
    let aligned = flowgate(&["push", "--fleet", fleet, path_str(&v2_path)], Duration::from_secs(30)).await;
    assert_eq!(aligned.code, Some(0), "{}", aligned.stderr);

    // --dry-run prints the plan and pushes nothing.
    let before = ops.fingerprint().await;
    let dry = flowgate(
        &["evacuate", A, "--fleet", fleet, "--steps", "5", "--interval", "1s", "--dry-run"],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert!(dry.stdout.contains("version 7:"), "the plan names its 5 tables (3 to 7):\n{}", dry.stdout);
    assert!(dry.stdout.contains("nothing pushed"), "{}", dry.stdout);
    assert_eq!(ops.fingerprint().await, before, "a dry run must push nothing");

    // Without --yes and with stdin not a terminal: refuse to ask, push nothing.
    let ask = flowgate(
        &["evacuate", A, "--fleet", fleet, "--steps", "5", "--interval", "1s"],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(ask.code, Some(2), "{}", ask.stderr);
    assert!(ask.stderr.contains("not a terminal"), "{}", ask.stderr);
    assert_eq!(ops.fingerprint().await, before, "a refused run must push nothing");

    // exercise: evacuate in 2 steps, hold 1 s, restore in 2 steps, write the report.
    let report = ops.dir.path().join("report.html");
    let ex = flowgate(
        &[
            "exercise",
            A,
            "--fleet",
            fleet,
            "--hold",
            "1s",
            "--steps",
            "2",
            "--interval",
            "1s",
            "--yes",
            "--report",
            path_str(&report),
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(ex.code, Some(0), "{}", ex.stderr);
    let html = std::fs::read_to_string(&report).expect("the report was written");
    assert!(html.contains("<svg"), "the report needs a chart");
    assert_eq!(html.matches("<tr><td>evacuate</td>").count(), 2, "a row per evacuation step");
    assert_eq!(html.matches("<tr><td>restore</td>").count(), 2, "a row per restore step");
    assert!(!html.contains("<script") && !html.contains("<link"), "the report must be self-contained");
    let end = ops.tables().await;
    for t in &end {
        assert_eq!(version(t), 7, "the exercise's claim and 2 + 2 steps after version 2");
        assert_eq!(t["weights"], v2["weights"], "the exercise ends with the shares it started with");
    }
    let load = load.stop().await;
    assert_eq!(load.counts().1, 0, "client requests failed: {:?}", load.first_failures());
    eprintln!("exercise took {:?}, report {} bytes", ex.took, html.len());
    ops.stop().await;
}

/// A region the table in force has evacuated (no row sends it traffic) looks the emptiest,
/// yet an evacuation of another region must not plan any traffic into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evacuation_plans_nothing_into_a_region_already_evacuated() {
    let _turn = SERIAL.lock().await;
    let ops = Ops::start().await;
    let fleet_file = ops.roomy_fleet_file();
    let fleet = path_str(&fleet_file);
    let c_out = format!(
        r#"{{"version": 2, "weights": {{
            "{A}": {{"{A}": 90, "{B}": 10}},
            "{B}": {{"{B}": 100}},
            "{C}": {{"{A}": 50, "{B}": 50}}
        }}}}"#
    );
    let path = ops.dir.path().join("c-out.json");
    std::fs::write(&path, c_out).expect("table");
    let pushed = flowgate(&["push", "--fleet", fleet, path_str(&path)], Duration::from_secs(30)).await;
    assert_eq!(pushed.code, Some(0), "{}", pushed.stderr);

    let args = ["evacuate", A, "--fleet", fleet, "--steps", "3", "--interval", "1s", "--dry-run"];
    let said = flowgate(&args, Duration::from_secs(30)).await;
    assert_eq!(said.code, Some(0), "{}", said.stderr);
    assert!(said.stderr.contains(&format!("{C} evacuated in the table in force")), "{}", said.stderr);
    let dry = flowgate(&[&args[..], &["--json"]].concat(), Duration::from_secs(30)).await;
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    let doc: Value =
        serde_json::from_str(dry.stdout.lines().next().unwrap_or_default()).expect("the plan as JSON");
    let tables = doc["plan"].as_array().expect("plan tables");
    assert_eq!(tables.len(), 3, "{doc}");
    for t in tables {
        for src in [A, B, C] {
            assert_eq!(weight(t, src, C), 0, "no row may send {C} anything: {t}");
        }
    }
    // A's traffic all goes to B by the last step.
    let last = &tables[2];
    assert_eq!(weight(last, A, A), 0, "{last}");
    assert!(weight(last, A, B) > 0, "{last}");
    ops.stop().await;
}

/// An exercise on a fleet no client uses moves every table through its gates, but proves
/// nothing about clients: the report and the command's last line say so, never "pass".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exercise_on_an_idle_fleet_says_it_saw_no_traffic() {
    let _turn = SERIAL.lock().await;
    let ops = Ops::start().await;
    let fleet_file = ops.roomy_fleet_file();
    let report = ops.dir.path().join("idle.html");
    let args = ["exercise", A, "--fleet", path_str(&fleet_file), "--hold", "1s", "--steps", "2"];
    let more = ["--interval", "1s", "--yes", "--report", path_str(&report)];
    let ex = flowgate(&[&args[..], &more[..]].concat(), Duration::from_secs(60)).await;
    assert_eq!(ex.code, Some(0), "every move went through its gates:\n{}", ex.stderr);
    let last = ex.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.contains("no traffic"), "the last line says no traffic was seen: {last}\n{}", ex.stderr);
    let html = std::fs::read_to_string(&report).expect("the report was written");
    assert!(html.contains("no traffic: the exercise saw no client requests"), "the report's verdict");
    assert!(!html.contains("pass: evacuated"), "an idle fleet's exercise is never a pass");
    ops.stop().await;
}
