//! Headless Chromium for tests, driven over WebDriver (chromedriver + fantoccini).
//!
//! Chromium and chromedriver are Debian's (`apt-get install chromium chromium-driver`,
//! which `.ci/run` does); `FLOWGATE_CHROMIUM` / `FLOWGATE_CHROMEDRIVER` point elsewhere.
//! Each browser gets a fresh profile folder, no background networking, and, with
//! `offline`, no network but loopback: names other than 127.0.0.1 do not resolve and
//! everything that is not loopback goes to a proxy that does not exist (port 9).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

// The bounded waits of the test kit: every test that uses a browser has `mod support`.
use crate::support::wait;

fn tool(env: &str, candidates: &[&str]) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    for c in candidates {
        if Path::new(c).exists() {
            return PathBuf::from(c);
        }
    }
    panic!(
        "{} not found (looked at {candidates:?}; set {env}): install Debian's chromium and \
         chromium-driver, as .ci/run does",
        candidates[0]
    );
}

pub fn chromium() -> PathBuf {
    tool("FLOWGATE_CHROMIUM", &["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"])
}

pub fn chromedriver() -> PathBuf {
    tool("FLOWGATE_CHROMEDRIVER", &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
}

/// The flags every Chromium here starts with (the machine's closed network refuses
/// Chromium's own background connections, so those are all turned off).
pub fn base_args(profile: &Path, offline: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--mute-audio",
        "--no-default-browser-check",
        "--metrics-recording-only",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    if offline {
        args.push("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".to_owned());
        args.push("--proxy-server=127.0.0.1:9".to_owned());
        args.push("--proxy-bypass-list=127.0.0.1".to_owned());
    }
    args
}

/// Where the screenshots go: `target/` (or `$CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// One chromedriver and the one Chromium session it runs.
pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_addr: SocketAddr,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a Chromium session of `width` ×
    /// `height`, with no network but loopback when `offline`.
    pub async fn start(offline: bool, width: u32, height: u32) -> Browser {
        Self::start_with(offline, width, height, true).await
    }

    /// Like `start`; with `javascript` false the pages' own scripts do not run (WebDriver's
    /// scripts still do, so tests can read the DOM).
    pub async fn start_with(offline: bool, width: u32, height: u32, javascript: bool) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        let driver_addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(target_dir().join("chromedriver.log")).ok();
        let mut driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(
                log.as_ref().and_then(|f| f.try_clone().ok()).map(Stdio::from).unwrap_or_else(Stdio::null),
            )
            .stderr(log.map(Stdio::from).unwrap_or_else(Stdio::null))
            .spawn()
            .expect("spawn chromedriver");
        let listening = wait::poll_blocking(Duration::from_secs(20), Duration::from_millis(50), || {
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("chromedriver exited at start: {status}");
            }
            TcpStream::connect_timeout(&driver_addr, Duration::from_millis(200)).map(drop)
        });
        if listening.is_err() {
            let _ = driver.kill();
            panic!("chromedriver did not listen on {driver_addr} within 20 s");
        }
        let mut args = base_args(profile.path(), offline);
        args.push(format!("--window-size={width},{height}"));
        let caps = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"pageLoad": 20000, "script": 10000, "implicit": 0},
            "goog:chromeOptions": {
                "binary": chromium().display().to_string(),
                "args": args,
                "prefs": {"profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 }},
            },
        });
        let Value::Object(caps) = caps else { unreachable!() };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let url = format!("http://{driver_addr}");
        let client = match tokio::time::timeout(Duration::from_secs(60), builder.connect(&url)).await {
            Ok(Ok(c)) => c,
            other => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("no Chromium session: {other:?}");
            }
        };
        let session = client.session_id().await.ok().flatten();
        Browser { client, driver, driver_addr, session, _profile: profile }
    }

    /// Runs `script` (a function body: use `return`) in the page.
    pub async fn js(&self, script: &str) -> Value {
        tokio::time::timeout(Duration::from_secs(15), self.client.execute(script, vec![]))
            .await
            .unwrap_or_else(|_| panic!("script took over 15 s: {script}"))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs `script` every 100 ms until it returns something other than `null`, `false`,
    /// `0` or `""`, at most `limit`; panics with the last answer otherwise.
    pub async fn wait_for(&self, what: &str, script: &str, limit: Duration) -> Value {
        wait::wait_for_every(what, limit, Duration::from_millis(100), || async {
            let answer = self.js(script).await;
            let truthy = match &answer {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy { Ok(answer) } else { Err(answer) }
        })
        .await
    }

    /// Navigates, at most 30 s.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(30), self.client.goto(url)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("{url}: no answer in 30 s")),
        }
    }

    /// Saves a PNG of the viewport under `target/` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = tokio::time::timeout(Duration::from_secs(20), self.client.screenshot())
            .await
            .expect("screenshot in time")
            .expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = target_dir().join(name);
        std::fs::create_dir_all(target_dir()).expect("target dir");
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn set_size(&self, width: u32, height: u32) {
        tokio::time::timeout(Duration::from_secs(10), self.client.set_window_size(width, height))
            .await
            .expect("resize in time")
            .expect("resize");
    }

    /// Ends the session (Chromium quits) and chromedriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        if tokio::time::timeout(Duration::from_secs(15), client.close()).await.is_ok_and(|r| r.is_ok()) {
            self.session = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that panicked still ends its Chromium: delete the session by hand (the
        // async client cannot be awaited here), then stop chromedriver.
        if let Some(id) = self.session.take()
            && let Ok(mut s) = TcpStream::connect_timeout(&self.driver_addr, Duration::from_secs(1))
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = write!(
                s,
                "DELETE /session/{id} HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                self.driver_addr
            );
            let mut sink = [0u8; 512];
            let _ = s.read(&mut sink);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
