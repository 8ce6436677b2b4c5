//! A real etcd cluster: Debian's etcd-server (`/usr/bin/etcd`) with N members on
//! 127.0.0.1, each with a client and a peer port picked by the kernel, their data folders
//! and logs in a temporary folder, and election settings fast enough for tests. Members
//! can be SIGKILLed and restarted (same name, ports and data) to test what a client does
//! when the cluster loses a member, or its quorum. Keys are read and written with
//! `etcdctl` (API v3), so the tests check the cluster with a client other than the one
//! under test. Every member is killed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::wait::poll_blocking;

pub const ETCD: &str = "/usr/bin/etcd";
pub const ETCDCTL: &str = "etcdctl";
/// How long a cluster (or one restarted member) may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `etcdctl` run may take before it is killed.
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`EtcdCluster::get`] and [`EtcdCluster::put`] retry a failing etcdctl.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// `etcd` and `etcdctl` are both installed.
pub fn available() -> bool {
    Path::new(ETCD).is_file() && on_path(ETCDCTL)
}

/// Panics (the test fails) unless etcd is installed, saying what to install.
pub fn require() {
    assert!(
        available(),
        "this test needs {ETCD} and {ETCDCTL}: install Debian's etcd-server and etcd-client \
         (apt-get install -y etcd-server etcd-client; .ci/run does)"
    );
}

use super::on_path;

