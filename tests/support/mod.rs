//! Test support: real origins, a real proxy (in-process or the built binary) and real
//! clients, all on 127.0.0.1 with ports picked by the kernel.
//!
//! - `config`: the config text of a test proxy, built up (`ProxyConfig`);
//! - `admin`: the admin API (reads, pushes, metric sums);
//! - `wait`: bounded polling for a condition, instead of fixed pauses;
//! - `process`: the built binary as a proxy process; `run`: its commands;
//! - `origin`, `fleet`, `outage`, `grpc`, `etcd`, `bind9`: origins, fleets and the
//!   outside services some tests need.
#![allow(dead_code)]

pub mod admin;
pub mod bind9;
pub mod config;
pub mod etcd;
pub mod fleet;
pub mod grpc;
pub mod origin;
pub mod outage;
pub mod process;
pub mod run;
pub mod wait;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use flowgate::config::Config;
use flowgate::server::{BoundAddrs, Server};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

pub use config::ProxyConfig;
pub use process::ProxyProcess;

/// A config for one proxy (`us-east-1`) in front of `origin`, every listener on port 0.
/// `extra` is appended verbatim (TOML tables such as `[timeouts]`). Unless `extra` has its
/// own `[drain]`, the drain delay is 0 so that stopping a test proxy is quick.
pub fn config_text(origin: SocketAddr, extra: &str) -> String {
    let drain = (!extra.contains("[drain]")).then_some(("0s", "5s"));
    ProxyConfig::new("us-east-1", origin).drain(drain).extra(extra).text()
}

/// An origin, and a test proxy in front of it on `config_text(origin, extra)`.
pub async fn fronted(extra: &str) -> (origin::Origin, TestProxy) {
    let o = origin::start().await;
    let p = TestProxy::start(&config_text(o.addr, extra)).await;
    (o, p)
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

/// One exchange as a client saw it: a transport failure, or no whole answer within 10 s,
/// is an `Err` (not a panic), so that load loops can count them.
pub async fn exchange(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), String> {
    let work = async {
        let resp = client.request(req).await.map_err(|e| format!("request: {e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
        Ok((parts.status, parts.headers, body))
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "no answer within 10 s".to_owned())?
}

/// The region that answered, from `x-flowgate-region` (`-` when it is missing).
pub fn region_of(headers: &http::HeaderMap) -> String {
    headers.get("x-flowgate-region").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned()
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
