//! The control plane, in process: tables pushed through `PUT /v1/table` while clients
//! keep sending, every refusal rule, the version rules, authentication, the Prometheus
//! exposition, history and status.
//!
//! Every test runs two real proxies on loopback: `us-east-1` (the one under test, with a
//! token file, and `us-west-2` as a peer reached at its proxies, optionally through a
//! fake load balancer) and `us-west-2`, each in front of its own origin. Which region
//! served a request is read from `x-flowgate-region`, so a table's effect on traffic is
//! observed, not assumed.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::admin::{HttpClient, get_json, get_text, metric_sum, metrics, push, put};
use support::fleet::FakeLb;
use support::origin::{self, Origin};
use support::wait::{wait_for, wait_until};
use support::{ProxyConfig, TestProxy, exchange, h1_client, h2c_client, region_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const A: &str = "us-east-1";
const B: &str = "us-west-2";
/// Tokens of the token file every `us-east-1` proxy here reads.
const ALICE: &str = "alice-7d1f0c2b9e";
const BOT: &str = "fleet-bot-3a9e55c1";
/// An environment variable nobody sets: tokens come from the file only (tests share one
/// process, so they never touch the environment).
const UNSET_ENV: &str = "FLOWGATE_CONTROL_TEST_TOKEN_NEVER_SET";

/// What a pair of regions is built with.
struct PairSpec<'a> {
    /// Initial table of `us-east-1` (a file named by `table =`), if any.
    table: Option<&'a str>,
    /// Lines added to `us-east-1`'s `[admin]` section.
    admin_extra: &'a str,
    /// TOML tables appended to `us-east-1`'s config.
    extra: &'a str,
    /// Put a fake load balancer in front of `us-west-2`'s peer listener.
    lb: bool,
    max_concurrency: usize,
    /// A `state_dir` for `us-east-1`.
    state_dir: bool,
}

impl Default for PairSpec<'_> {
    fn default() -> Self {
        PairSpec {
            table: None,
            admin_extra: "",
            extra: "",
            lb: false,
            max_concurrency: 2000,
            state_dir: false,
        }
    }
}

struct Pair {
    a: TestProxy,
    b: TestProxy,
    oa: Origin,
    ob: Origin,
    lb: Option<FakeLb>,
    dir: tempfile::TempDir,
}

impl Pair {
    fn admin(&self) -> SocketAddr {
        self.a.addrs.admin
    }

    fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
    }
}

async fn pair(spec: PairSpec<'_>) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    let (oa, ob) = (origin::start().await, origin::start().await);
    let token_env = format!("token_env = \"{UNSET_ENV}\"");
    let b = ProxyConfig::new(B, ob.addr).admin(&token_env).start_in(dir.path(), "b").await;
    let b_peer = b.addrs.peer.expect("b peer listener");
    let lb = if spec.lb { Some(FakeLb::start(b_peer).await) } else { None };

    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("# operators\nalice {ALICE}\nfleet-bot {BOT}\n")).expect("tokens");
    let lb_line = lb.as_ref().map(|l| format!("lb = [\"{}\"]", l.addr)).unwrap_or_default();
    let mut a = ProxyConfig::new(A, oa.addr)
        .admin(&token_env)
        .token_file(&tokens)
        .origin(&format!("max_concurrency = {}", spec.max_concurrency))
        .peer_with(B, &[b_peer], &lb_line)
        .health("200ms", "100ms")
        .extra(spec.extra);
    if let Some(t) = spec.table {
        let p = dir.path().join("table.json");
        std::fs::write(&p, t).expect("write table");
        a = a.table(&p);
    }
    if spec.state_dir {
        a = a.state_dir(&dir.path().join("state"));
    }
    if !spec.admin_extra.is_empty() {
        a = a.admin(spec.admin_extra);
    }
    let a = a.start_in(dir.path(), "a").await;
    Pair { a, b, oa, ob, lb, dir }
}

/// One request through `client`; `Ok((status, region))` or what went wrong.
async fn one(client: &HttpClient, url: &str) -> Result<(u16, String), String> {
    let req = http::Request::get(url).body(Full::new(Bytes::new())).expect("request");
    let (status, headers, _) = exchange(client, req).await?;
    let (status, region) = (status.as_u16(), region_of(&headers));
    let err = headers.get("x-flowgate-error").and_then(|v| v.to_str().ok()).map(str::to_owned);
    match err {
        Some(e) if status >= 500 => Err(format!("{status} from the proxy: {e}")),
        _ => Ok((status, region)),
    }
}

/// `n` sequential GETs of `/` at `proxy`: how many each region served. Panics on any
/// answer other than 200.
async fn split(proxy: &TestProxy, clients: usize, per_client: usize) -> (usize, usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let url = proxy.url("/");
        tasks.spawn(async move {
            let client = h1_client();
            let mut out = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                out.push(one(&client, &url).await);
            }
            out
        });
    }
    let (mut a, mut b) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        for r in r.expect("client task") {
            match r {
                Ok((200, region)) if region == A => a += 1,
                Ok((200, region)) if region == B => b += 1,
                other => panic!("unexpected answer: {other:?}"),
            }
        }
    }
    (a, b)
}

