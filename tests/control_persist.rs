//! Persistence and reloads with the real binary: a table survives SIGKILL right after its
//! 200 (the last of a burst too, and a drain leaves it), a push that cannot be written is
//! refused and changes nothing, a corrupt state file is moved aside and the config's table
//! used, SIGHUP swaps the endpoints under load and refuses a broken file.
//!
//! The binary reads its admin token from `FLOWGATE_ADMIN_TOKEN` (the default `token_env`),
//! given to the child only. Where a test needs a second region, `us-west-2` is an
//! in-process proxy whose answers say `x-flowgate-region: us-west-2`.

mod support;

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::admin::{get_json, metric_sum, metrics, put};
use support::origin::{self, Origin};
use support::wait::wait_until;
use support::{ProxyConfig, ProxyProcess, TestProxy, h1_client};

const A: &str = "us-east-1";
const B: &str = "us-west-2";
const TOKEN: &str = "s3cret-admin-token-4b1d";

/// Starts the binary with the admin token in its environment (a blocking wait for its
/// `ready` line, so off the runtime's threads).
fn spawn(text: &str) -> ProxyProcess {
    tokio::task::block_in_place(|| ProxyProcess::spawn_env(text, &[("FLOWGATE_ADMIN_TOKEN", TOKEN)]))
}

/// `us-west-2`, in process, in front of its own origin.
async fn west() -> (TestProxy, Origin) {
    let o = origin::start().await;
    let text = ProxyConfig::new(B, o.addr).text();
    assert!(text.contains(B));
    (TestProxy::start(&text).await, o)
}

/// The binary's config: `us-east-1` in front of `origin`, `us-west-2` as a peer when
/// given, the table file and state folder when given.
fn config(origin: &str, peer: Option<SocketAddr>, table: Option<&Path>, state_dir: Option<&Path>) -> String {
    let mut cfg = ProxyConfig::new(A, origin).health("200ms", "100ms");
    if let Some(t) = table {
        cfg = cfg.table(t);
    }
    if let Some(d) = state_dir {
        cfg = cfg.state_dir(d);
    }
    if let Some(p) = peer {
        cfg = cfg.peer(B, &[p]);
    }
    cfg.text()
}

/// `n` GETs of `/`: which region answered each (all must be 200).
async fn regions(public: SocketAddr, n: usize) -> Vec<String> {
    let client = h1_client();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let req = http::Request::get(format!("http://{public}/")).body(Full::new(Bytes::new())).expect("req");
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .expect("answer in time")
            .expect("answer");
        assert_eq!(resp.status(), 200);
        let region =
            resp.headers().get("x-flowgate-region").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
        resp.into_body().collect().await.expect("body");
        out.push(region);
    }
    out
}

/// Asserts that every one of `n` requests is answered by `region`.
async fn all_from(public: SocketAddr, n: usize, region: &str, what: &str) {
    let got = regions(public, n).await;
    assert!(got.iter().all(|r| r == region), "{what}: expected every answer from {region}, got {got:?}");
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// kill -9 right after the 200 of a push; the restarted process serves the
/// pushed table (its version, and traffic goes where it says). A config table newer than
/// the persisted one wins at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pushed_table_survives_sigkill_right_after_its_200() {
    let (west, _ob) = west().await;
    let oa = origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (table_path, state) = (dir.path().join("table.json"), dir.path().join("state"));
    std::fs::write(&table_path, json!({"version": 1, "weights": {A: {A: 100}}}).to_string()).expect("table");
    let text = config(&oa.addr.to_string(), west.addrs.peer, Some(&table_path), Some(&state));

    let mut p = spawn(&text);
    all_from(p.public, 10, A, "version 1 keeps everything home").await;
    // The token comes from the environment: a wrong one is refused.
    assert_eq!(put(p.admin, "not-the-token", &json!({"version": 2})).await.0, 401);
    let pushed = json!({"version": 2, "weights": {A: {B: 100}}, "note": "all west"});
    let (status, answer) = put(p.admin, TOKEN, &pushed).await;
    p.signal("KILL");
    assert_eq!(status, 200, "{answer}");
    let exit = p.wait_exit(Duration::from_secs(10)).expect("killed");
    assert_eq!(exit.signal(), Some(9), "died of SIGKILL, no graceful exit: {exit:?}");
    drop(p);

    let names: Vec<String> = std::fs::read_dir(&state)
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["table.json"], "the state file, and no temporary one");

    let p = spawn(&text);
    let t = get_json(p.admin, "/v1/table").await;
    assert_eq!((t["version"].as_u64(), t["note"].as_str()), (Some(2), Some("all west")), "{t}");
    let m = metrics(p.admin).await;
    assert_eq!(metric_sum(&m, "flowgate_table_version", &[]), 2.0);
    let h = get_json(p.admin, "/v1/table/history").await;
    assert!(h[0]["who"].as_str().is_some_and(|w| w.contains("state_dir")), "start-up names its source: {h}");
    assert!(
        p.startup_log.iter().any(|l| l.contains("traffic table at start") && l.contains("version=2")),
        "the start-up log says which table: {:?}",
        p.startup_log
    );
    all_from(p.public, 20, B, "the persisted table sends everything west").await;
    drop(p);

    // A config table newer than the persisted one wins.
    std::fs::write(
        &table_path,
        json!({"version": 5, "weights": {A: {A: 100}}, "note": "config"}).to_string(),
    )
    .expect("table");
    let p = spawn(&text);
    assert_eq!(get_json(p.admin, "/v1/table").await["version"], 5);
    all_from(p.public, 10, A, "the newer config table keeps everything home").await;
    drop(p);
    west.stop().await;
}

