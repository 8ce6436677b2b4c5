//! The built `flowgate` binary serving a config from a temporary folder: its listen
//! addresses (from `serve --addr-file`), its log lines, signals, and how it exits.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flowgate::server::BoundAddrs;

use super::wait::{POLL, poll, poll_blocking};

/// How long a proxy may take to bind its listeners.
const START_IN: Duration = Duration::from_secs(30);

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
        let addr_file = dir.path().join("addrs.json");
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowgate"))
            .args(["serve", "--config"])
            .arg(&path)
            .arg("--addr-file")
            .arg(&addr_file)
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
        let addrs = read_addr_file(&addr_file, &mut child);
        // Start-up messages: up to the `ready` line. With peers, readiness waits for a
        // peer's table (`[fleet] sync_timeout`), which is no business of start-up (fleet
        // tests wait for readiness themselves): up to the admin listener's line then.
        let has_peers = text.contains("[peers.");
        let mut startup_log = Vec::new();
        let deadline = std::time::Instant::now() + START_IN;
        while std::time::Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("flowgate exited early: {status}");
                }
                continue;
            };
            let last = line.contains(" ready")
                || (has_peers && line.contains("listening") && line.contains("\"admin\""));
            startup_log.push(line);
            if last {
                break;
            }
        }
        ProxyProcess {
            child,
            public: addrs.public,
            peer: addrs.peer,
            admin: addrs.admin,
            public_tls: addrs.public_tls,
            dir,
            log: rx,
            startup_log,
        }
    }

    /// The config text it was started with.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("flowgate.toml")).expect("config")
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
        let child = &mut self.child;
        poll_blocking(limit, POLL, || child.try_wait().ok().flatten().ok_or(())).ok()
    }

    /// Waits for a log line (after start-up) containing every one of `needles`, at most
    /// `limit`; returns it. Panics with the lines seen meanwhile.
    pub async fn wait_log(&self, needles: &[&str], limit: Duration) -> String {
        let mut seen = Vec::new();
        let found = poll(limit, POLL, || {
            let hit = self.log.try_iter().find_map(|line| {
                if needles.iter().all(|n| line.contains(n)) {
                    Some(line)
                } else {
                    seen.push(line);
                    None
                }
            });
            async move { hit.ok_or(()) }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!("no log line with {needles:?} within {limit:?}; saw:\n{}", seen.join("\n"))
        })
    }
}

/// The addresses the proxy bound, from its `--addr-file` once it is written (whole: it
/// is renamed into place). Panics if the proxy exits first or takes over `START_IN`.
fn read_addr_file(path: &Path, child: &mut Child) -> BoundAddrs {
    let read = poll_blocking(START_IN, POLL, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("flowgate exited early: {status}");
        }
        let text = std::fs::read_to_string(path).map_err(|_| ())?;
        Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text:?}", path.display())))
    });
    read.unwrap_or_else(|()| panic!("{} not written within {START_IN:?}", path.display()))
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