/// `PUT /v1/table`: status, the JSON answer (`Value::Null` when it is not JSON) and
/// the headers.
async fn put_raw(
    admin: SocketAddr,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> (u16, Value, http::HeaderMap) {
    push(admin).token_opt(token).content_type(content_type).send(body).await
}

/// A row for `us-east-1` giving `a` to itself and `b` to `us-west-2`.
fn table(version: u64, a: u64, b: u64) -> Value {
    json!({"version": version, "weights": {A: {A: a, B: b}}})
}

/// 8 clients (4 HTTP/1.1, 4 h2c) send requests without pause while 1,000
/// tables alternating 90/10 and 10/90 are pushed, each a new version and persisted: no
/// request fails, and after the last push the split is the last table's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_swaps_under_load_fail_nothing_and_the_last_table_rules() {
    const PUSHES: u64 = 1000;
    const CLIENTS: usize = 8;
    let p = pair(PairSpec { state_dir: true, ..Default::default() }).await;
    // Warm both paths first.
    let (a, b) = split(&p.a, 1, 5).await;
    assert_eq!((a, b), (5, 0), "no table: everything local");

    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(40);
    let pushing = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let (url, stop, pushing) = (p.a.url("/"), stop.clone(), pushing.clone());
        clients.spawn(async move {
            let client = if i % 2 == 0 { h1_client() } else { h2c_client() };
            let (mut ok, mut during, mut a, mut b) = (0usize, 0usize, 0usize, 0usize);
            let mut failures: Vec<String> = Vec::new();
            // Bounded in count and time.
            for _ in 0..200_000 {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let in_swaps = pushing.load(Ordering::SeqCst);
                match one(&client, &url).await {
                    Ok((200, region)) => {
                        ok += 1;
                        if in_swaps && pushing.load(Ordering::SeqCst) {
                            during += 1;
                        }
                        match region.as_str() {
                            A => a += 1,
                            B => b += 1,
                            other => failures.push(format!("answer from unknown region {other}")),
                        }
                    }
                    Ok((s, region)) => failures.push(format!("status {s} from {region}")),
                    Err(e) => failures.push(e),
                }
            }
            (ok, during, a, b, failures)
        });
    }
    // Let the clients get going before the first push.
    let oa_hits = p.oa.hits.clone();
    wait_until("the clients' first answers", Duration::from_secs(10), || async {
        oa_hits.load(Ordering::SeqCst) >= 5 + CLIENTS
    })
    .await;
    let admin = p.admin();
    let pusher = tokio::spawn(async move {
        let client = h1_client();
        pushing.store(true, Ordering::SeqCst);
        let started = Instant::now();
        for v in 1..=PUSHES {
            let t = if v % 2 == 1 { table(v, 90, 10) } else { table(v, 10, 90) };
            let req = http::Request::put(format!("http://{admin}/v1/table"))
                .header("authorization", format!("Bearer {BOT}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(t.to_string())))
                .expect("request");
            let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
                .await
                .expect("push answered in time")
                .expect("push answered");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(status, 200, "push of version {v}: {}", String::from_utf8_lossy(&body));
            let answer: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(answer["applied"], true, "version {v}: {answer}");
            assert_eq!(answer["version"], v);
        }
        pushing.store(false, Ordering::SeqCst);
        started.elapsed()
    });
    let push_time = pusher.await.expect("pusher");
    stop.store(true, Ordering::SeqCst);
    let (mut total, mut during, mut to_a, mut to_b, mut failures) = (0, 0, 0, 0, Vec::new());
    while let Some(r) = clients.join_next().await {
        let (ok, d, a, b, f) = r.expect("client task");
        total += ok;
        during += d;
        to_a += a;
        to_b += b;
        failures.extend(f);
    }
    println!(
        "{PUSHES} pushes in {push_time:?}; {total} requests answered 200 ({during} entirely during the \
         pushes), {to_a} by {A}, {to_b} by {B}; {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        during >= 500,
        "only {during} requests ran during the pushes: the test did not test swaps under load"
    );
    assert!(to_a > 0 && to_b > 0, "both tables were in force at some point: {to_a} / {to_b}");

    // The table in force: version 1000, 10/90.
    let t = get_json(admin, "/v1/table").await;
    assert_eq!(t["version"], PUSHES);
    assert_eq!(t["weights"][A], json!({A: 10, B: 90}));
    let m = metrics(admin).await;
    assert_eq!(metric_sum(&m, "flowgate_table_version", &[]), PUSHES as f64);
    assert_eq!(metric_sum(&m, "flowgate_table_applied_total", &[]), PUSHES as f64);
    assert_eq!(metric_sum(&m, "flowgate_table_rejected_total", &[]), 0.0);
    // Persisted before each 200: the file holds the last one.
    let state: Value =
        serde_json::from_slice(&std::fs::read(p.state_dir().join("table.json")).expect("state file"))
            .expect("state json");
    assert_eq!(state["version"], PUSHES);
    let leftovers: Vec<_> = std::fs::read_dir(p.state_dir()).expect("state dir").flatten().collect();
    assert_eq!(leftovers.len(), 1, "only table.json in the state folder: {leftovers:?}");

    // After the last push the split follows 10/90 (2,000 requests: ±4 points is > 6 sigma).
    let (hits_a, hits_b) = (p.oa.hits.load(Ordering::SeqCst), p.ob.hits.load(Ordering::SeqCst));
    let (a, b) = split(&p.a, CLIENTS, 250).await;
    let share_b = b as f64 / (a + b) as f64;
    println!("after the last push: {a} by {A}, {b} by {B} ({:.1} % to {B})", share_b * 100.0);
    assert!((0.86..=0.94).contains(&share_b), "share of {B} {share_b:.3}, table says 0.90");
    assert_eq!(p.oa.hits.load(Ordering::SeqCst) - hits_a, a, "origin A saw what the responses claim");
    assert_eq!(p.ob.hits.load(Ordering::SeqCst) - hits_b, b, "origin B saw what the responses claim");

    // History keeps the last 50, newest first.
    let h = get_json(admin, "/v1/table/history").await;
    let versions: Vec<u64> =
        h.as_array().expect("array").iter().map(|e| e["version"].as_u64().expect("v")).collect();
    let expected: Vec<u64> = (PUSHES - 49..=PUSHES).rev().collect();
    assert_eq!(versions, expected);
    p.stop().await;
}

/// A request under way finishes on the table it started with; the next one uses the new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_under_way_finish_on_their_table() {
    let p = pair(PairSpec { table: Some(&table(1, 0, 100).to_string()), ..Default::default() }).await;
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = p.a.url("/slow/700");
        slow.spawn(async move { one(&h1_client(), &url).await });
    }
    // Let them reach the peer before the swap.
    wait_until(&format!("the slow requests to reach {B}"), Duration::from_secs(5), || async {
        p.ob.active.load(Ordering::SeqCst) >= 4
    })
    .await;
    let (s, v) = put(p.admin(), ALICE, &table(2, 100, 0)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(split(&p.a, 1, 10).await, (10, 0), "requests after the 200 use the new table");
    while let Some(r) = slow.join_next().await {
        assert_eq!(r.expect("task"), Ok((200, B.to_owned())), "started on version 1, finished there");
    }
    p.stop().await;
}