/// A state file that cannot be used (cut short; valid JSON naming a region
/// this proxy does not know) is moved aside with a log line saying so, and the proxy
/// starts on the config's table (which sends everything west, unlike no table at all);
/// the next push writes a good state file again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_state_file_is_moved_aside_and_the_config_table_used() {
    let (west, _ob) = west().await;
    let oa = origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (table_path, state) = (dir.path().join("table.json"), dir.path().join("state"));
    std::fs::write(&table_path, json!({"version": 1, "weights": {A: {B: 100}}}).to_string()).expect("table");
    std::fs::create_dir(&state).expect("state dir");
    let text = config(&oa.addr.to_string(), west.addrs.peer, Some(&table_path), Some(&state));

    let bad_files: [&[u8]; 2] = [
        b"{\"version\": 9, \"weights\": {\"us-east-1\": {\"us-e",
        b"{\"version\": 9, \"weights\": {\"us-east-1\": {\"mars-1\": 100}}}",
    ];
    for (i, bad) in bad_files.iter().enumerate() {
        for e in std::fs::read_dir(&state).expect("state dir").flatten() {
            std::fs::remove_file(e.path()).expect("clean state dir");
        }
        let state_file = state.join("table.json");
        std::fs::write(&state_file, bad).expect("corrupt state");
        let p = spawn(&text);
        let line = p.startup_log.iter().find(|l| l.contains("moved aside")).unwrap_or_else(|| {
            panic!("case {i}: no log line about moving the state file aside: {:?}", p.startup_log)
        });
        assert!(
            line.contains(&state_file.display().to_string()),
            "case {i}: the line names the file: {line}"
        );
        assert!(line.contains("config"), "case {i}: the line says what it starts on: {line}");
        let t = get_json(p.admin, "/v1/table").await;
        assert_eq!(t["version"], 1, "case {i}: the config's table: {t}");
        all_from(p.public, 10, B, &format!("case {i}: the config's table sends everything west")).await;

        let files: Vec<_> =
            std::fs::read_dir(&state).expect("state dir").flatten().map(|e| e.path()).collect();
        assert_eq!(files.len(), 1, "case {i}: {files:?}");
        let moved = &files[0];
        assert!(
            moved.file_name().is_some_and(|n| n.to_string_lossy().starts_with("table.json.corrupt-")),
            "{moved:?}"
        );
        assert_eq!(std::fs::read(moved).expect("moved file"), *bad, "case {i}: kept as it was, for a look");

        let (s, v) = put(p.admin, TOKEN, &json!({"version": 3, "weights": {A: {A: 1}}})).await;
        assert_eq!(s, 200, "{v}");
        let saved: Value =
            serde_json::from_slice(&std::fs::read(&state_file).expect("new state")).expect("json");
        assert_eq!(saved["version"], 3, "case {i}");
        all_from(p.public, 10, A, "the pushed table").await;
    }
    west.stop().await;
}

