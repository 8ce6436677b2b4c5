//! `flowgate serve --addr-file PATH` on the real binary: with every listener on port 0,
//! the file names the ports the kernel picked (`null` for a listener not configured), it
//! appears whole (never half written), and each address in it answers: the public listener
//! serves a request through an origin, the peer listener its health report, the admin
//! listener `/healthz`. A file that cannot be written stops the start with exit code 1.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flowgate::server::BoundAddrs;
use support::wait::wait_for;
use support::{config_text, get, h1_client, origin};

/// The child proxy, killed when the test ends however it ends.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An origin, and in a fresh folder a config in front of it with every listener on port 0.
async fn in_front_of_an_origin() -> (origin::Origin, tempfile::TempDir, PathBuf) {
    let o = origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("flowgate.toml");
    std::fs::write(&config, config_text(o.addr, "")).expect("write config");
    (o, dir, config)
}

fn serve(config: &Path, addr_file: &Path) -> Proxy {
    let child = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--addr-file")
        .arg(addr_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flowgate");
    Proxy(child)
}

/// Reads the address file once it exists; every read must parse (the file is renamed into
/// place whole, so a reader never sees a prefix of it).
async fn wait_for_addrs(path: &Path, proxy: &mut Proxy) -> (BoundAddrs, serde_json::Value) {
    let what = format!("{} to be written", path.display());
    wait_for(&what, Duration::from_secs(30), || {
        let read = match std::fs::read_to_string(path) {
            Ok(text) => {
                let addrs = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                let raw = serde_json::from_str(&text).expect("JSON");
                Ok((addrs, raw))
            }
            Err(e) => match proxy.0.try_wait().expect("try_wait") {
                Some(status) => panic!("flowgate exited ({status}) before writing {}", path.display()),
                None => Err(e),
            },
        };
        async move { read }
    })
    .await
}

#[tokio::test]
async fn addr_file_names_each_bound_listener_and_each_answers() {
    let (_origin, dir, config) = in_front_of_an_origin().await;
    let addr_file = dir.path().join("addrs.json");
    let mut proxy = serve(&config, &addr_file);

    let (addrs, raw) = wait_for_addrs(&addr_file, &mut proxy).await;
    let keys: Vec<&str> = raw.as_object().expect("an object").keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5, "{raw}");
    for key in ["public", "public_tls", "peer", "peer_tls", "admin"] {
        assert!(keys.contains(&key), "{key} missing from {raw}");
    }
    assert_eq!(raw["public_tls"], serde_json::Value::Null, "not configured: {raw}");
    assert_eq!(raw["peer_tls"], serde_json::Value::Null, "not configured: {raw}");
    let peer = addrs.peer.expect("the peer listener is configured");
    for (name, addr) in [("public", addrs.public), ("peer", peer), ("admin", addrs.admin)] {
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{name}: {addr}");
    }

    let client = h1_client();
    let (status, _, _) = get(&client, &format!("http://{}/healthz", addrs.admin)).await;
    assert_eq!(status, 200, "admin /healthz");
    let (status, headers, body) = get(&client, &format!("http://{}/", addrs.public)).await;
    assert_eq!(status, 200, "public: {body:?}");
    assert_eq!(&body[..], b"ok", "served by the origin");
    assert_eq!(headers["x-flowgate-region"], "us-east-1");
    let (status, _, body) = get(&client, &format!("http://{peer}/.flowgate/health")).await;
    assert!(status == 200 || status == 503, "peer health: {status} {body:?}");
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok(), "a JSON health report: {body:?}");

    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read_dir").filter_map(Result::ok).collect();
    assert_eq!(left.len(), 2, "only the config and the address file: {left:?}");
}

#[tokio::test]
async fn an_addr_file_that_cannot_be_written_stops_the_start_with_exit_1() {
    let (_origin, dir, config) = in_front_of_an_origin().await;
    let addr_file = dir.path().join("no-such-folder").join("addrs.json");
    let mut proxy = serve(&config, &addr_file);

    let status = wait_for("the failed start to end", Duration::from_secs(30), || {
        let exited = proxy.0.try_wait().expect("try_wait").ok_or("still running");
        async move { exited }
    })
    .await;
    let mut stderr = String::new();
    if let Some(mut err) = proxy.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
    }
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--addr-file") && stderr.contains("no-such-folder"), "names the file: {stderr}");
}
