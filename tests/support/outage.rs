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
use super::admin::{try_get_json, try_get_json_with};
use super::config::{ProxyConfig, free_addr};
use super::origin::{self, Origin};
use super::run::flowgate_as;
use super::wait::{POLL, poll, poll_blocking, wait_for_every, wait_until};

pub const TOKEN: &str = "outage-test-token";
pub const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

pub struct Region {
    pub name: String,
    pub origin: Origin,
    pub proxies: Vec<ProxyProcess>,
    /// The config each proxy was started on, in the same order (to start one again).
    pub configs: Vec<ProxyConfig>,
}

pub struct OutageFleet {
    pub regions: Vec<Region>,
    pub dir: tempfile::TempDir,
    pub fleet_file: PathBuf,
    /// Every proxy's `[health] interval` (its probes of its origin and of every peer).
    pub health_interval: Duration,
}

/// The autopilot flags the outage tests run with (plus `--confirm`): fast enough to
/// finish within seconds.
pub const FAST: [&str; 10] =
    ["--interval", "500ms", "--steps", "2", "--step-interval", "1s", "--timeout", "1s", "--cooldown", "30s"];

/// `n` distinct free addresses for the proxies' peer listeners. Those must be known before
/// any proxy starts (every proxy lists them all), and each is bound only when its proxy
/// starts: meanwhile the proxies already running probe their peers, thousands of outgoing
/// connections a second with 60 of them, whose local ports come from the kernel's
/// ephemeral range and can take a port picked there. So they are picked below that range
/// (from a random point, checked free), where only explicit binds go.
fn peer_ports(n: usize) -> Vec<SocketAddr> {
    use std::hash::{BuildHasher, Hasher};
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(32768);
    let first: u32 = 10_000;
    if low <= first + 4 * n as u32 {
        return (0..n).map(|_| free_addr()).collect();
    }
    let span = low - first;
    let start =
        (std::collections::hash_map::RandomState::new().build_hasher().finish() % u64::from(span)) as u32;
    let mut out = Vec::new();
    for i in 0..span {
        let port = (first + (start + i) % span) as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(addr).is_ok() {
            out.push(addr);
            if out.len() == n {
                return out;
            }
        }
    }
    panic!("no {n} free ports under {low}");
}

impl OutageFleet {
    /// `per_region` proxies in each of the three regions, every row local; health probes
    /// every 200 ms (timeout 150 ms).
    pub async fn start(per_region: usize) -> OutageFleet {
        Self::start_tuned(per_region, Duration::from_millis(200), Duration::from_millis(150), "").await
    }

    /// Like `start`, with every proxy probing its origin and every peer proxy each
    /// `health_interval` (timeout half of it): larger fleets need a slower pace, since
    /// every proxy probes every proxy of the other regions.
    pub async fn start_with(per_region: usize, health_interval: Duration) -> OutageFleet {
        Self::start_tuned(per_region, health_interval, health_interval / 2, "").await
    }

    /// Like `start`, with the probes' interval and timeout given and `extra` appended to
    /// every proxy's config right after its `[health]` table: keys of that table first
    /// (e.g. `peer_subset = 0`), then any tables (e.g. `[store]`).
    pub async fn start_tuned(
        per_region: usize,
        interval: Duration,
        timeout: Duration,
        extra: &str,
    ) -> OutageFleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut origins = Vec::new();
        let mut peers: Vec<Vec<SocketAddr>> = Vec::new();
        for _ in REGIONS {
            origins.push(origin::start().await);
        }
        let mut ports = peer_ports(REGIONS.len() * per_region).into_iter();
        for _ in REGIONS {
            peers.push(ports.by_ref().take(per_region).collect());
        }
        let mut regions = Vec::new();
        for (i, (name, origin)) in REGIONS.iter().zip(origins).enumerate() {
            let (mut proxies, mut configs) = (Vec::new(), Vec::new());
            for peer in &peers[i] {
                let mut cfg = ProxyConfig::new(name, origin.addr)
                    .peer_listen(Some(peer))
                    .health(&format!("{}ms", interval.as_millis()), &format!("{}ms", timeout.as_millis()))
                    .health_line(extra);
                for (j, other) in REGIONS.iter().enumerate() {
                    if i != j {
                        cfg = cfg.peer(other, &peers[j]);
                    }
                }
                proxies.push(cfg.spawn(&[("FLOWGATE_ADMIN_TOKEN", TOKEN)]));
                configs.push(cfg);
            }
            regions.push(Region { name: name.to_string(), origin, proxies, configs });
        }
        let fleet_file = dir.path().join("fleet.toml");
        let fleet = OutageFleet { regions, dir, fleet_file, health_interval: interval };
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
                r.proxies.iter().map(|_| format!("\"{}\"", free_addr())).collect()
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

