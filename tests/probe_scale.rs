//! Figures for the README: what health probes cost an idle fleet of three regions of 2, 10
//! and 30 proxy processes (the built binary, default `[health]` interval of 2 s), every
//! proxy probing every peer proxy (`peer_subset = 0`, as before subsetting) against the
//! default subset, and how long the other regions take to see a region die (its origin
//! and every proxy killed with SIGKILL).
//!
//! Ignored by default (up to 90 processes); in release mode, one at a time:
//!
//! ```text
//! cargo test --release --test probe_scale -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Each run prints one line and asserts what subsetting promises: with the subset, each
//! proxy's probes of the peers stay within their bound whatever the region size, and
//! every other proxy sees the dead region within the time the thresholds allow.

mod support;

use std::time::{Duration, Instant};

use support::admin::metric_sum;
use support::outage::{self, OutageFleet};
use support::wait::poll;
use support::{clock_ticks_per_second, process_ticks};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const INTERVAL: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(1);
/// How long the idle fleet is watched.
const WINDOW: Duration = Duration::from_secs(20);
const DEAD: &str = "eu-west-1";

async fn probes(fleet: &OutageFleet) -> f64 {
    let mut sum = 0.0;
    for r in &fleet.regions {
        for p in &r.proxies {
            sum += metric_sum(&support::admin::metrics(p.admin).await, "flowgate_probes_total", &[]);
        }
    }
    sum
}

fn cpu_ticks(fleet: &OutageFleet) -> u64 {
    fleet.regions.iter().flat_map(|r| r.proxies.iter()).map(|p| process_ticks(&p.pid().to_string())).sum()
}

async fn run(per_region: usize, subset: Option<usize>) {
    let _serial = SERIAL.lock().await;
    let extra = match subset {
        Some(k) => format!("peer_subset = {k}"),
        None => "peer_subset = 0".to_owned(),
    };
    let mut fleet = OutageFleet::start_tuned(per_region, INTERVAL, TIMEOUT, &extra).await;
    // A quiet spell after start-up, then the idle fleet watched: both are the figure's
    // conditions, not something to wait for.
    tokio::time::sleep(INTERVAL * 2).await;
    let (p0, c0, t0) = (probes(&fleet).await, cpu_ticks(&fleet), Instant::now());
    tokio::time::sleep(WINDOW).await;
    let (p1, c1, secs) = (probes(&fleet).await, cpu_ticks(&fleet), t0.elapsed().as_secs_f64());
    let rate = (p1 - p0) / secs;
    let cores = (c1 - c0) as f64 / clock_ticks_per_second() / secs;

    // A region dies: its origin and every proxy, at once.
    let dead = fleet.regions.iter().position(|r| r.name == DEAD).expect("region");
    let started = Instant::now();
    fleet.regions[dead].origin.kill();
    for p in &fleet.regions[dead].proxies {
        p.signal("KILL");
    }
    let watchers: Vec<std::net::SocketAddr> = fleet
        .regions
        .iter()
        .filter(|r| r.name != DEAD)
        .flat_map(|r| r.proxies.iter().map(|p| p.admin))
        .collect();
    let pending = std::cell::RefCell::new(watchers.clone());
    let last_seen = std::cell::Cell::new(Duration::ZERO);
    let _ = poll(INTERVAL * 10, Duration::from_millis(20), || async {
        let mut still = Vec::new();
        let now = std::mem::take(&mut *pending.borrow_mut());
        for admin in now {
            let seen = outage::status(admin).await.is_some_and(|st| st["targets"][DEAD]["healthy"] == false);
            if seen {
                last_seen.set(started.elapsed());
            } else {
                still.push(admin);
            }
        }
        let done = still.is_empty();
        *pending.borrow_mut() = still;
        if done { Ok(()) } else { Err(()) }
    })
    .await;
    let (pending, last_seen) = (pending.into_inner(), last_seen.get());
    let peers = 2 * per_region;
    let per_proxy = rate / (3 * per_region) as f64;
    println!(
        "{per_region} proxies per region, {}: {rate:.0} probes/s fleet-wide ({per_proxy:.1} per proxy, {peers} peer proxies each), idle CPU {:.1} % of a core, dead region seen by all {} other proxies in {:.2} s",
        match subset {
            Some(k) => format!("peer_subset = {k}"),
            None => "every peer proxy".to_owned(),
        },
        cores * 100.0,
        watchers.len(),
        last_seen.as_secs_f64(),
    );
    assert!(pending.is_empty(), "{} proxies never saw {DEAD} die", pending.len());
    // Detection: `unhealthy_threshold` (2) failed probes, each at most an interval
    // (+10 % jitter) plus the timeout apart, and the 250 ms judge loop.
    assert!(last_seen <= INTERVAL.mul_f64(2.2) + TIMEOUT * 2 + Duration::from_millis(500), "{last_seen:?}");
    if let Some(k) = subset {
        // Per proxy and interval: its origin, plus at most `k` (while all are up) of each
        // of the two peer regions' proxies.
        let bound = (1 + 2 * k.min(per_region)) as f64 / INTERVAL.as_secs_f64();
        assert!(per_proxy <= bound * 1.15, "{per_proxy:.1} probes/s per proxy, bound {bound:.1}");
    }
    for r in &mut fleet.regions {
        for p in &mut r.proxies {
            p.signal("KILL");
            let _ = p.wait_exit(Duration::from_secs(5));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts up to 90 proxy processes: run by hand, in release mode"]
async fn probes_on_3_regions_of_2_proxies() {
    run(2, None).await;
    run(2, Some(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts up to 90 proxy processes: run by hand, in release mode"]
async fn probes_on_3_regions_of_10_proxies() {
    run(10, None).await;
    run(10, Some(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts up to 90 proxy processes: run by hand, in release mode"]
async fn probes_on_3_regions_of_30_proxies() {
    run(30, None).await;
    run(30, Some(3)).await;
}
