//! Figures for the README: how long the autopilot takes from a failure of us-east-1 to the
//! evacuation in force everywhere, and how many client requests fail in between and
//! after, on three regions of 2 and of 20 proxy processes (the built binaries).
//!
//! Ignored by default (the 3 × 20 runs start 60 proxy processes); one at a time:
//!
//! ```text
//! cargo test --test outage_scale -- --ignored --nocapture --test-threads 1
//! cargo test --test outage_scale kill_on_3_regions_of_20_proxies -- --ignored --nocapture
//! ```
//!
//! Defaults: health probes every 200 ms (timeout 150 ms) with 2 proxies per region, every
//! 1 s (timeout 500 ms) with 20 (every proxy probes its origin and every proxy of the
//! other regions: 60 processes doing that every 200 ms is too much for a small machine);
//! a client load of 20 requests per second per region, round robin over the region's
//! proxies. `OUTAGE_HEALTH_INTERVAL` (e.g. `1s`) and `OUTAGE_RPS` (e.g. `60`) override
//! them. Each run prints one line and asserts: evacuated within `--confirm` + 15 s, then
//! over the next 30 s no failed request (origin killed) or under 0.5 % (30 % errors).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::outage::{self, AutopilotProcess, FAST, Load, OutageFleet};
use support::{clock_ticks_per_second, process_ticks};

/// Each run is a fleet of processes: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const EAST: &str = "us-east-1";
const CONFIRM: &str = "3s";
/// How long the load is watched after the evacuation is in force.
const AFTER: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// us-east-1's origin killed: connections refused, its health checks fail.
    Kill,
    /// us-east-1's origin answers 30 % of client requests 500; `/healthz` passes.
    Errors,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Errors => "errors-30%",
        }
    }
}

fn env_duration(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .map(|v| humantime::parse_duration(&v).unwrap_or_else(|e| panic!("{name}={v}: {e}")))
        .unwrap_or(default)
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
        .unwrap_or(default)
}

/// The machine's CPU time so far, in clock ticks: (busy, total), from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// CPU use of the machine and of the fleet's processes between two moments.
struct Usage {
    at: Instant,
    machine: (u64, u64),
    proxies: u64,
    autopilot: u64,
    this: u64,
}

impl Usage {
    fn now(fleet: &OutageFleet, pilot: &AutopilotProcess) -> Usage {
        Usage {
            at: Instant::now(),
            machine: machine_ticks(),
            proxies: fleet
                .regions
                .iter()
                .flat_map(|r| &r.proxies)
                .map(|p| process_ticks(&p.pid().to_string()))
                .sum(),
            autopilot: process_ticks(&pilot.child.id().to_string()),
            this: process_ticks("self"),
        }
    }

    /// "machine busy %, cores used by the proxies, the autopilot, this test process".
    fn since(&self, before: &Usage) -> String {
        let hz = clock_ticks_per_second();
        let secs = self.at.duration_since(before.at).as_secs_f64().max(0.001);
        let cores = |a: u64, b: u64| a.saturating_sub(b) as f64 / hz / secs;
        let busy = self.machine.0.saturating_sub(before.machine.0) as f64
            / self.machine.1.saturating_sub(before.machine.1).max(1) as f64;
        format!(
            "cpu {:.0} % busy of {} cores (proxies {:.2}, autopilot {:.2}, test process with origins and load {:.2} cores)",
            busy * 100.0,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cores(self.proxies, before.proxies),
            cores(self.autopilot, before.autopilot),
            cores(self.this, before.this),
        )
    }
}

fn load_average() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The last decisions on us-east-1, for a failure message.
fn east_decisions(pilot: &AutopilotProcess) -> String {
    let d: Vec<String> =
        pilot.decisions().into_iter().filter(|d| d["region"] == EAST).map(|d| d.to_string()).collect();
    let tail = &d[d.len().saturating_sub(4)..];
    let stderr = pilot.stderr.lock().map(|l| l.join("\n")).unwrap_or_default();
    format!("last decisions on {EAST}:\n{}\nautopilot stderr:\n{stderr}", tail.join("\n"))
}

/// Failed requests by what they got ("500 from us-east-1", "timeout"...).
fn failure_kinds<'a>(answers: impl Iterator<Item = &'a outage::Answer>) -> String {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for a in answers.filter(|a| !a.ok) {
        *kinds.entry(a.detail.as_str()).or_default() += 1;
    }
    kinds.iter().map(|(k, n)| format!("{n}× {k}")).collect::<Vec<_>>().join(", ")
}