/// The table every refusal test starts with: all of `us-east-1`'s traffic to `us-west-2`.
fn refusal_start() -> String {
    table(1, 0, 100).to_string()
}

/// Pushes `body` (as alice) and checks the refusal: `status`, a JSON `error`, `field` when
/// given, the `reason` counted; then that nothing changed: the table served by `GET`, the
/// `table_version` gauge, the applied counter and where traffic goes (all to `us-west-2`).
async fn assert_refused(
    content_type: Option<&str>,
    body: Bytes,
    status: u16,
    field: Option<&str>,
    reason: &str,
) {
    let p = pair(PairSpec {
        table: Some(&refusal_start()),
        admin_extra: "max_table_bytes = 4096\n",
        ..Default::default()
    })
    .await;
    let admin = p.admin();
    assert_eq!(split(&p.a, 1, 5).await, (0, 5), "version 1 sends everything to {B}");
    let before = get_json(admin, "/v1/table").await;
    let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();

    let (got, answer, _) = put_raw(admin, Some(ALICE), content_type, body).await;
    assert_eq!(got, status, "{shown}: answer {answer}");
    let error = answer["error"].as_str().unwrap_or_else(|| panic!("{shown}: no \"error\" in {answer}"));
    assert!(!error.is_empty(), "{shown}: empty error");
    if let Some(field) = field {
        assert_eq!(answer["field"].as_str(), Some(field), "{shown}: answer {answer}");
    }

    assert_eq!(get_json(admin, "/v1/table").await, before, "{shown}: GET /v1/table changed");
    let m = metrics(admin).await;
    assert_eq!(metric_sum(&m, "flowgate_table_version", &[]), 1.0, "{shown}: table_version moved");
    assert_eq!(metric_sum(&m, "flowgate_table_applied_total", &[]), 0.0, "{shown}");
    let label = format!("reason=\"{reason}\"");
    assert_eq!(
        metric_sum(&m, "flowgate_table_rejected_total", &[&label]),
        1.0,
        "{shown}: counted as {reason}"
    );
    assert_eq!(metric_sum(&m, "flowgate_table_rejected_total", &[]), 1.0, "{shown}: counted once");
    assert_eq!(split(&p.a, 2, 10).await, (0, 20), "{shown}: traffic changed after a refused table");
    let history = get_json(admin, "/v1/table/history").await;
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{shown}: a refused table is not history");
    p.stop().await;
}

/// A 400 for a JSON table (every body below would move all traffic home if applied).
async fn assert_invalid(body: &str, field: &str) {
    assert_refused(Some("application/json"), Bytes::from(body.to_owned()), 400, Some(field), "invalid").await;
}

macro_rules! invalid_table {
    ($($name:ident: $body:expr => $field:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            assert_invalid($body, $field).await;
        }
    )*};
}

