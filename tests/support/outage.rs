//! A fleet of built `flowgate` binaries for outage tests: per region a real origin and
//! several proxy processes (so that one can be SIGSTOPped or killed), a fleet file for the
//! fleet commands and the autopilot, a steady client load that records every answer, and
//! the autopilot itself as a process whose decision lines are collected.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ProxyProcess;
use super::origin::{self, Origin};

pub const TOKEN: &str = "outage-test-token";
pub const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

pub struct Region {
    pub name: String,
    pub origin: Origin,
    pub proxies: Vec<ProxyProcess>,
}

pub struct OutageFleet {
    pub regions: Vec<Region>,
    pub dir: tempfile::TempDir,
    pub fleet_file: PathBuf,
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

impl OutageFleet {
    /// `per_region` proxies in each of the three regions, every row local.
    pub async fn start(per_region: usize) -> OutageFleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut origins = Vec::new();
        let mut peers: Vec<Vec<SocketAddr>> = Vec::new();
        for _ in REGIONS {
            origins.push(origin::start().await);
            peers.push((0..per_region).map(|_| free_port()).collect());
        }
        let mut regions = Vec::new();
        for (i, (name, origin)) in REGIONS.iter().zip(origins).enumerate() {
            let mut peer_tables = String::new();
            for (j, other) in REGIONS.iter().enumerate() {
                if i != j {
                    let list: Vec<String> = peers[j].iter().map(|a| format!("\"{a}\"")).collect();
                    peer_tables.push_str(&format!("[peers.{other}]\nproxies = [{}]\n\n", list.join(", ")));
                }
            }
            let mut proxies = Vec::new();
            for peer in &peers[i] {
                let text = format!(
                    r#"region = "{name}"
[listen]
public = "127.0.0.1:0"
peer = "{peer}"
[admin]
listen = "127.0.0.1:0"
[origins.api]
endpoints = ["{origin}"]
{peer_tables}
[[routes]]
origin = "api"
[drain]
delay = "0s"
timeout = "2s"
[health]
interval = "200ms"
timeout = "150ms"
"#,
                    origin = origin.addr
                );
                proxies.push(ProxyProcess::spawn_env(&text, &[("FLOWGATE_ADMIN_TOKEN", TOKEN)]));
            }
            regions.push(Region { name: name.to_string(), origin, proxies });
        }
        let fleet_file = dir.path().join("fleet.toml");
        let fleet = OutageFleet { regions, dir, fleet_file };
        fleet.write_fleet_file(&fleet.fleet_file, &[]);
        fleet.wait_ready().await;
        fleet
    }

    /// Writes a fleet file; `cut_off` regions get admin addresses where nothing listens
    /// (the fleet tools' view of a region they cannot reach).
    pub fn write_fleet_file(&self, path: &Path, cut_off: &[&str]) {
        let mut text = "token_env = \"FLOWGATE_ADMIN_TOKEN\"\n".to_owned();
        for r in &self.regions {
            let admins: Vec<String> = if cut_off.contains(&r.name.as_str()) {
                r.proxies.iter().map(|_| format!("\"{}\"", free_port())).collect()
            } else {
                r.proxies.iter().map(|p| format!("\"{}\"", p.admin)).collect()
            };
            text.push_str(&format!(
                "[regions.{}]\nadmin = [{}]\ncapacity_rps = 100000\n",
                r.name,
                admins.join(", ")
            ));
        }
        std::fs::write(path, text).expect("fleet file");
    }

    pub fn region(&self, name: &str) -> &Region {
        self.regions.iter().find(|r| r.name == name).expect("region")
    }

    /// Waits until every proxy is ready and sees every other region healthy.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        'outer: while Instant::now() < deadline {
            for r in &self.regions {
                for p in &r.proxies {
                    let Some(st) = status(p.admin).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue 'outer;
                    };
                    let all_healthy = st["targets"]
                        .as_object()
                        .is_some_and(|t| t.values().all(|v| v["healthy"].as_bool() == Some(true)));
                    if st["ready"].as_bool() != Some(true) || !all_healthy {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue 'outer;
                    }
                }
            }
            return;
        }
        panic!("the outage fleet did not become ready and healthy");
    }
}

/// `GET /v1/status?window=10` of one proxy, or `None` when it does not answer in time.
pub async fn status(admin: SocketAddr) -> Option<Value> {
    get_json(&format!("http://{admin}/v1/status?window=10")).await
}

/// The table a proxy has, or `None` when it does not answer in time.
pub async fn table(admin: SocketAddr) -> Option<Value> {
    get_json(&format!("http://{admin}/v1/table")).await
}

