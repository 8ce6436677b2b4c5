//! Signed tables: with `[admin] table_keys`, a proxy takes a table from any path (a push,
//! a peer's catch-up, the file at start) only with a valid signature by one of the keys.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::admin::{metric, put_str, version};
use support::config::free_addr;
use support::wait::{wait_until, within};
use support::{ProxyConfig, ProxyProcess};

const TOKEN: &str = "signed-tables-token";

fn flowgate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(args)
        .env("FLOWGATE_ADMIN_TOKEN", TOKEN)
        .env_remove("FLOWGATE_SIGNING_KEY")
        .output()
        .expect("run")
}

fn keygen(path: &Path) -> String {
    let out = flowgate(&["keygen", "--out", path.to_str().expect("path")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    assert_eq!(std::fs::read_to_string(&pub_path).expect("FILE.pub").trim(), public);
    public
}

fn config(
    region: &str,
    origin: SocketAddr,
    peer: SocketAddr,
    other: (&str, SocketAddr),
    keys: &[&str],
    extra: &str,
) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    let mut cfg = ProxyConfig::new(region, origin)
        .peer_listen(Some(peer))
        .admin(&format!("table_keys = [{}]", keys.join(", ")))
        .peer(other.0, &[other.1])
        .health("200ms", "150ms")
        .drain(Some(("0s", "1s")));
    if !extra.is_empty() {
        cfg = cfg.top(extra);
    }
    cfg.text()
}

async fn put(admin: SocketAddr, body: &str) -> (u16, Value) {
    put_str(admin, TOKEN, body).await
}

/// A table file signed by `key` (through `flowgate push`'s own signing, read back from
/// the proxy that took it, so the test never signs by hand).
fn table_json(version: u64) -> String {
    format!(r#"{{"version": {version}, "weights": {{"a": {{"a": 60, "b": 40}}}}, "note": "v{version}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_tables_signed_by_a_listed_key_are_taken_from_any_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.key");
    let other = dir.path().join("other.key");
    let public = keygen(&good);
    keygen(&other);
    let origin_a = support::origin::start().await;
    let origin_b = support::origin::start().await;
    let (peer_a, peer_b) = (free_addr(), free_addr());
    // a insists on signatures; b (a peer) takes anything.
    let a = ProxyProcess::spawn_env(
        &config("a", origin_a.addr, peer_a, ("b", peer_b), &[&public], ""),
        &[("FLOWGATE_ADMIN_TOKEN", TOKEN)],
    );
    let b = ProxyProcess::spawn_env(
        &config("b", origin_b.addr, peer_b, ("a", peer_a), &[], ""),
        &[("FLOWGATE_ADMIN_TOKEN", TOKEN)],
    );
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(
        &fleet,
        format!(
            "[regions.a]\nadmin = [\"{}\"]\ncapacity_rps = 100\n[regions.b]\nadmin = [\"{}\"]\ncapacity_rps = 100\n",
            a.admin, b.admin
        ),
    )
    .expect("fleet");
    let fleet_a = dir.path().join("fleet-a.toml");
    std::fs::write(&fleet_a, format!("[regions.a]\nadmin = [\"{}\"]\ncapacity_rps = 100\n", a.admin))
        .expect("fleet");

    // A push: unsigned, signed by another key, tampered with: 400 naming `signature`.
    let (s, body) = put(a.admin, &table_json(2)).await;
    assert_eq!((s, body["field"].as_str()), (400, Some("signature")), "unsigned: {body}");
    let t2 = dir.path().join("t2.json");
    std::fs::write(&t2, table_json(2)).expect("table");
    let by_other = flowgate(&[
        "push",
        "--fleet",
        fleet_a.to_str().expect("p"),
        "--signing-key",
        other.to_str().expect("p"),
        t2.to_str().expect("p"),
    ]);
    assert_eq!(by_other.status.code(), Some(1), "another key: {}", String::from_utf8_lossy(&by_other.stdout));
    assert!(
        String::from_utf8_lossy(&by_other.stdout).contains("signature"),
        "{}",
        String::from_utf8_lossy(&by_other.stdout)
    );
    // Signed by the listed key (FLOWGATE_SIGNING_KEY names it): applied.
    let signed = std::process::Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["push", "--fleet", fleet.to_str().expect("p"), t2.to_str().expect("p")])
        .env("FLOWGATE_ADMIN_TOKEN", TOKEN)
        .env("FLOWGATE_SIGNING_KEY", &good)
        .output()
        .expect("push");
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    assert_eq!(version(a.admin).await, 2);
    let mut tampered = support::admin::table(a.admin).await;
    assert!(tampered["signature"].is_string(), "the table keeps its signature: {tampered}");
    tampered["version"] = 3.into();
    tampered["weights"]["a"]["b"] = 100.into();
    let (s, body) = put(a.admin, &tampered.to_string()).await;
    assert_eq!((s, body["field"].as_str()), (400, Some("signature")), "tampered: {body}");
    assert_eq!(version(a.admin).await, 2, "a refused table changes nothing");

    // Catch-up: b takes an unsigned v5; a sees it at its peer and refuses it.
    let rejected = |a: SocketAddr| async move { metric(a, "flowgate_table_rejected_total", &[]).await };
    let before = rejected(a.admin).await;
    assert_eq!(put(b.admin, &table_json(5)).await.0, 200);
    wait_until("a to refuse b's table at a catch-up", Duration::from_secs(5), || async {
        rejected(a.admin).await > before
    })
    .await;
    assert_eq!(version(a.admin).await, 2, "an unsigned table from a peer is refused");
    // A signed v6 at b: a catches up to it.
    let t6 = dir.path().join("t6.json");
    std::fs::write(&t6, table_json(6)).expect("table");
    let fleet_b = dir.path().join("fleet-b.toml");
    std::fs::write(&fleet_b, format!("[regions.b]\nadmin = [\"{}\"]\ncapacity_rps = 100\n", b.admin))
        .expect("fleet");
    let pushed = flowgate(&[
        "push",
        "--fleet",
        fleet_b.to_str().expect("p"),
        "--signing-key",
        good.to_str().expect("p"),
        t6.to_str().expect("p"),
    ]);
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    within(Duration::from_secs(5), || async { version(a.admin).await == 6 }).await;
    assert_eq!(version(a.admin).await, 6, "a signed table from a peer is taken");

    // The file at start: an unsigned table file keeps the proxy from starting (exit 2).
    let file = dir.path().join("start.json");
    std::fs::write(&file, table_json(9)).expect("table");
    let cfg = dir.path().join("unsigned-start.toml");
    let text = config(
        "a",
        origin_a.addr,
        free_addr(),
        ("b", peer_b),
        &[&public],
        &format!("table = {:?}", file.display().to_string()),
    );
    std::fs::write(&cfg, text).expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["serve", "--config", cfg.to_str().expect("p")])
        .env("FLOWGATE_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A key that is not a key is named in the config error.
    let bad = dir.path().join("bad-key.toml");
    std::fs::write(&bad, config("a", origin_a.addr, free_addr(), ("b", peer_b), &["not-a-key"], ""))
        .expect("config");
    let out = flowgate(&["validate", "--config", bad.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin.table_keys[0]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