// One test per rule, each naming the JSON path at fault.
invalid_table! {
    refuses_a_negative_weight:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 100, "us-west-2": -1}}}"#
        => "weights.us-east-1.us-west-2";
    refuses_a_non_integer_weight:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 100, "us-west-2": 0.5}}}"#
        => "weights.us-east-1.us-west-2";
    refuses_a_weight_given_as_a_string:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": "100"}}}"#
        => "weights.us-east-1.us-east-1";
    refuses_a_row_summing_to_zero:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 0, "us-west-2": 0}}}"#
        => "weights.us-east-1";
    refuses_an_empty_row:
        r#"{"version": 2, "weights": {"us-east-1": {}}}"#
        => "weights.us-east-1";
    refuses_an_unknown_source_region:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 1}, "mars-1": {"us-east-1": 1}}}"#
        => "weights.mars-1";
    refuses_an_unknown_target_region:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 1, "mars-1": 1}}}"#
        => "weights.us-east-1.mars-1";
    refuses_an_unknown_region_in_an_origin_row:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 1}}, "origins": {"api": {"us-east-1": {"mars-1": 1}}}}"#
        => "origins.api.us-east-1.mars-1";
    refuses_an_unknown_origin:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 1}}, "origins": {"video": {"us-east-1": {"us-east-1": 1}}}}"#
        => "origins.video";
    refuses_a_route_to_an_unknown_origin:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 1}}, "routes": [{"host": "*", "path_prefix": "/", "origin": "api"}, {"host": "*", "path_prefix": "/v", "origin": "video"}]}"#
        => "routes[1].origin";
    refuses_an_unknown_field:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 1}}, "wieghts": {}}"#
        => "wieghts";
    refuses_an_unknown_field_in_a_route:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 1}}, "routes": [{"origin": "api", "prefix": "/"}]}"#
        => "routes[0].prefix";
    refuses_version_zero:
        r#"{"version": 0, "weights": {"us-east-1": {"us-east-1": 1}}}"#
        => "version";
    refuses_a_negative_version:
        r#"{"version": -2, "weights": {"us-east-1": {"us-east-1": 1}}}"#
        => "version";
    refuses_a_fractional_version:
        r#"{"version": 2.5, "weights": {"us-east-1": {"us-east-1": 1}}}"#
        => "version";
    refuses_a_version_given_as_a_string:
        r#"{"version": "2", "weights": {"us-east-1": {"us-east-1": 1}}}"#
        => "version";
    refuses_a_table_without_a_version:
        r#"{"weights": {"us-east-1": {"us-east-1": 1}}}"#
        => "version";
    refuses_a_bad_peer_mode:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 1}}, "peer_modes": {"us-west-2": "sideways"}}"#
        => "peer_modes.us-west-2";
    refuses_a_peer_mode_for_an_unknown_region:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 1}}, "peer_modes": {"mars-1": "direct"}}"#
        => "peer_modes.mars-1";
    refuses_a_max_shift_outside_0_to_1:
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 1}}, "max_shift": 1.5}"#
        => "max_shift";
    refuses_a_body_that_is_not_json:
        "version: 2\nweights: everything home\n"
        => "";
    // serde alone would read `[2]` as the fields in order: version 2, no rows.
    refuses_a_json_array_for_a_table:
        r#"[2]"#
        => "";
}

/// `max_shift`: moving more than 25 % of a row at once is refused, naming the row; 25 %
/// exactly is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_step_above_max_shift() {
    let body =
        r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 30, "us-west-2": 70}}, "max_shift": 0.25}"#;
    assert_refused(Some("application/json"), Bytes::from(body), 400, Some("weights.us-east-1"), "max_shift")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_shift_lets_a_step_within_it_through() {
    let p = pair(PairSpec { table: Some(&refusal_start()), ..Default::default() }).await;
    let step = json!({"version": 2, "weights": {A: {A: 25, B: 75}}, "max_shift": 0.25, "note": "step 1"});
    let (s, v) = put(p.admin(), ALICE, &step).await;
    assert_eq!(s, 200, "{v}");
    // The next step is judged against version 2, not 1: 25 → 50 is again 0.25.
    let step = json!({"version": 3, "weights": {A: {A: 50, B: 50}}, "max_shift": 0.25});
    assert_eq!(put(p.admin(), ALICE, &step).await.0, 200);
    let step = json!({"version": 4, "weights": {A: {A: 80, B: 20}}, "max_shift": 0.25});
    let (s, v) = put(p.admin(), ALICE, &step).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("weights.us-east-1")), "{v}");
    // Without max_shift the same table goes through: the limit is the pusher's to ask for.
    let step = json!({"version": 4, "weights": {A: {A: 80, B: 20}}});
    assert_eq!(put(p.admin(), ALICE, &step).await.0, 200);
    p.stop().await;
}