async fn get_json(url: &str) -> Option<Value> {
    let client = super::h1_client();
    let resp =
        tokio::time::timeout(Duration::from_secs(2), client.get(url.parse().ok()?)).await.ok()?.ok()?;
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

/// The share of its own traffic a region keeps in a table (`None` row: all of it).
pub fn keeps(table: &Value, region: &str) -> f64 {
    let Some(row) = table["weights"][region].as_object() else { return 1.0 };
    let sum: f64 = row.values().filter_map(Value::as_f64).sum();
    if sum <= 0.0 {
        return 1.0;
    }
    row.get(region).and_then(Value::as_f64).unwrap_or(0.0) / sum
}

/// One answered (or failed) client request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// When it was sent, since the load started.
    pub sent: Duration,
    pub region: String,
    pub ok: bool,
    pub detail: String,
}

/// A steady client load on every region's proxies (public listeners), round robin.
pub struct Load {
    pub started: Instant,
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `rps` requests per second per region, to the proxies listed (by public address).
    pub fn start(targets: Vec<(String, Vec<SocketAddr>)>, rps: u32) -> Load {
        let started = Instant::now();
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (region, addrs) in targets {
            let (answers, stop) = (answers.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let client = super::h1_client();
                let gap = Duration::from_secs_f64(1.0 / rps.max(1) as f64);
                let mut n = 0usize;
                // Bounded: at most ten minutes of load.
                while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(600) {
                    let addr = addrs[n % addrs.len()];
                    n += 1;
                    let (client, answers, region) = (client.clone(), answers.clone(), region.clone());
                    let sent = started.elapsed();
                    tokio::spawn(async move {
                        let url: http::Uri = format!("http://{addr}/load").parse().expect("url");
                        let r = tokio::time::timeout(Duration::from_secs(5), client.get(url)).await;
                        let (ok, detail) = match r {
                            Ok(Ok(resp)) => {
                                let s = resp.status();
                                let from = resp
                                    .headers()
                                    .get("x-flowgate-region")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("-")
                                    .to_owned();
                                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                                (s.is_success(), format!("{s} from {from}"))
                            }
                            Ok(Err(e)) => (false, format!("error: {e}")),
                            Err(_) => (false, "timeout".to_owned()),
                        };
                        if let Ok(mut a) = answers.lock() {
                            a.push(Answer { sent, region, ok, detail });
                        }
                    });
                    tokio::time::sleep(gap).await;
                }
            }));
        }
        Load { started, answers, stop, tasks }
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Stops sending and waits for the answers still on their way (at most 6 s).
    pub async fn stop(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut last = usize::MAX;
        while Instant::now() < deadline {
            let n = self.answers.lock().map(|a| a.len()).unwrap_or(0);
            if n == last {
                break;
            }
            last = n;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.answers.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// The built binary running `flowgate autopilot`, its decision lines collected.
pub struct AutopilotProcess {
    pub child: Child,
    pub listen: SocketAddr,
    lines: Arc<Mutex<Vec<Value>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl AutopilotProcess {
    pub fn spawn(fleet_file: &Path, args: &[&str]) -> AutopilotProcess {
        let listen = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowgate"))
            .args(["autopilot", "--fleet"])
            .arg(fleet_file)
            .args(["--listen", &listen.to_string()])
            .args(args)
            .env("FLOWGATE_ADMIN_TOKEN", TOKEN)
            .env_remove("FLOWGATE_AUTOPILOT_STATE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn autopilot");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (out, err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("a decision line that is not JSON ({e}): {line}"));
                if let Ok(mut l) = l2.lock() {
                    l.push(v);
                }
            }
        });
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut l) = e2.lock() {
                    l.push(line);
                }
            }
        });
        AutopilotProcess { child, listen, lines, stderr }
    }

    pub fn decisions(&self) -> Vec<Value> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until a decision matches, at most `limit`; returns it.
    pub async fn wait_for(&self, limit: Duration, what: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(d) = self.decisions().into_iter().find(|d| what(d)) {
                return Some(d);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    pub fn dump(&self) -> String {
        let mut s = String::new();
        for d in self.decisions() {
            s.push_str(&format!("{}\n", d));
        }
        for l in self.stderr.lock().map(|l| l.clone()).unwrap_or_default() {
            s.push_str(&format!("stderr: {l}\n"));
        }
        s
    }

    /// SIGTERM, then the exit status (the autopilot exits 0 on it).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for AutopilotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a hook-recording script: every call appends its FLOWGATE_ variables to `file`.
pub fn recording_hook(dir: &Path, name: &str) -> (String, PathBuf) {
    let file = dir.join(format!("{name}.log"));
    let cmd = format!(
        "echo \"region=$FLOWGATE_REGION phase=$FLOWGATE_PHASE trigger=$FLOWGATE_TRIGGER\" >> '{}'",
        file.display()
    );
    (cmd, file)
}
