//! Fault tests: everything around the proxy failing.
//!
//! - an origin that dies mid-response (Content-Length or chunked): the client never gets
//!   a truncated body that looks complete;
//! - a peer region whose proxies reset every connection: GETs are served locally;
//! - a peer region that black-holes traffic (accepts, never answers): GETs end within
//!   the configured bound, and are served locally once health has marked it down;
//! - an endpoint name that does not resolve: requests go to the good endpoint;
//! - the state folder becoming unwritable, and a full disk (ENOSPC from `/dev/full`): a
//!   push is refused with 500 and nothing changes (version, metric, traffic).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::admin::{metric_sum, metrics, status, table};
use support::wait::wait_until;
use support::{ProxyConfig, TestProxy, config_text, h1_client, h2c_client, origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type H1 = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const A: &str = "us-east-1";
const B: &str = "us-west-2";
const TOKEN: &str = "faults-token-8c1e";

/// Reads a request head (bounded: 64 KiB or 5 s), returns its request line.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.lines().next().map(str::to_owned)
}

/// An origin that answers `/healthz` properly, and every other request with a response
/// head that promises more than it sends before closing: `/cl` with `Content-Length:
/// 1000` and 500 bytes, `/chunked` with one 256-byte chunk and no last chunk.
async fn dying_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Some(line) = read_head(&mut s).await else { return };
                let mut out: Vec<u8> = Vec::new();
                if line.contains(" /healthz") {
                    out.extend_from_slice(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                } else if line.contains(" /chunked") {
                    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n");
                    out.extend(std::iter::repeat_n(b'x', 256));
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
                    out.extend(std::iter::repeat_n(b'x', 500));
                }
                let _ = s.write_all(&out).await;
                let _ = s.flush().await;
                // A moment mid-response, as a dying origin has; then dropped: the
                // connection closes with the body unfinished.
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    addr
}

/// Raw GET, everything the proxy sends until it closes (at most 5 s).
async fn raw_get(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.len() < 1024 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    out
}