/// A body over `admin.max_table_bytes` (4096 here): 413, whether it declares its length
/// or is sent chunked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_oversized_table_with_413() {
    let mut t = table(2, 100, 0);
    t["note"] = json!("x".repeat(5000));
    assert_refused(Some("application/json"), Bytes::from(t.to_string()), 413, None, "too_large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_oversized_chunked_table_with_413() {
    let p = pair(PairSpec {
        table: Some(&refusal_start()),
        admin_extra: "max_table_bytes = 4096\n",
        ..Default::default()
    })
    .await;
    let mut t = table(2, 100, 0);
    t["note"] = json!("x".repeat(5000));
    let body = t.to_string();
    let mut s = tokio::net::TcpStream::connect(p.admin()).await.expect("connect admin");
    let head = format!(
        "PUT /v1/table HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {ALICE}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    // Chunk by chunk, looking for an answer in between: the admin listener answers once
    // the limit is crossed, and stops reading (writing on would only get a reset).
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for chunk in body.as_bytes().chunks(1000) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if s.write_all(&framed).await.is_err() {
            break;
        }
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    if answer.is_empty() {
        let _ = s.write_all(b"0\r\n\r\n").await;
    }
    // Whatever else comes, until the connection closes (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            Ok(_) => break,
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(get_json(p.admin(), "/v1/table").await["version"], 1);
    assert_eq!(split(&p.a, 1, 10).await, (0, 10));
    p.stop().await;
}

/// A body that is not declared as JSON: 415 (no content type at all is taken as JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_non_json_content_type_with_415() {
    let body = Bytes::from(table(2, 100, 0).to_string());
    assert_refused(Some("text/plain"), body, 415, None, "unsupported_media_type").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_form_content_type_with_415() {
    let body = Bytes::from(table(2, 100, 0).to_string());
    assert_refused(Some("application/x-www-form-urlencoded"), body, 415, None, "unsupported_media_type")
        .await;
}

/// An older or equal version with other content is 409 naming the current
/// version; the same version with the same content is a 200 no-op (a note differs: still
/// the same table); nothing of either changes what is in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_versions_conflict_and_identical_repushes_are_no_ops() {
    let p = pair(PairSpec { table: Some(&refusal_start()), ..Default::default() }).await;
    let admin = p.admin();
    let v5 = json!({"version": 5, "weights": {A: {A: 100}}, "note": "home"});
    let (s, v) = put(admin, ALICE, &v5).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["applied"].as_bool(), v["version"].as_u64()), (Some(true), Some(5)), "{v}");
    assert_eq!(split(&p.a, 1, 10).await, (10, 0));

    for (stale, what) in [
        (table(4, 0, 100), "an older version"),
        (table(1, 0, 100), "the start version"),
        (table(5, 0, 100), "the same version with other weights"),
        (
            json!({"version": 5, "weights": {A: {A: 100}}, "peer_modes": {B: "direct"}}),
            "the same version with other modes",
        ),
    ] {
        let (s, v) = put(admin, ALICE, &stale).await;
        assert_eq!(s, 409, "{what}: {v}");
        assert_eq!(v["current_version"], 5, "{what}: the answer names the current version: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {v}");
    }
    for (same, what) in [
        (v5.clone(), "identical"),
        (json!({"version": 5, "weights": {A: {A: 100}}, "note": "again"}), "another note"),
    ] {
        let (s, v) = put(admin, BOT, &same).await;
        assert_eq!(s, 200, "{what}: {v}");
        assert_eq!(v["applied"], false, "{what}: {v}");
        assert_eq!(v["version"], 5, "{what}: {v}");
    }
    let t = get_json(admin, "/v1/table").await;
    assert_eq!((t["version"].as_u64(), t["note"].as_str()), (Some(5), Some("home")), "{t}");
    let m = metrics(admin).await;
    assert_eq!(metric_sum(&m, "flowgate_table_version", &[]), 5.0);
    assert_eq!(metric_sum(&m, "flowgate_table_applied_total", &[]), 1.0, "a no-op is not an apply");
    assert_eq!(metric_sum(&m, "flowgate_table_rejected_total", &["reason=\"stale\""]), 4.0);
    let h = get_json(admin, "/v1/table/history").await;
    assert_eq!(h.as_array().map(Vec::len), Some(2), "start + version 5 only: {h}");
    assert_eq!(split(&p.a, 1, 10).await, (10, 0), "traffic stays on version 5");
    // And a newer version is still applied after all that.
    assert_eq!(put(admin, ALICE, &table(6, 0, 100)).await.0, 200);
    assert_eq!(split(&p.a, 1, 10).await, (0, 10));
    p.stop().await;
}

/// No token, a wrong one, one without the `Bearer` scheme, another scheme:
/// 401 with `WWW-Authenticate`, counted as `unauthorized`, nothing changed. Reading needs
/// no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_without_a_valid_token_are_401_and_counted() {
    let p = pair(PairSpec { table: Some(&refusal_start()), ..Default::default() }).await;
    let admin = p.admin();
    let body = table(2, 100, 0).to_string();
    let cases: [(Option<String>, &str); 5] = [
        (None, "no authorization header"),
        (Some(format!("Bearer {ALICE}x")), "a wrong token"),
        (Some("Bearer ".to_owned()), "an empty token"),
        (Some(ALICE.to_owned()), "the token without the Bearer scheme"),
        (Some(format!("Basic {ALICE}")), "another scheme"),
    ];
    for (auth, what) in &cases {
        let mut req =
            http::Request::put(format!("http://{admin}/v1/table")).header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = h1_client()
            .request(req.body(Full::new(Bytes::from(body.clone()))).expect("req"))
            .await
            .expect("answer");
        assert_eq!(resp.status(), 401, "{what}");
        assert!(
            resp.headers().get("www-authenticate").is_some_and(|v| v.as_bytes().starts_with(b"Bearer")),
            "{what}"
        );
    }
    let m = metrics(admin).await;
    assert_eq!(
        metric_sum(&m, "flowgate_table_rejected_total", &["reason=\"unauthorized\""]),
        cases.len() as f64
    );
    assert_eq!(metric_sum(&m, "flowgate_table_version", &[]), 1.0);
    assert_eq!(get_json(admin, "/v1/table").await["version"], 1, "reading needs no token");
    assert_eq!(split(&p.a, 1, 10).await, (0, 10), "traffic unchanged");
    // The same table with a valid token goes through: the refusals were about the token.
    let (s, v, _) = put_raw(admin, Some(ALICE), Some("application/json"), body).await;
    assert_eq!(s, 200, "{v}");
    p.stop().await;
}

/// A proxy with no token at all refuses every push (its admin listener is on loopback, so
/// it may start); with the admin listener elsewhere it refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_pushes_are_refused_and_a_public_admin_listener_will_not_start() {
    let o = origin::start().await;
    let cfg = ProxyConfig::new(A, o.addr).admin(&format!("token_env = \"{UNSET_ENV}\""));
    let text = cfg.text();
    assert!(text.contains(UNSET_ENV), "the test config has the admin section it expects");
    let proxy = TestProxy::start(&text).await;
    let (s, _, _) =
        put_raw(proxy.addrs.admin, Some(ALICE), Some("application/json"), table(1, 100, 0).to_string()).await;
    assert_eq!(s, 401);
    proxy.stop().await;

    let public = cfg.admin_listen("0.0.0.0:0").text();
    let cfg = flowgate::config::Config::from_toml(std::path::Path::new("/tmp/insecure.toml"), &public)
        .expect("config");
    match flowgate::server::Server::bind(cfg).await {
        Err(e) => assert!(e.to_string().contains("admin.listen"), "{e}"),
        Ok(_) => panic!("a non-loopback admin listener without a token must not start"),
    }
}