    /// The fleet file's path, as the commands take it.
    pub fn file(&self) -> String {
        self.fleet_file.to_str().expect("utf-8 path").to_owned()
    }

    /// Waits until every proxy is ready and sees every other region healthy (at most 20 s,
    /// or 20 health intervals when that is longer).
    pub async fn wait_ready(&self) {
        let limit = Duration::from_secs(20).max(self.health_interval * 20);
        let admins = admins(self, &[]);
        wait_for_every("the outage fleet to be ready and healthy", limit, POLL * 5, || async {
            for a in &admins {
                match status(*a).await {
                    Some(st) if super::admin::ready_and_healthy(&st) => {}
                    Some(st) => return Err(format!("{a}: {st}")),
                    None => return Err(format!("{a}: no answer")),
                }
            }
            Ok(())
        })
        .await
    }
}

/// Every region's proxies (by public address) but the ones in `skip`: the targets of a
/// `Load`.
pub fn targets(fleet: &OutageFleet, skip: &[SocketAddr]) -> Vec<(String, Vec<SocketAddr>)> {
    fleet
        .regions
        .iter()
        .map(|r| (r.name.clone(), r.proxies.iter().map(|p| p.public).filter(|a| !skip.contains(a)).collect()))
        .collect()
}

/// Every proxy's admin address but the ones in `skip`.
pub fn admins(fleet: &OutageFleet, skip: &[SocketAddr]) -> Vec<SocketAddr> {
    fleet
        .regions
        .iter()
        .flat_map(|r| r.proxies.iter().map(|p| p.admin))
        .filter(|a| !skip.contains(a))
        .collect()
}

/// Waits until every proxy of `admins` has a table where `region` keeps nothing; returns
/// when that was first known: the moment the last of them was seen so (each seen so from
/// then on). All of them are asked at once, every 100 ms, so that the moment does not
/// depend on how many there are.
pub async fn wait_evacuated(admins: &[SocketAddr], region: &str, limit: Duration) -> Option<Instant> {
    let client = super::h1_client();
    let since = std::cell::RefCell::new(vec![None::<Instant>; admins.len()]);
    let all_since = poll(limit, Duration::from_millis(100), || async {
        let seen = futures_util::future::join_all(admins.iter().map(|a| {
            let client = client.clone();
            async move {
                let t = try_get_json_with(&client, &format!("http://{a}/v1/table")).await;
                (t.is_some_and(|t| keeps(&t, region) <= 0.0), Instant::now())
            }
        }))
        .await;
        let mut since = since.borrow_mut();
        for (first, (evacuated, at)) in since.iter_mut().zip(seen) {
            if !evacuated {
                *first = None;
            } else if first.is_none() {
                *first = Some(at);
            }
        }
        if since.iter().all(Option::is_some) {
            Ok(since.iter().flatten().max().copied().unwrap_or_else(Instant::now))
        } else {
            Err(())
        }
    })
    .await;
    all_since.ok()
}