/// One run: the fleet, the autopilot, the load; us-east-1 broken; the figures printed
/// and asserted.
async fn scale_run(kind: Kind, per_region: usize, default_interval: Duration) {
    let _turn = SERIAL.lock().await;
    let interval = env_duration("OUTAGE_HEALTH_INTERVAL", default_interval);
    let rps = env_u32("OUTAGE_RPS", 20);
    let started = Instant::now();
    // At 200 ms, exactly the fleet of tests/autopilot.rs (probe timeout 150 ms).
    let fleet = if interval == Duration::from_millis(200) {
        OutageFleet::start(per_region).await
    } else {
        OutageFleet::start_with(per_region, interval).await
    };
    let start_up = started.elapsed();
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--confirm", CONFIRM]);
    let pilot = AutopilotProcess::spawn(&fleet.fleet_file, &args);
    outage::wait_watching(&pilot).await;
    let load = Load::start(outage::targets(&fleet, &[]), rps);
    load.wait_flowing(rps as usize).await;

    let before = Usage::now(&fleet, &pilot);
    let failed_at = load.started.elapsed();
    match kind {
        Kind::Kill => fleet.region(EAST).origin.kill(),
        Kind::Errors => fleet.region(EAST).origin.fail_share(500, 30),
    }
    let limit = humantime::parse_duration(CONFIRM).expect("confirm") + Duration::from_secs(15);
    let admins = outage::admins(&fleet, &[]);
    let what = format!(
        "{} proxies/region={per_region} health-interval={interval:?} load={rps}rps/region --confirm {CONFIRM}",
        kind.name()
    );
    let Some(in_force) = outage::wait_evacuated(&admins, EAST, limit + Duration::from_secs(5)).await else {
        let answers = load.stop().await;
        let failed = answers.iter().filter(|a| !a.ok && a.sent >= failed_at).count();
        eprintln!(
            "{what}: NOT evacuated within {:?}; {failed} of {} client requests failed since the failure",
            limit + Duration::from_secs(5),
            answers.iter().filter(|a| a.sent >= failed_at).count()
        );
        panic!("{EAST} was not evacuated within {limit:?}; {}", east_decisions(&pilot));
    };
    let in_force_at = in_force.duration_since(load.started);
    let took = in_force_at.saturating_sub(failed_at);
    pilot
        .wait_for(Duration::from_secs(20), |d| d["rule"] == "evacuated" && d["result"] == "done")
        .await
        .unwrap_or_else(|| panic!("the evacuation did not end as done; {}", east_decisions(&pilot)));
    // The load goes on for AFTER past the moment the evacuation was in force.
    let until = in_force + AFTER + Duration::from_millis(500);
    // The window measured after the evacuation.
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    let usage = Usage::now(&fleet, &pilot).since(&before);
    let load_avg = load_average();
    let rss_mib: u64 = fleet.regions.iter().flat_map(|r| &r.proxies).map(|p| p.rss_kib()).sum::<u64>() / 1024;
    let answers = load.stop().await;

    let between: Vec<&outage::Answer> =
        answers.iter().filter(|a| a.sent >= failed_at && a.sent < in_force_at).collect();
    let after: Vec<&outage::Answer> =
        answers.iter().filter(|a| a.sent >= in_force_at && a.sent < in_force_at + AFTER).collect();
    let failed_between = between.iter().filter(|a| !a.ok).count();
    let failed_after = after.iter().filter(|a| !a.ok).count();
    eprintln!(
        "{what}: evacuation in force {:.1} s after the failure; failed {failed_between}/{} client requests in between [{}]; failed {failed_after}/{} in the {} s after [{}]; fleet started in {:.1} s; {usage}; load average {load_avg}; proxies' RSS {rss_mib} MiB",
        took.as_secs_f64(),
        between.len(),
        failure_kinds(between.iter().copied()),
        after.len(),
        AFTER.as_secs(),
        failure_kinds(after.iter().copied()),
        start_up.as_secs_f64(),
    );

    assert!(took <= limit, "evacuated {took:?} after the failure, more than --confirm + 15 s");
    let expected = f64::from(rps) * outage::REGIONS.len() as f64 * AFTER.as_secs_f64();
    assert!(
        after.len() as f64 >= expected / 2.0,
        "the load must go on after the evacuation: {} requests sent, {expected} planned",
        after.len()
    );
    match kind {
        Kind::Kill => assert_eq!(
            failed_after,
            0,
            "requests failed after the evacuation was in force: {}",
            failure_kinds(after.iter().copied())
        ),
        Kind::Errors => {
            let ratio = failed_after as f64 / after.len().max(1) as f64;
            assert!(
                ratio < 0.005,
                "client error ratio after the evacuation: {ratio} ({failed_after} of {})",
                after.len()
            );
        }
    }
}

const TWO: (usize, Duration) = (2, Duration::from_millis(200));
const TWENTY: (usize, Duration) = (20, Duration::from_secs(1));

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a README figure: a fleet of processes for about a minute"]
async fn kill_on_3_regions_of_2_proxies() {
    scale_run(Kind::Kill, TWO.0, TWO.1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a README figure: a fleet of processes for about a minute"]
async fn errors_on_3_regions_of_2_proxies() {
    scale_run(Kind::Errors, TWO.0, TWO.1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a README figure: 60 proxy processes for about a minute"]
async fn kill_on_3_regions_of_20_proxies() {
    scale_run(Kind::Kill, TWENTY.0, TWENTY.1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a README figure: 60 proxy processes for about a minute"]
async fn errors_on_3_regions_of_20_proxies() {
    scale_run(Kind::Errors, TWENTY.0, TWENTY.1).await;
}