/// Which contract family must show which labels, and its type.
const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("flowgate_requests_total", "counter", &["listener", "origin", "target_region", "code"]),
    ("flowgate_request_duration_seconds", "histogram", &["origin", "target_region"]),
    ("flowgate_inflight_requests", "gauge", &[]),
    ("flowgate_table_version", "gauge", &[]),
    ("flowgate_table_applied_total", "counter", &[]),
    ("flowgate_table_rejected_total", "counter", &["reason"]),
    ("flowgate_endpoint_healthy", "gauge", &["kind", "region", "endpoint"]),
    ("flowgate_bypass_active", "gauge", &["region"]),
    ("flowgate_retries_total", "counter", &["reason"]),
    ("flowgate_retry_budget_exhausted_total", "counter", &[]),
    ("flowgate_shed_total", "counter", &["reason"]),
];

/// A strict reader of the text exposition format (version 0.0.4): every line is a
/// `# HELP`, a `# TYPE` or a sample `name{label="value",...} value`; every sample belongs
/// to a family typed before it; names and label names are valid; values are floats.
/// Returns (family → type, samples as (name, labels, value)).
#[allow(clippy::type_complexity)]
fn strict_parse(
    text: &str,
) -> (std::collections::BTreeMap<String, String>, Vec<(String, Vec<(String, String)>, f64)>) {
    fn name_ok(s: &str) -> bool {
        let mut c = s.chars();
        c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    }
    fn float(s: &str) -> Option<f64> {
        match s {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            _ => s.parse().ok(),
        }
    }
    let mut types = std::collections::BTreeMap::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            assert!(name_ok(name), "{at}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, ty) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(name_ok(name) && parts.next().is_none(), "{at}");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty), "{at}");
            assert!(types.insert(name.to_owned(), ty.to_owned()).is_none(), "{at}: family typed twice");
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{at}: unexpected comment or blank line");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{at}: no value"));
        let value = float(value).unwrap_or_else(|| panic!("{at}: value is not a float"));
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{at}: labels not closed"));
                let mut labels = Vec::new();
                let mut s = inner;
                while !s.is_empty() {
                    let (k, r) = s.split_once("=\"").unwrap_or_else(|| panic!("{at}: bad label"));
                    assert!(name_ok(k) && !k.contains(':'), "{at}: bad label name {k:?}");
                    // The value runs to the first unescaped quote.
                    let mut end = None;
                    let mut escaped = false;
                    for (i, ch) in r.char_indices() {
                        match (escaped, ch) {
                            (true, _) => escaped = false,
                            (false, '\\') => escaped = true,
                            (false, '"') => {
                                end = Some(i);
                                break;
                            }
                            _ => {}
                        }
                    }
                    let end = end.unwrap_or_else(|| panic!("{at}: label value not closed"));
                    labels.push((k.to_owned(), r[..end].to_owned()));
                    s = &r[end + 1..];
                    s = s.strip_prefix(',').unwrap_or(s);
                }
                (name, labels)
            }
        };
        assert!(name_ok(name), "{at}: bad metric name");
        let family = [
            name,
            name.trim_end_matches("_bucket"),
            name.trim_end_matches("_sum"),
            name.trim_end_matches("_count"),
        ]
        .into_iter()
        .find(|f| types.contains_key(*f))
        .unwrap_or_else(|| panic!("{at}: sample before its # TYPE"));
        if family != name {
            assert_eq!(types[family], "histogram", "{at}: suffix on a non-histogram");
        }
        samples.push((name.to_owned(), labels, value));
    }
    (types, samples)
}