/// Clients send all along while SIGHUP swaps the origin's endpoint list:
/// traffic moves to the new endpoint (the old one gets nothing more, and then dies
/// without anyone noticing), the table in force stays, no request fails. Then SIGHUP with
/// broken files (not TOML; a route to an unknown origin; another region) changes nothing
/// and the log says it refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_swaps_endpoints_under_load_and_refuses_a_broken_config() {
    let (o1, o2) = (origin::start().await, origin::start().await);
    let text = config(&o1.addr.to_string(), None, None, None);
    let p = spawn(&text);
    let config_path = p.dir.path().join("flowgate.toml");
    assert_eq!(std::fs::read_to_string(&config_path).expect("config"), text);

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (url, stop, answered) = (format!("http://{}/", p.public), stop.clone(), answered.clone());
        clients.spawn(async move {
            let client = h1_client();
            let mut failures = Vec::new();
            for _ in 0..200_000 {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let req = http::Request::get(&url).body(Full::new(Bytes::new())).expect("req");
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(resp)) => {
                        let status = resp.status();
                        match resp.into_body().collect().await {
                            Ok(_) if status == 200 => {
                                answered.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(_) => failures.push(format!("status {status}")),
                            Err(e) => failures.push(format!("body: {e}")),
                        }
                    }
                    Ok(Err(e)) => failures.push(format!("client: {e}")),
                    Err(_) => failures.push("no answer in 10 s".to_owned()),
                }
            }
            failures
        });
    }
    let ten_s = Duration::from_secs(10);
    wait_until("traffic at the first endpoint", ten_s, || async { o1.hits.load(Ordering::SeqCst) >= 100 })
        .await;
    let pushed = json!({"version": 4, "weights": {A: {A: 1}}, "note": "before the reload"});
    assert_eq!(put(p.admin, TOKEN, &pushed).await.0, 200);

    // The new endpoint list.
    write_atomically(&config_path, &text.replace(&o1.addr.to_string(), &o2.addr.to_string()));
    let before = answered.load(Ordering::SeqCst);
    p.signal("HUP");
    p.wait_log(&["config reloaded"], Duration::from_secs(10)).await;
    wait_until("traffic at the new endpoint", ten_s, || async { o2.hits.load(Ordering::SeqCst) >= 100 })
        .await;
    // Requests that began before the swap may still be finishing on the old endpoint.
    wait_until("the old endpoint's last requests to finish", ten_s, || async {
        o1.active.load(Ordering::SeqCst) == 0
    })
    .await;
    let (old, new) = (o1.hits.load(Ordering::SeqCst), o2.hits.load(Ordering::SeqCst));
    // A window in which the old endpoint must get nothing: the absence is the point.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(o1.hits.load(Ordering::SeqCst), old, "the old endpoint gets nothing after the reload");
    assert!(o2.hits.load(Ordering::SeqCst) > new, "the new one gets it all");
    o1.kill();
    // Clients go on after the old endpoint died (a failure would show at the end).
    let at_kill = answered.load(Ordering::SeqCst);
    wait_until("clients answered after the old endpoint died", ten_s, || async {
        answered.load(Ordering::SeqCst) > at_kill + 100
    })
    .await;
    assert!(answered.load(Ordering::SeqCst) > before + 100, "clients kept being answered across the reload");

    let t = get_json(p.admin, "/v1/table").await;
    assert_eq!((t["version"].as_u64(), t["note"].as_str()), (Some(4), Some("before the reload")), "{t}");
    let history = get_json(p.admin, "/v1/table/history").await;
    assert!(history[0]["who"].as_str().is_some_and(|w| w.contains("reload")), "{history}");

    // Broken files: each refused, logged, and nothing changes.
    let good = std::fs::read_to_string(&config_path).expect("config");
    let broken = [
        ("not TOML", "region = \"us-east-1\"\n[listen\npublic = \n".to_owned()),
        ("a route to an unknown origin", good.replace("origin = \"api\"", "origin = \"video\"")),
        ("another region", good.replace("region = \"us-east-1\"", "region = \"eu-west-1\"")),
    ];
    for (what, bad) in &broken {
        assert_ne!(bad, &good, "{what}: the file differs");
        write_atomically(&config_path, bad);
        let hits = o2.hits.load(Ordering::SeqCst);
        p.signal("HUP");
        let line = p.wait_log(&["SIGHUP", "refused"], Duration::from_secs(10)).await;
        println!("{what}: {line}");
        wait_until(&format!("{what}: traffic at the same endpoint"), ten_s, || async {
            o2.hits.load(Ordering::SeqCst) > hits
        })
        .await;
        assert!(o2.hits.load(Ordering::SeqCst) > hits, "{what}: the same endpoint keeps serving");
        assert_eq!(get_json(p.admin, "/v1/table").await["version"], 4, "{what}");
        assert_eq!(get_json(p.admin, "/v1/table/history").await, history, "{what}: no reload recorded");
    }
    let status = get_json(p.admin, "/v1/status").await;
    assert_eq!(status["region"], A, "{status}");

    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    while let Some(r) = clients.join_next().await {
        failures.extend(r.expect("client"));
    }
    let total = answered.load(Ordering::SeqCst);
    println!(
        "{total} requests answered across one reload and {} refused ones; {} failed",
        broken.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// The names in the state folder, sorted.
fn state_files(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state)
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The version in the state file.
fn version_on_disk(state: &Path) -> u64 {
    let saved: Value =
        serde_json::from_slice(&std::fs::read(state.join("table.json")).expect("state file")).expect("json");
    saved["version"].as_u64().expect("version")
}

/// Pushes versions `from..=to` one after the other, each acknowledged with a 200.
async fn burst(admin: SocketAddr, from: u64, to: u64) {
    for v in from..=to {
        let (s, answer) = put(admin, TOKEN, &json!({"version": v, "weights": {A: {A: 1 + v % 7}}})).await;
        assert_eq!(s, 200, "version {v}: {answer}");
    }
}

/// The fsync is coalesced in the background, but every acknowledged push is in the state
/// file already: a burst of 200 pushes then SIGKILL right after the last 200 finds the last
/// one there, whole, with no temporary file; a burst then a drain (SIGTERM) likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_push_of_a_burst_is_on_disk_after_sigkill_and_after_a_drain() {
    let oa = origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let text = config(&oa.addr.to_string(), None, None, Some(&state));

    let mut p = spawn(&text);
    burst(p.admin, 1, 200).await;
    p.signal("KILL");
    let exit = p.wait_exit(Duration::from_secs(10)).expect("killed");
    assert_eq!(exit.signal(), Some(9), "{exit:?}");
    drop(p);
    assert_eq!(state_files(&state), ["table.json"], "the state file, and no temporary one");
    assert_eq!(version_on_disk(&state), 200, "the last acknowledged push");

    let mut p = spawn(&text);
    assert_eq!(get_json(p.admin, "/v1/table").await["version"], 200);
    burst(p.admin, 201, 250).await;
    p.signal("TERM");
    let exit = p.wait_exit(Duration::from_secs(20)).expect("drained");
    assert!(exit.success(), "a drain exits cleanly: {exit:?}");
    drop(p);
    assert_eq!(state_files(&state), ["table.json"]);
    assert_eq!(version_on_disk(&state), 250);
}

