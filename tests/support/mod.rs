//! Test support: real origins, a real proxy (in-process or the built binary) and real
//! clients, all on 127.0.0.1 with ports picked by the kernel.
#![allow(dead_code)]

pub mod bind9;
pub mod etcd;
pub mod fleet;
pub mod grpc;
pub mod origin;
pub mod outage;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use flowgate::config::Config;
use flowgate::server::{BoundAddrs, Server};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

/// A config for one proxy in front of `origin`, every listener on port 0. `extra` is
/// appended verbatim (TOML tables such as `[timeouts]`). Unless `extra` has its own
/// `[drain]`, the drain delay is 0 so that stopping a test proxy is quick.
pub fn config_text(origin: SocketAddr, extra: &str) -> String {
    let drain = if extra.contains("[drain]") { "" } else { "[drain]\ndelay = \"0s\"\ntimeout = \"5s\"\n" };
    format!(
        r#"
region = "us-east-1"

[listen]
public = "127.0.0.1:0"
peer = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[origins.api]
endpoints = ["{origin}"]

[[routes]]
host = "*"
path_prefix = "/"
origin = "api"
{drain}
{extra}
"#
    )
}

/// A proxy running in this process; dropping it does not stop it, `stop` does.
pub struct TestProxy {
    pub addrs: BoundAddrs,
    pub control: std::sync::Arc<flowgate::control::Control>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    pub async fn start(text: &str) -> TestProxy {
        Self::start_with(
            Config::from_toml(&PathBuf::from("/tmp/test.toml"), text).expect("valid test config"),
        )
        .await
    }

    pub async fn start_with(cfg: Config) -> TestProxy {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = Server::bind(cfg).await.expect("bind");
        let addrs = server.addrs();
        let control = server.control();
        let (tx, rx) = oneshot::channel();
        let done = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        TestProxy { addrs, control, stop: Some(tx), done: Some(done) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addrs.public, path)
    }

    /// Signals shutdown and waits for the drain to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), done).await;
        }
    }
}

/// The built `flowgate` binary, serving a config written to a temporary folder.
pub struct ProxyProcess {
    pub child: Child,
    pub public: SocketAddr,
    pub peer: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub public_tls: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    /// Log lines after the listening ones, for tests that look at them.
    pub log: mpsc::Receiver<String>,
    /// Log lines up to and including the `ready` one (start-up messages).
    pub startup_log: Vec<String>,
}

impl ProxyProcess {
    pub fn spawn(text: &str) -> ProxyProcess {
        Self::spawn_env(text, &[])
    }

    /// Like `spawn`, with extra environment variables for the child (e.g. the admin token
    /// named by `[admin] token_env`), so tests never touch this process's environment.
    pub fn spawn_env(text: &str, env: &[(&str, &str)]) -> ProxyProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("flowgate.toml");
        std::fs::write(&path, text).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowgate"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flowgate");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let has_peers = text.contains("[peers.");
        let (mut public, mut peer, mut admin, mut public_tls) = (None, None, None, None);
        let mut startup_log = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("flowgate exited early: {status}");
                }
                continue;
            };
            startup_log.push(line.clone());
            if line.contains(" ready") {
                break;
            }
            if !line.contains("listening") {
                continue;
            }
            let addr: Option<SocketAddr> = line
                .split("addr=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok());
            let slot = if line.contains("\"public_tls\"") {
                &mut public_tls
            } else if line.contains("\"public\"") {
                &mut public
            } else if line.contains("\"peer\"") {
                &mut peer
            } else if line.contains("\"admin\"") {
                &mut admin
            } else {
                continue;
            };
            *slot = addr;
            // The admin listener is the last one bound. With peers, readiness waits for a
            // peer's table (`[fleet] sync_timeout`), which is no business of the addresses
            // (fleet tests wait for readiness themselves); without, it is immediate, and
            // the `ready` line is awaited as before.
            if admin.is_some() && has_peers {
                break;
            }
        }
        ProxyProcess {
            child,
            public: public.expect("public address in the log"),
            peer,
            admin: admin.expect("admin address in the log"),
            public_tls,
            dir,
            log: rx,
            startup_log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    pub fn signal(&self, sig: &str) {
        let ok =
            Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(ok.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pooled HTTP/1.1 client.
pub fn h1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client.
pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// GET through a client, returning status, headers and the whole body.
pub async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let resp = tokio::time::timeout(Duration::from_secs(30), client.get(url.parse().expect("url")))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

/// User + system CPU time of one process so far, in clock ticks (0 once it is gone).
pub fn process_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses: utime and stime are
    // the 14th and 15th fields of the line.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    f.iter().sum()
}

pub fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Whether `cmd` is an executable file in a folder of `PATH`.
pub fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(cmd).is_file()))
}