/// `/metrics` parses as Prometheus text (a strict reader here, and the
/// `prometheus-parse` crate) and has every family of the contract, with its type and
/// labels, after the events that make each appear: requests both ways, a refused and an
/// applied table, the bypass (a peer behind a load balancer, mode `direct`), retries
/// until the budget is spent, and requests shed at the origin's concurrency cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_parse_and_have_every_family_of_the_contract() {
    let p = pair(PairSpec {
        lb: true,
        max_concurrency: 2,
        extra: "[retry]\nbudget_percent = 1.0\nmin_per_second = 1\n",
        ..Default::default()
    })
    .await;
    let admin = p.admin();
    // A refused table, then one applied: half the traffic to the peer, straight to its proxies.
    assert_eq!(put(admin, ALICE, &json!({"version": 0})).await.0, 400);
    let t = json!({"version": 2, "weights": {A: {A: 50, B: 50}}, "peer_modes": {B: "direct"}});
    assert_eq!(put(admin, ALICE, &t).await.0, 200);
    let (a, b) = split(&p.a, 2, 20).await;
    assert!(a > 0 && b > 0, "both regions served: {a} / {b}");
    assert_eq!(p.lb.as_ref().map(|l| l.seen.load(Ordering::SeqCst) > 0), Some(true), "the lb is probed");

    // Retries: every origin answers /status/503; each GET is retried until the budget
    // (1 % + 1/s) is spent.
    let client = h1_client();
    for _ in 0..40 {
        let req = http::Request::get(p.a.url("/status/503")).body(Full::new(Bytes::new())).expect("req");
        let resp = client.request(req).await.expect("answer");
        assert_eq!(resp.status(), 503);
        resp.into_body().collect().await.expect("body");
    }
    // Shedding: home only, 2 slots, 8 slow requests at once.
    let t = json!({"version": 3, "weights": {A: {A: 100}}, "peer_modes": {B: "direct"}});
    assert_eq!(put(admin, ALICE, &t).await.0, 200);
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = p.a.url("/slow/400");
        slow.spawn(async move {
            let resp = h1_client().get(url.parse().expect("url")).await.expect("answer");
            let shed = resp.headers().get("x-flowgate-error").is_some_and(|v| v == "shed");
            (resp.status().as_u16(), shed)
        });
    }
    let mut shed = 0;
    while let Some(r) = slow.join_next().await {
        let (status, was_shed) = r.expect("task");
        assert!(status == 200 || (status == 503 && was_shed), "status {status}");
        shed += was_shed as usize;
    }
    assert!(shed > 0, "with 2 slots, some of 8 concurrent requests are shed");

    // The bypass gauge is refreshed every 250 ms. The gauge of requests in flight drops
    // when the server lets go of a body, which may be a moment after the client read its
    // end.
    let text = wait_for(
        "bypass_active{region=\"us-west-2\"} 1 with nothing in flight",
        Duration::from_secs(5),
        || async {
            let text = metrics(admin).await;
            if metric_sum(&text, "flowgate_bypass_active", &["region=\"us-west-2\""]) == 1.0
                && metric_sum(&text, "flowgate_inflight_requests", &[]) == 0.0
            {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;

    let (types, samples) = strict_parse(&text);
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("prometheus-parse");
    // Every sample line made it into the crate's scrape: buckets fold into one histogram
    // sample per label set, every other line is one sample.
    let buckets: std::collections::BTreeSet<String> = samples
        .iter()
        .filter(|(n, _, _)| n.ends_with("_bucket"))
        .map(|(n, l, _)| format!("{n}{:?}", l.iter().filter(|(k, _)| k != "le").collect::<Vec<_>>()))
        .collect();
    let plain = samples.iter().filter(|(n, _, _)| !n.ends_with("_bucket")).count();
    assert_eq!(scrape.samples.len(), plain + buckets.len(), "prometheus-parse read every sample line");

    for (family, ty, labels) in FAMILIES {
        assert_eq!(types.get(*family).map(String::as_str), Some(*ty), "# TYPE of {family}:\n{text}");
        assert!(scrape.docs.contains_key(*family), "# HELP of {family}");
        let mine: Vec<&prometheus_parse::Sample> =
            scrape.samples.iter().filter(|s| s.metric == *family).collect();
        assert!(!mine.is_empty(), "{family} has no sample:\n{text}");
        for s in &mine {
            let mut got: Vec<&str> = s.labels.keys().map(String::as_str).collect();
            got.sort_unstable();
            let mut want = labels.to_vec();
            want.sort_unstable();
            assert_eq!(got, want, "labels of {family}");
            let kind_ok = match (*ty, &s.value) {
                ("counter", prometheus_parse::Value::Counter(v))
                | ("gauge", prometheus_parse::Value::Gauge(v)) => v.is_finite(),
                ("histogram", prometheus_parse::Value::Histogram(h)) => !h.is_empty(),
                _ => false,
            };
            assert!(kind_ok, "{family}: {:?}", s.value);
        }
    }
    let value = |family: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == family && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(value("flowgate_table_version", None), 3.0);
    assert_eq!(value("flowgate_table_applied_total", None), 2.0);
    assert_eq!(value("flowgate_table_rejected_total", Some(("reason", "invalid"))), 1.0);
    assert_eq!(value("flowgate_bypass_active", Some(("region", B))), 1.0);
    assert!(value("flowgate_retries_total", Some(("reason", "retriable-status"))) >= 1.0);
    assert!(
        value("flowgate_retry_budget_exhausted_total", None) >= 1.0,
        "40 failing GETs spend a 1/s budget"
    );
    assert_eq!(value("flowgate_shed_total", Some(("reason", "origin-concurrency"))), shed as f64);
    assert_eq!(value("flowgate_inflight_requests", None), 0.0);
    for kind in ["origin", "lb", "proxies"] {
        assert!(
            scrape
                .samples
                .iter()
                .any(|s| s.metric == "flowgate_endpoint_healthy" && s.labels.get("kind") == Some(kind)),
            "endpoint_healthy{{kind=\"{kind}\"}}"
        );
    }
    let to = |region: &str, code: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == "flowgate_requests_total"
                    && s.labels.get("target_region") == Some(region)
                    && s.labels.get("code") == Some(code)
                    && s.labels.get("listener") == Some("public")
                    && s.labels.get("origin") == Some("api")
            })
            .map(|s| if let prometheus_parse::Value::Counter(v) = s.value { v } else { 0.0 })
            .sum::<f64>()
    };
    assert!(to(A, "200") + to(B, "200") >= (a + b) as f64, "requests_total counts the answers");
    assert!(to(B, "200") >= b as f64);

    // The duration histogram: buckets from 100 µs to 10 s, cumulative, +Inf = _count.
    for s in scrape.samples.iter().filter(|s| s.metric == "flowgate_request_duration_seconds") {
        let prometheus_parse::Value::Histogram(h) = &s.value else { panic!("{s:?}") };
        let bounds: Vec<f64> = h.iter().map(|c| c.less_than).collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend: {bounds:?}");
        assert!(bounds[0] <= 0.0001 + 1e-12, "smallest bucket at most 100 µs: {bounds:?}");
        assert!(bounds.iter().any(|b| (*b - 10.0).abs() < 1e-9), "a 10 s bucket: {bounds:?}");
        assert_eq!(bounds.last(), Some(&f64::INFINITY));
        assert!(h.windows(2).all(|w| w[0].count <= w[1].count), "cumulative counts");
        let count = samples
            .iter()
            .find(|(n, l, _)| {
                n == "flowgate_request_duration_seconds_count"
                    && l.iter().all(|(k, v)| s.labels.get(k) == Some(v.as_str()))
            })
            .map(|(_, _, v)| *v);
        assert_eq!(count, h.last().map(|c| c.count), "+Inf bucket equals _count");
    }
    p.stop().await;
}

