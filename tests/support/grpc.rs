//! A real gRPC server: `grpc_health_server.py` beside this file, on Python's grpcio
//! (Debian's python3-grpcio), serving the standard `grpc.health.v1.Health/Check` in the
//! clear on 127.0.0.1 at a port picked by the kernel. What it answers is read from a state
//! file on every call, so a test flips it with [`GrpcHealthServer::set`]. Killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

pub const PACKAGE: &str = "python3-grpcio";

/// Debian's interpreter first: python3-grpcio installs for it, and a `python3` earlier on
/// `PATH` (a pyenv, a virtualenv) may not see it.
const PYTHONS: [&str; 2] = ["/usr/bin/python3", "python3"];

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/grpc_health_server.py")
}

/// The first Python interpreter that can `import grpc`.
fn python() -> Option<&'static str> {
    static FOUND: OnceLock<Option<&'static str>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        PYTHONS.into_iter().find(|py| {
            Command::new(py)
                .args(["-c", "import grpc"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

/// Python's grpcio is installed.
pub fn available() -> bool {
    python().is_some()
}

/// Panics (the test fails) unless grpcio is installed, saying what to install.
pub fn require() {
    assert!(
        available(),
        "this test needs Python's grpcio: install Debian's {PACKAGE} \
         (apt-get install -y {PACKAGE}; .ci/run does)"
    );
}

/// `HealthCheckResponse.ServingStatus` values the server can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServingStatus {
    Serving,
    NotServing,
    Unknown,
}

impl ServingStatus {
    fn name(self) -> &'static str {
        match self {
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::Unknown => "UNKNOWN",
        }
    }
}

pub struct GrpcHealthServer {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
    /// Held open: the server exits when it closes (so it cannot outlive a test that dies).
    _stdin: ChildStdin,
    /// The server's log: one line per Check it answered.
    log: mpsc::Receiver<String>,
}

impl GrpcHealthServer {
    /// Starts the server with the whole server (service "") `SERVING`, and waits (at most
    /// 20 s) until it listens.
    pub fn start() -> GrpcHealthServer {
        Self::start_with(&[("", ServingStatus::Serving)])
    }

    /// Starts the server answering for these services ("" is the whole server); any other
    /// service gets NOT_FOUND.
    pub fn start_with(services: &[(&str, ServingStatus)]) -> GrpcHealthServer {
        require();
        let py = python().expect("checked by require");
        let dir = tempfile::tempdir().expect("tempdir");
        write_state(&dir, services);
        let mut child = Command::new(py)
            .arg(script())
            .arg(dir.path().join("state.json"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {py} {}: {e}", script().display()));
        let stdin = child.stdin.take().expect("stdin");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for stream in [Box::new(out) as Box<dyn std::io::Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let port = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(p) =
                        line.strip_prefix("listening ").and_then(|p| p.trim().parse::<u16>().ok())
                    {
                        break p;
                    }
                    seen.push(line);
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("the gRPC server exited ({status}):\n{}", seen.join("\n"));
                    }
                }
            }
            if left.is_zero() {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the gRPC server did not listen within 20 s:\n{}", seen.join("\n"));
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // It prints its port once started; a connection confirms it takes them.
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("the gRPC server does not accept connections on {addr}: {e}"));
        GrpcHealthServer { addr, dir, child, _stdin: stdin, log: rx }
    }

    /// What the whole server (service "") answers from the next Check on.
    pub fn set(&self, serving: ServingStatus) {
        self.set_services(&[("", serving)]);
    }

    /// Every service's answer from the next Check on (services not named: NOT_FOUND).
    pub fn set_services(&self, services: &[(&str, ServingStatus)]) {
        write_state(&self.dir, services);
    }

    /// The server's log lines so far (one per Check answered).
    pub fn log(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

/// Written aside and renamed, so a Check never reads half a file.
fn write_state(dir: &tempfile::TempDir, services: &[(&str, ServingStatus)]) {
    let map: serde_json::Map<String, serde_json::Value> =
        services.iter().map(|(s, v)| ((*s).to_owned(), v.name().into())).collect();
    let tmp = dir.path().join("state.json.tmp");
    std::fs::write(&tmp, serde_json::Value::Object(map).to_string()).expect("write state");
    std::fs::rename(&tmp, dir.path().join("state.json")).expect("rename state");
}

impl Drop for GrpcHealthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