/// Waits until the autopilot has logged its first verdict on every region (at most 15 s).
pub async fn wait_watching(pilot: &AutopilotProcess) {
    let what = "a verdict of the autopilot on every region";
    let watching = poll(Duration::from_secs(15), Duration::from_millis(100), || async {
        let seen: std::collections::BTreeSet<String> =
            pilot.decisions().iter().filter_map(|d| d["region"].as_str().map(str::to_owned)).collect();
        if seen.len() == REGIONS.len() { Ok(()) } else { Err(()) }
    })
    .await;
    if watching.is_err() {
        panic!("waited for {what} in vain:\n{}", pilot.dump());
    }
}

/// `GET /v1/status?window=10` of one proxy, or `None` when it does not answer in time.
pub async fn status(admin: SocketAddr) -> Option<Value> {
    try_get_json(&format!("http://{admin}/v1/status?window=10")).await
}

/// The table a proxy has, or `None` when it does not answer in time.
pub async fn table(admin: SocketAddr) -> Option<Value> {
    try_get_json(&format!("http://{admin}/v1/table")).await
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
    /// Requests sent so far (each is answered, or fails, within 5 s).
    sent: Arc<std::sync::atomic::AtomicUsize>,
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The regions loaded.
    regions: Vec<String>,
}

impl Load {
    /// `rps` requests per second per region, to the proxies listed (by public address).
    pub fn start(targets: Vec<(String, Vec<SocketAddr>)>, rps: u32) -> Load {
        let started = Instant::now();
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sent_total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        let regions = targets.iter().map(|(r, _)| r.clone()).collect();
        for (region, addrs) in targets {
            let (answers, stop, sent_total) = (answers.clone(), stop.clone(), sent_total.clone());
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
                    sent_total.fetch_add(1, Ordering::SeqCst);
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
                    // The pace of the load.
                    tokio::time::sleep(gap).await;
                }
            }));
        }
        Load { started, sent: sent_total, answers, stop, tasks, regions }
    }

    /// Waits until every region has had `n` requests answered well (at most 30 s): the
    /// load is flowing everywhere.
    pub async fn wait_flowing(&self, n: usize) {
        wait_until("the load to flow into every region", Duration::from_secs(30), || async {
            let answers = self.answers();
            let mut per_region: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
            for a in answers.iter().filter(|a| a.ok) {
                *per_region.entry(a.region.as_str()).or_default() += 1;
            }
            self.regions.iter().all(|r| per_region.get(r.as_str()).is_some_and(|c| *c >= n))
        })
        .await;
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Stops sending and waits for the answers still on their way (each request has 5 s;
    /// at most 6 s).
    pub async fn stop(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        let sent = self.sent.load(Ordering::SeqCst);
        let answers = &self.answers;
        wait_until("every request of the load to be answered or to fail", Duration::from_secs(6), || async {
            answers.lock().map(|a| a.len()).unwrap_or(0) >= sent
        })
        .await;
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
        let listen = free_addr();
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
        let found = poll(limit, Duration::from_millis(100), || {
            let d = self.decisions().into_iter().find(|d| what(d));
            async move { d.ok_or(()) }
        });
        found.await.ok()
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
        let child = &mut self.child;
        poll_blocking(Duration::from_secs(10), Duration::from_millis(50), || {
            child.try_wait().ok().flatten().ok_or(())
        })
        .ok()
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

/// The arguments of `flowgate OP REGION --fleet FILE --steps N --interval I --timeout 1s
/// --yes` (OP: `evacuate` or `restore`), the fleet operation the outage tests run.
pub fn operation<'a>(
    op: &'a str,
    region: &'a str,
    file: &'a str,
    steps: &'a str,
    interval: &'a str,
) -> Vec<&'a str> {
    vec![op, region, "--fleet", file, "--steps", steps, "--interval", interval, "--timeout", "1s", "--yes"]
}

/// Runs the built binary with `args` and the fleet's admin token; exit code, stdout and
/// stderr (at most 90 s).
pub async fn flowgate(args: &[&str]) -> (Option<i32>, String, String) {
    let run = flowgate_as(TOKEN, args, Duration::from_secs(90)).await;
    (run.code, run.stdout, run.stderr)
}