/// `/v1/table/history` (newest first; who pushed, by token name; the note;
/// when) and `/v1/status` (region, version, readiness, rps and error ratio, per target
/// health, share, mode, bypass and endpoint counts), plus the plain admin routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_status_tell_what_happened() {
    let p = pair(PairSpec { table: Some(&refusal_start()), lb: true, ..Default::default() }).await;
    let admin = p.admin();
    let first = json!({"version": 2, "weights": {A: {A: 100}}, "note": "all home"});
    assert_eq!(put(admin, ALICE, &first).await.0, 200);
    let second =
        json!({"version": 3, "weights": {A: {A: 50, B: 50}}, "note": "half west", "peer_modes": {B: "lb"}});
    assert_eq!(put(admin, BOT, &second).await.0, 200);
    // Neither a no-op nor a refusal is history.
    assert_eq!(put(admin, ALICE, &second).await.0, 200);
    assert_eq!(put(admin, ALICE, &table(3, 1, 1)).await.0, 409);
    assert_eq!(put(admin, ALICE, &json!({"version": 9, "nope": 1})).await.0, 400);

    let h = get_json(admin, "/v1/table/history").await;
    let h = h.as_array().expect("history is an array");
    assert_eq!(h.len(), 3, "{h:?}");
    let versions: Vec<u64> = h.iter().map(|e| e["version"].as_u64().expect("version")).collect();
    assert_eq!(versions, [3, 2, 1], "newest first");
    let who = |i: usize| h[i]["who"].as_str().unwrap_or("").to_owned();
    assert!(
        who(0).starts_with("fleet-bot") && who(0).contains("127.0.0.1"),
        "token name and address: {}",
        who(0)
    );
    assert!(who(1).starts_with("alice"), "{}", who(1));
    assert!(!who(0).contains(BOT) && !who(1).contains(ALICE), "tokens are never shown");
    assert!(who(2).starts_with("startup"), "{}", who(2));
    assert_eq!(h[0]["note"], "half west");
    assert_eq!(h[1]["note"], "all home");
    for e in h {
        let at = e["applied_at"].as_str().expect("applied_at");
        let t = humantime::parse_rfc3339(at).unwrap_or_else(|err| panic!("applied_at {at:?}: {err}"));
        let age = std::time::SystemTime::now().duration_since(t).unwrap_or_default();
        assert!(age < Duration::from_secs(60), "applied_at is now: {at}");
    }

    // Traffic for the rates: 30 good answers and 10 errors (500 is not retried).
    let (a, b) = split(&p.a, 2, 15).await;
    assert!(a > 0 && b > 0, "both regions served: {a} / {b}");
    let client = h1_client();
    for _ in 0..10 {
        let req = http::Request::get(p.a.url("/status/500")).body(Full::new(Bytes::new())).expect("req");
        let resp = client.request(req).await.expect("answer");
        assert_eq!(resp.status(), 500);
        resp.into_body().collect().await.expect("body");
    }
    // rps leaves the current (incomplete) second out: wait for it to count.
    let s = wait_for("error_ratio 10/40", Duration::from_secs(5), || async {
        let s = get_json(admin, "/v1/status").await;
        let ratio = s["error_ratio"].as_f64().unwrap_or(-1.0);
        if (ratio - 0.25).abs() < 1e-9 { Ok(s) } else { Err(s) }
    })
    .await;
    assert_eq!(s["region"], A);
    assert_eq!(s["table_version"], 3);
    assert_eq!(s["ready"], true);
    let rps = s["rps"].as_f64().expect("rps");
    assert!(rps > 0.0 && rps <= 40.0, "rps over the last minute: {rps}");
    let local = &s["targets"][A];
    assert_eq!(local["local"], true, "{s}");
    assert_eq!(local["healthy"], true, "{s}");
    assert_eq!(local["share"], 0.5, "{s}");
    assert_eq!(local["bypass_active"], false, "{s}");
    assert_eq!(local["endpoints"]["origin"]["total"], 1, "{s}");
    let west = &s["targets"][B];
    assert_eq!(west["local"], false, "{s}");
    assert_eq!(west["healthy"], true, "{s}");
    assert_eq!(west["share"], 0.5, "{s}");
    assert_eq!(west["mode"], "lb", "{s}");
    assert_eq!(west["bypass_active"], false, "{s}");
    assert_eq!(west["path"], "lb", "{s}");
    assert_eq!(west["endpoints"]["proxies"]["total"], 1, "{s}");
    assert_eq!(west["endpoints"]["lb"]["total"], 1, "{s}");
    assert_eq!(west["endpoints"]["lb"]["healthy"], 1, "{s}");

    // The plain routes.
    for (path, status) in [("/healthz", 200), ("/livez", 200), ("/readyz", 200), ("/nope", 404)] {
        assert_eq!(get_text(&format!("http://{admin}{path}")).await.0, status, "{path}");
    }
    let req =
        http::Request::post(format!("http://{admin}/v1/table")).body(Full::new(Bytes::new())).expect("req");
    let resp = h1_client().request(req).await.expect("answer");
    assert_eq!(resp.status(), 405);
    assert!(resp.headers().get("allow").is_some_and(|v| v.to_str().unwrap_or("").contains("PUT")));
    p.stop().await;
}