/// A push whose state file cannot be replaced (here a folder stands where the file goes)
/// is refused with a 500 naming the file, and changes nothing: the version in force, the
/// history, the state folder; once the disk is fixed the same push is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_that_cannot_be_written_is_refused_and_changes_nothing() {
    let oa = origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let text = config(&oa.addr.to_string(), None, None, Some(&state));
    let p = spawn(&text);
    burst(p.admin, 2, 2).await;
    let history = get_json(p.admin, "/v1/table/history").await;

    std::fs::remove_file(state.join("table.json")).expect("remove the state file");
    std::fs::create_dir_all(state.join("table.json").join("in-the-way")).expect("a folder in its place");
    let pushed = json!({"version": 3, "weights": {A: {A: 5}}});
    let (s, answer) = put(p.admin, TOKEN, &pushed).await;
    assert_eq!(s, 500, "{answer}");
    assert!(answer.to_string().contains("table.json"), "the answer names the file: {answer}");
    assert_eq!(get_json(p.admin, "/v1/table").await["version"], 2, "nothing changed");
    assert_eq!(get_json(p.admin, "/v1/table/history").await, history, "no apply recorded");
    let m = metrics(p.admin).await;
    assert_eq!(metric_sum(&m, "flowgate_table_rejected_total", &["reason=\"internal\""]), 1.0);
    assert_eq!(state_files(&state), ["table.json"], "no temporary file left behind");

    std::fs::remove_dir_all(state.join("table.json")).expect("clear the way");
    let (s, answer) = put(p.admin, TOKEN, &pushed).await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(version_on_disk(&state), 3);
}