/// One member of an [`EtcdCluster`].
pub struct Member {
    pub name: String,
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl Member {
    /// `http://127.0.0.1:PORT` of the client listener.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    /// The last `lines` lines of the member's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct EtcdCluster {
    pub dir: tempfile::TempDir,
    members: Vec<Member>,
    /// `name=http://peer,...` for every member, as given to `--initial-cluster`.
    initial_cluster: String,
    token: String,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one answers `GET /health` with
    /// `"health":"true"`; retries the whole start with other ports (and a fresh folder)
    /// if a member fails to come up (a port picked may have been taken in between).
    pub fn start(n: usize) -> EtcdCluster {
        require();
        assert!(n > 0, "an etcd cluster needs at least one member");
        let mut errors = Vec::new();
        for _ in 0..5 {
            match Self::try_start(n) {
                Ok(c) => return c,
                Err(e) => errors.push(e),
            }
        }
        panic!("etcd cluster of {n} did not start:\n{}", errors.join("\n---\n"));
    }

    fn try_start(n: usize) -> Result<EtcdCluster, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let name = format!("m{i}");
                Member {
                    client: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[2 * i])),
                    peer: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[2 * i + 1])),
                    data_dir: dir.path().join(format!("{name}.etcd")),
                    log_path: dir.path().join(format!("{name}.log")),
                    name,
                    child: None,
                }
            })
            .collect();
        let initial_cluster =
            members.iter().map(|m| format!("{}=http://{}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        let mut cluster = EtcdCluster { dir, members, initial_cluster, token: unique_token() };
        // All at once: a member of a new cluster waits for its peers to bootstrap.
        for i in 0..n {
            cluster.spawn(i, "new")?;
        }
        // `cluster` is dropped on an error return: every member killed.
        cluster.wait_healthy(&(0..n).collect::<Vec<_>>())?;
        Ok(cluster)
    }

    /// Starts member `i` (its log appended to), `state` being `new` or `existing`.
    fn spawn(&mut self, i: usize, state: &str) -> Result<(), String> {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .map_err(|e| format!("{}: {e}", m.log_path.display()))?;
        let client = format!("http://{}", m.client);
        let peer = format!("http://{}", m.peer);
        let child = Command::new(ETCD)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", state, "--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .env_remove("ETCD_NAME")
            .env_remove("ETCD_DATA_DIR")
            .env_remove("ETCD_INITIAL_CLUSTER")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {ETCD}: {e}"))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits, at most [`START_TIMEOUT`], until all of `which` are healthy; an error (with
    /// the tails of their logs) if one exits or the time is up.
    fn wait_healthy(&mut self, which: &[usize]) -> Result<(), String> {
        let mut pending: Vec<usize> = which.to_vec();
        // `Ok` ends the wait: all healthy, or one exited; `Err` waits on.
        let outcome = poll_blocking(START_TIMEOUT, Duration::from_millis(50), || {
            for &i in &pending {
                let m = &mut self.members[i];
                if let Some(Ok(Some(status))) = m.child.as_mut().map(Child::try_wait) {
                    m.child = None;
                    let m = &self.members[i];
                    return Ok(Err(format!(
                        "etcd member {} (client {}, peer {}) exited ({status}):\n{}",
                        m.name,
                        m.client,
                        m.peer,
                        self.logs(which)
                    )));
                }
            }
            pending.retain(|&i| !healthy(self.members[i].client));
            if pending.is_empty() { Ok(Ok(())) } else { Err(()) }
        });
        outcome.unwrap_or_else(|()| {
            let names: Vec<&str> = pending.iter().map(|&i| self.members[i].name.as_str()).collect();
            Err(format!("etcd members {names:?} not healthy within {START_TIMEOUT:?}:\n{}", self.logs(which)))
        })
    }

    /// The tails of the logs of members `which`, for failure messages.
    fn logs(&self, which: &[usize]) -> String {
        which
            .iter()
            .map(|&i| {
                let m = &self.members[i];
                format!("== {} ({}):\n{}", m.name, m.log_path.display(), m.log_tail(40))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The tails of every member's log, for failure messages.
    pub fn log_tails(&self) -> String {
        self.logs(&(0..self.members.len()).collect::<Vec<_>>())
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// `http://127.0.0.1:PORT` of every member, killed ones included.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// The endpoints of the members not killed.
    pub fn live_endpoints(&self) -> Vec<String> {
        self.members.iter().filter(|m| m.child.is_some()).map(Member::endpoint).collect()
    }

    /// [`endpoints`](Self::endpoints) as a TOML array: `["http://127.0.0.1:1", ...]`.
    pub fn toml_list(&self) -> String {
        let quoted: Vec<String> = self.endpoints().iter().map(|e| format!("\"{e}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Member `i` is running (not killed, not exited by itself).
    pub fn is_live(&mut self, i: usize) -> bool {
        self.members[i].child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs member `i` and waits for it (nothing if it is not running).
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again, with the same name, ports and data folder and
    /// `--initial-cluster-state existing`, and waits (bounded) until it is healthy; panics
    /// with the logs otherwise. Kills it first if it is still running.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let result = self.spawn(i, "existing").and_then(|()| self.wait_healthy(&[i]));
        if let Err(e) = result {
            panic!(
                "restarting etcd member {}: {e}\nall members:\n{}",
                self.members[i].name,
                self.log_tails()
            );
        }
    }

    /// `etcdctl --endpoints=<every live member> args...` (API v3).
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.live_endpoints(), args)
    }

    /// `etcdctl --endpoints=<member i only> args...` (API v3).
    pub fn etcdctl_at(&self, i: usize, args: &[&str]) -> Output {
        etcdctl(&[self.members[i].endpoint()], args)
    }

    /// The value of `key`, `None` if there is none. Retried (bounded, [`RETRY_TIMEOUT`])
    /// while etcdctl fails, e.g. during an election; panics if it never succeeds.
    pub fn get(&self, key: &str) -> Option<String> {
        value_of(&self.retried(&self.live_endpoints(), &["get", key, "--print-value-only"]))
    }

    /// The value of `key` as member `i` serves it (a linearizable read through that
    /// member alone), retried like [`get`](Self::get).
    pub fn get_at(&self, i: usize, key: &str) -> Option<String> {
        value_of(&self.retried(&[self.members[i].endpoint()], &["get", key, "--print-value-only"]))
    }

    /// Sets `key` to `value`. Retried (bounded, [`RETRY_TIMEOUT`]) while etcdctl fails:
    /// a proposal made while the cluster elects a leader is dropped by raft and the
    /// request times out, so one failed attempt says nothing. Panics if it never succeeds.
    pub fn put(&self, key: &str, value: &str) {
        // `--` so that a value starting with `-` is not taken for a flag.
        self.retried(&self.live_endpoints(), &["put", "--", key, value]);
    }

    /// Runs etcdctl until it succeeds, each attempt with a 2 s command timeout, for at
    /// most [`RETRY_TIMEOUT`]; panics with the last output and the logs otherwise.
    fn retried(&self, endpoints: &[String], args: &[&str]) -> Output {
        let ran = poll_blocking(RETRY_TIMEOUT, Duration::from_millis(100), || {
            let out = etcdctl_with(endpoints, "2s", args);
            if out.status.success() { Ok(out) } else { Err(out) }
        });
        ran.unwrap_or_else(|out| {
            panic!(
                "etcdctl {args:?} on {endpoints:?} kept failing for {RETRY_TIMEOUT:?}; last: {}\n{}",
                output_text(&out),
                self.log_tails()
            )
        })
    }
}

/// What `get KEY --print-value-only` printed: the value and a newline, nothing at all for a
/// missing key.
fn value_of(out: &Output) -> Option<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    (!text.is_empty()).then(|| text.strip_suffix('\n').unwrap_or(&text).to_string())
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

/// Runs `etcdctl --endpoints=... args...` with `ETCDCTL_API=3`, killed after
/// [`ETCDCTL_TIMEOUT`] (it has its own dial and command timeouts; this is a backstop).
pub fn etcdctl(endpoints: &[String], args: &[&str]) -> Output {
    etcdctl_with(endpoints, "5s", args)
}

fn etcdctl_with(endpoints: &[String], command_timeout: &str, args: &[&str]) -> Output {
    let mut child = Command::new(ETCDCTL)
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("--dial-timeout=2s")
        .arg(format!("--command-timeout={command_timeout}"))
        .args(args)
        .env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {ETCDCTL}: {e}"));
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let finished = poll_blocking(ETCDCTL_TIMEOUT, Duration::from_millis(10), || {
        child.try_wait().expect("wait for etcdctl").ok_or(())
    });
    let Ok(status) = finished else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("etcdctl {args:?} did not finish within {ETCDCTL_TIMEOUT:?}");
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Reads a pipe to its end on a thread of its own (so a full pipe never blocks the child).
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

pub fn output_text(out: &Output) -> String {
    format!(
        "exit {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `GET /health` on a member's client port answers `"health":"true"` (HTTP/1.0 by hand,
/// one second for each step).
fn healthy(client: SocketAddr) -> bool {
    let step = Duration::from_secs(1);
    let Ok(mut stream) = TcpStream::connect_timeout(&client, step) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(step));
    let _ = stream.set_write_timeout(Some(step));
    if stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.starts_with("HTTP/1.") && text.contains("\"health\":\"true\"")
}

/// `n` distinct ports free on 127.0.0.1 (all bound at once, then released: etcd binds them).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

/// A token no other cluster started here has: the process, a counter and the time.
fn unique_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("flowgate-test-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