/// Whether a raw HTTP/1.1 answer is a complete-looking 2xx: a head with a length the body
/// matches, a chunked body with its last chunk, or a close-delimited body (which a client
/// cannot tell from a complete one).
fn complete_looking(answer: &[u8]) -> Result<bool, String> {
    let shown = String::from_utf8_lossy(&answer[..answer.len().min(300)]).into_owned();
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(false); // no head at all: a clean close
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if !(200..300).contains(&status) {
        return Ok(false); // the proxy's own error: honest
    }
    let body = &answer[end + 4..];
    if let Some(cl) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        let cl: usize = cl.trim().parse().map_err(|_| format!("bad length in {shown:?}"))?;
        return Ok(body.len() >= cl);
    }
    if head.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked")) {
        return Ok(body.ends_with(b"0\r\n\r\n"));
    }
    Err(format!("a close-delimited 2xx hides truncation: {shown:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_origin_dying_mid_response_never_yields_a_complete_looking_body() {
    let o = dying_origin().await;
    let p = TestProxy::start(&config_text(o, "[health]\ninterval = \"60s\"\n")).await;
    for path in ["/cl", "/chunked"] {
        // Raw HTTP/1.1: the framing the client gets must show the truncation.
        let answer = raw_get(p.addrs.public, path).await;
        match complete_looking(&answer) {
            Ok(false) => {}
            Ok(true) => {
                panic!("{path}: a truncated body looked complete: {:?}", String::from_utf8_lossy(&answer))
            }
            Err(e) => panic!("{path}: {e}"),
        }
        // hyper's HTTP/1.1 and h2c clients: reading the body must fail.
        for (proto, client) in [("h1", h1_client()), ("h2c", h2c_client())] {
            let got = tokio::time::timeout(Duration::from_secs(10), async {
                let resp = client.get(p.url(path).parse().expect("url")).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                match resp.into_body().collect().await {
                    Ok(b) => Ok((status, b.to_bytes().len())),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .expect("bounded");
            if let Ok((status, len)) = got {
                assert!(
                    !status.is_success(),
                    "{proto} {path}: a {status} body of {len} bytes read as complete"
                );
            }
        }
    }
    p.stop().await;
}

/// `us-east-1` in front of `origin`, sending its whole row to `us-west-2`, whose proxies
/// are at `peer`; short health checks and `request` timeout; the table in `dir`.
fn peer_config(dir: &Path, origin: SocketAddr, peer: SocketAddr, request_timeout: &str) -> String {
    let table = dir.join("table.json");
    let t = json!({"version": 1, "weights": {A: {B: 100}, B: {B: 100}}, "note": "everything to us-west-2"});
    std::fs::write(&table, t.to_string()).expect("table");
    ProxyConfig::new(A, origin)
        .table(&table)
        .peer(B, &[peer])
        .health("100ms", "50ms")
        .extra(&format!("[timeouts]\nconnect = \"500ms\"\nrequest = \"{request_timeout}\""))
        .text()
}

/// Waits until `p` has judged the peer region down (at most 5 s).
async fn peer_down(p: &TestProxy) {
    wait_until("health to mark the peer down", Duration::from_secs(5), || async {
        status(p.addrs.admin).await["targets"][B]["healthy"] == false
    })
    .await;
}

/// One GET of `/`: status, answering region, time taken.
async fn timed_get(client: &H1, url: &str) -> (u16, String, Duration) {
    let t0 = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.get(url.parse().expect("url")))
        .await
        .expect("answer within 30 s")
        .expect("answer");
    let status = resp.status().as_u16();
    let region =
        resp.headers().get("x-flowgate-region").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    if status != 200 {
        eprintln!("{url}: {status} {:?} after {:?}", resp.headers(), t0.elapsed());
    }
    let _ = resp.into_body().collect().await;
    (status, region, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_resets_every_connection_leaves_gets_served_locally() {
    let o = origin::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bad = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            // RST instead of FIN.
            let _ = s.set_zero_linger();
            drop(s);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let p = TestProxy::start(&peer_config(dir.path(), o.addr, bad, "5s")).await;
    let client = h1_client();
    // At once (before health has judged the peer), then after it has.
    for phase in ["at start", "after health checks"] {
        if phase == "after health checks" {
            peer_down(&p).await;
        }
        for i in 0..20 {
            let (status, region, took) = timed_get(&client, &p.url("/")).await;
            assert_eq!(status, 200, "{phase}: GET {i} got {status} after {took:?}");
            assert_eq!(region, A, "{phase}: GET {i} served locally");
        }
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_black_holed_peer_costs_at_most_the_request_timeout_then_nothing() {
    let o = origin::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hole = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        // Accepts and holds every connection, never reading or writing.
        while held.len() < 10_000 {
            let Ok((s, _)) = listener.accept().await else { return };
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let request_timeout = Duration::from_secs(2);
    let p = TestProxy::start(&peer_config(dir.path(), o.addr, hole, "2s")).await;
    let client = h1_client();
    // Before health has marked the peer down a GET may be sent into the hole: the
    // `request` timeout (2 s) bounds that attempt, and a retry goes to another target, so
    // each answer comes within the timeout plus a local attempt (1 s of slack), as a 200
    // or at worst a 504.
    let mut first = Vec::new();
    for _ in 0..3 {
        let (status, region, took) = timed_get(&client, &p.url("/")).await;
        first.push((status, region.clone(), took));
        assert!(status == 200 || status == 504, "status {status} from {region} after {took:?}");
        assert!(took <= request_timeout + Duration::from_secs(1), "{took:?} is over the 2 s timeout + 1 s");
    }
    eprintln!("before health: {first:?}");
    // Health: a probe every 100 ms with a 50 ms timeout, down after 2 failures, so well
    // within a second. After that every GET is served locally and fast.
    peer_down(&p).await;
    for i in 0..20 {
        let (status, region, took) = timed_get(&client, &p.url("/")).await;
        assert_eq!((status, region.as_str()), (200, A), "GET {i} after health, {took:?}");
        assert!(took < Duration::from_millis(500), "GET {i} took {took:?}");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_name_that_does_not_resolve_leaves_the_good_one_serving() {
    let o = origin::start().await;
    let text = ProxyConfig::new(A, o.addr)
        .endpoints(&["does-not-exist.invalid:9000".to_owned(), o.addr.to_string()])
        .health("100ms", "50ms")
        .extra("[timeouts]\nconnect = \"1s\"")
        .text();
    assert!(text.contains("does-not-exist.invalid"));
    let p = TestProxy::start(&text).await;
    let client = h1_client();
    let t0 = Instant::now();
    for i in 0..30 {
        let (status, region, took) = timed_get(&client, &p.url("/")).await;
        assert_eq!((status, region.as_str()), (200, A), "GET {i} after {took:?}");
    }
    eprintln!("30 GETs in {:?}", t0.elapsed());
    assert!(o.hits.load(std::sync::atomic::Ordering::SeqCst) >= 30);
    p.stop().await;
}

/// `us-west-2`, in process, in front of its own origin: a target whose answers show.
async fn west() -> (TestProxy, origin::Origin) {
    let o = origin::start().await;
    (ProxyConfig::new(B, o.addr).start().await, o)
}

/// `us-east-1` with a state folder and a token file, serving everything locally (v1),
/// with `us-west-2` as a peer.
async fn persisting_proxy(dir: &Path, origin: SocketAddr, west_peer: SocketAddr) -> TestProxy {
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("ops {TOKEN}\n")).expect("tokens");
    let table = dir.join("table.json");
    std::fs::write(&table, json!({"version": 1, "weights": {A: {A: 100}, B: {B: 100}}}).to_string())
        .expect("t");
    ProxyConfig::new(A, origin)
        .table(&table)
        .admin("token_env = \"FLOWGATE_FAULTS_TEST_UNSET\"")
        .token_file(&tokens)
        .state_dir(&dir.join("state"))
        .peer(B, &[west_peer])
        .health("100ms", "50ms")
        .start_in(dir, "flowgate")
        .await
}

async fn put(admin: SocketAddr, table: &Value) -> (u16, Value) {
    support::admin::put(admin, TOKEN, table).await
}

/// Version from `GET /v1/table` and from the `flowgate_table_version` metric, and which
/// regions answered 20 GETs.
async fn observed(p: &TestProxy) -> (u64, f64, Vec<String>) {
    let table = table(p.addrs.admin).await;
    let metrics = metrics(p.addrs.admin).await;
    let client = h1_client();
    let mut regions = Vec::new();
    for _ in 0..20 {
        let (status, region, _) = timed_get(&client, &p.url("/")).await;
        assert_eq!(status, 200);
        regions.push(region);
    }
    regions.dedup();
    (table["version"].as_u64().unwrap_or(0), metric_sum(&metrics, "flowgate_table_version", &[]), regions)
}

/// The table that would move everything to `us-west-2`.
fn to_west(version: u64) -> Value {
    json!({"version": version, "weights": {A: {B: 100}, B: {B: 100}}, "note": "to us-west-2"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unwritable_state_folder_refuses_the_push_with_500_and_changes_nothing() {
    let (w, _wo) = west().await;
    let oa = origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = persisting_proxy(dir.path(), oa.addr, w.addrs.peer.expect("peer")).await;
    // A first push works and is persisted.
    let (code, body) =
        put(p.addrs.admin, &json!({"version": 2, "weights": {A: {A: 100}, B: {B: 100}}})).await;
    assert_eq!(code, 200, "{body}");
    let state = dir.path().join("state");
    assert!(state.join("table.json").is_file());
    // The folder turns read-only. `chmod 0555` stops a non-root proxy; root (these tests
    // run as root here) writes anyway, which a probe write tells.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let probe = state.join("probe");
    if std::fs::write(&probe, "x").is_err() {
        let (code, body) = put(p.addrs.admin, &to_west(3)).await;
        assert_eq!(code, 500, "a push into a read-only folder is refused: {body}");
        let (version, metric, regions) = observed(&p).await;
        assert_eq!((version, metric, regions), (2, 2.0, vec![A.to_owned()]), "nothing changed");
    } else {
        eprintln!("running as root: chmod 0555 does not stop writes; replacing the folder by a file");
        std::fs::remove_file(&probe).expect("rm probe");
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
    // The folder stops being a folder: a regular file in its place makes every write
    // into it fail, for root too.
    std::fs::remove_dir_all(&state).expect("rm state");
    std::fs::write(&state, "not a folder").expect("file");
    let (code, body) = put(p.addrs.admin, &to_west(3)).await;
    assert_eq!(code, 500, "a push that cannot be persisted is refused: {body}");
    let (version, metric, regions) = observed(&p).await;
    assert_eq!(version, 2, "GET /v1/table still serves version 2");
    assert_eq!(metric, 2.0, "flowgate_table_version still 2");
    assert_eq!(regions, vec![A.to_owned()], "traffic did not move to {B}");
    // Writable again: the same push is applied.
    std::fs::remove_file(&state).expect("rm file");
    let (code, body) = put(p.addrs.admin, &to_west(3)).await;
    assert_eq!(code, 200, "{body}");
    p.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_the_push_with_500_and_changes_nothing() {
    let (w, _wo) = west().await;
    let oa = origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = persisting_proxy(dir.path(), oa.addr, w.addrs.peer.expect("peer")).await;
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state");
    // A full disk without mounting anything: the temporary file the proxy writes first
    // (`.table.json.PID.tmp`, PID being this test process, as the proxy runs in it) is a
    // symlink to /dev/full, where every write fails with ENOSPC.
    let tmp = state.join(format!(".table.json.{}.tmp", std::process::id()));
    std::os::unix::fs::symlink("/dev/full", &tmp).expect("symlink");
    let (code, body) = put(p.addrs.admin, &to_west(2)).await;
    assert_eq!(code, 500, "a push that cannot be written is refused: {body}");
    assert!(body.to_string().contains("No space left"), "the failure is ENOSPC: {body}");
    let (version, metric, regions) = observed(&p).await;
    assert_eq!(version, 1, "GET /v1/table still serves version 1");
    assert_eq!(metric, 1.0, "flowgate_table_version still 1");
    assert_eq!(regions, vec![A.to_owned()], "traffic did not move to {B}");
    assert!(!state.join("table.json").exists(), "no state file was written");
    // The failed write cleans up after itself: the temporary file (here the symlink) is
    // gone, so the disk is usable again and the same push is applied.
    assert!(std::fs::symlink_metadata(&tmp).is_err(), "the failed write left its temporary file");
    let (code, body) = put(p.addrs.admin, &to_west(2)).await;
    assert_eq!(code, 200, "{body}");
    let (version, _, regions) = observed(&p).await;
    assert_eq!((version, regions), (2, vec![B.to_owned()]));
    p.stop().await;
    w.stop().await;
}

#[test]
fn the_truncation_checker_can_fail() {
    assert_eq!(complete_looking(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"), Ok(true));
    assert_eq!(complete_looking(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok"), Ok(false));
    assert_eq!(
        complete_looking(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        Ok(true)
    );
    assert_eq!(
        complete_looking(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n"),
        Ok(false)
    );
    assert!(complete_looking(b"HTTP/1.1 200 OK\r\n\r\nok").is_err());
    assert_eq!(complete_looking(b""), Ok(false));
}
