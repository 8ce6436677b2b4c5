//! `flowgate demo`: three regions on loopback, a steady client load, and the real
//! `exercise` code evacuating and restoring `us-east-1`; halfway, one region's load
//! balancer is crushed so that the bypass engages. Then an unplanned outage: `eu-west-1`'s
//! origin dies and the real autopilot evacuates it unattended. Everything runs on the product's own
//! code paths (`Server`, `Control`, the fleet runner); only the origins, the load
//! balancers and the clients are the demo's.

mod lb;
mod load;
mod origin;
mod outage;
mod view;
mod world;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::fleet::client::AdminClient;
use crate::fleet::evacuate::{RunOptions, Runner, exercise};
use world::{REGIONS, World};

/// The region the demo evacuates, and the one whose load balancer it crushes.
const EVACUATED: &str = REGIONS[0];
const CRUSHED: &str = REGIONS[1];

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    pub keep_running: bool,
}

/// Shared between the phases and the view: what is happening now.
pub(crate) struct Now {
    pub(crate) line: std::sync::Mutex<String>,
    pub(crate) bypass_seen: AtomicBool,
}

impl Now {
    fn set(&self, s: impl Into<String>) {
        if let Ok(mut l) = self.line.lock() {
            *l = s.into();
        }
    }

    pub(crate) fn get(&self) -> String {
        self.line.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Runs the demo; returns the process exit code (0 ok, 1 a client request failed or the
/// exercise failed).
pub async fn run(opts: DemoOptions) -> u8 {
    let dir = std::env::temp_dir().join(format!(
        "flowgate-demo-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: {}: {e}", dir.display());
        return 1;
    }
    let code = run_in(&dir, opts).await;
    let _ = std::fs::remove_dir_all(&dir);
    code
}

async fn run_in(dir: &std::path::Path, opts: DemoOptions) -> u8 {
    let token = crate::proxy::headers::new_request_id().to_str().unwrap_or("demo-token").to_owned();
    let world = match World::start(dir, &token).await {
        Ok(w) => Arc::new(w),
        Err(e) => {
            eprintln!("error: the demo could not start: {e}");
            return 1;
        }
    };
    // Timeline: a step every `interval`, three steps each way, the rest is the hold.
    let d = opts.duration.max(Duration::from_secs(15));
    let interval = (d / 15).max(Duration::from_secs(1));
    let steps = 3u32;
    let warmup = interval;
    let hold = d.saturating_sub(warmup + interval * (2 * steps + 1)).max(Duration::from_secs(3));

    let now = Arc::new(Now {
        line: std::sync::Mutex::new("starting three regions".into()),
        bypass_seen: AtomicBool::new(false),
    });
    let tally = Arc::new(load::Tally::new(REGIONS.len()));
    let stop_load = CancellationToken::new();
    let entries = world
        .regions
        .iter()
        .enumerate()
        .flat_map(|(r, reg)| reg.proxies.iter().map(move |p| (r, p.addrs.public)))
        .collect();
    let clients = load::start(entries, 1, Duration::from_millis(25), tally.clone(), stop_load.clone());
    let stop_view = CancellationToken::new();
    let view = tokio::spawn(view::run(
        world.clone(),
        now.clone(),
        tally.clone(),
        AdminClient::new(Some(token.clone()), Duration::from_secs(2)),
        stop_view.clone(),
    ));

    now.set(format!(
        "steady load over {} regions; evacuating {EVACUATED} in {:.0} s",
        REGIONS.len(),
        warmup.as_secs_f64()
    ));
    tokio::time::sleep(warmup).await;

    let crusher = tokio::spawn(crush_halfway(world.clone(), now.clone(), hold));
    let mut runner = Runner::new(
        &world.fleet,
        RunOptions {
            steps,
            interval,
            max_utilization: 0.8,
            max_error_ratio: 0.05,
            dry_run: false,
            yes: true,
            json: false,
            quiet: true,
            before_shift: None,
            dns: None,
            timeout: Duration::from_secs(5),
            hold: None,
            source_failing: false,
            evacuate: Default::default(),
            hook_env: Vec::new(),
            signer: None,
            force: false,
            autopilot: false,
            store_lease: None,
        },
    );
    now.set(format!(
        "evacuating {EVACUATED}: {steps} steps, one every {:.0} s, gated on every proxy's errors",
        interval.as_secs_f64()
    ));
    let t0 = Instant::now();
    let result = exercise(&mut runner, EVACUATED, hold).await;
    let total = t0.elapsed();
    crusher.abort();
    for r in &world.regions {
        r.lb.crush(false);
    }
    now.set(match &result {
        Ok(()) => format!("{EVACUATED} restored; the exercise passed"),
        Err(e) => format!("the exercise failed: {e}"),
    });
    tokio::time::sleep(interval).await;
    let act = outage::run(&world, &now, &tally, dir, Duration::from_secs(4)).await;
    stop_load.cancel();
    clients.wait().await;

    let (evac, restore) = phase_times(&runner, interval, total);
    let (ok, _) = tally.total();
    let [errors, during, after] = tally.phases();
    stop_view.cancel();
    let _ = view.await;
    if !now.bypass_seen.load(Ordering::Relaxed) {
        println!("note: the bypass of {CRUSHED}'s load balancer was not observed in this run");
    } else {
        println!("bypass: {EVACUATED}'s proxies went around {CRUSHED}'s crushed load balancer and back");
    }
    if let Err(e) = &result {
        println!("exercise: {e}");
    }
    if errors > 0
        && let Ok(last) = tally.last_error.lock()
    {
        println!("last client error: {}", last.as_deref().unwrap_or("?"));
    }
    println!(
        "demo: {} requests, {errors} errors in the exercise, evacuated {EVACUATED} in {:.0}s, restored in {:.0}s; \
         outage: {}, {during} requests failed before the evacuation was in force, {after} after",
        ok + errors + during + after,
        evac.as_secs_f64(),
        restore.as_secs_f64(),
        act.note,
    );
    if opts.keep_running {
        println!("still running; dashboards (Ctrl-C to stop):");
        for r in &world.regions {
            for p in &r.proxies {
                println!("  {:<10} http://{}/   (public http://{})", r.name, p.addrs.admin, p.addrs.public);
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
    if let Ok(w) = Arc::try_unwrap(world) {
        w.stop().await;
    }
    // The outage's failures before its evacuation are what the act shows; after it, and
    // anywhere in the planned exercise, one failed request is a failed demo.
    if errors == 0 && after == 0 && result.is_ok() && act.to_evacuation.is_some() { 0 } else { 1 }
}

/// How long the evacuation and the restore took, from the runner's step records.
fn phase_times(runner: &Runner<'_>, interval: Duration, total: Duration) -> (Duration, Duration) {
    let span = |phase: &str| {
        let steps: Vec<f64> =
            runner.journal.steps.iter().filter(|s| s.phase == phase).map(|s| s.at).collect();
        match (steps.first(), steps.last()) {
            (Some(first), Some(last)) => Duration::from_secs_f64((last - first).max(0.0)) + interval,
            _ => Duration::ZERO,
        }
    };
    let (e, r) = (span("evacuate"), span("restore"));
    (e.min(total), r.min(total))
}

/// Once the evacuation is complete, crush `CRUSHED`'s load balancer for the middle of the
/// hold, and note when the evacuated region's proxies bypass it.
async fn crush_halfway(world: Arc<World>, now: Arc<Now>, hold: Duration) {
    let Some(watch) = world.regions.iter().find(|r| r.name == EVACUATED).and_then(|r| r.proxies.first())
    else {
        return;
    };
    let marker = format!("evacuate {EVACUATED}: step ");
    // Bounded: the demo aborts this task when the exercise ends.
    loop {
        let table = watch.control.proxy.load().tables.load();
        let note = table.table.note.clone().unwrap_or_default();
        if note.starts_with(&marker) && note.contains("of") {
            let parts: Vec<&str> = note.split_whitespace().collect();
            if let (Some(k), Some(n)) = (parts.get(3), parts.get(5))
                && k == n
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    now.set(format!("{EVACUATED} evacuated; holding for {:.0} s", hold.as_secs_f64()));
    tokio::time::sleep(hold / 5).await;
    let Some(crushed) = world.regions.iter().find(|r| r.name == CRUSHED) else { return };
    crushed.lb.crush(true);
    now.set(format!(
        "{CRUSHED}'s load balancer is crushed (+{} ms per request); watching for the bypass",
        lb::CRUSHED_DELAY.as_millis()
    ));
    let until = Instant::now() + hold / 2;
    let client = AdminClient::new(world.fleet.token(), Duration::from_secs(2));
    let admin = watch.addrs.admin.to_string();
    while Instant::now() < until {
        if let Ok(st) = client.status(&admin, 5).await
            && st.targets.get(CRUSHED).is_some_and(|t| t.bypass_active)
            && !now.bypass_seen.swap(true, Ordering::Relaxed)
        {
            now.set(format!("bypass engaged: {EVACUATED}'s proxies talk to {CRUSHED}'s proxies directly"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    crushed.lb.crush(false);
    now.set(format!("{CRUSHED}'s load balancer recovered; restoring {EVACUATED} next"));
}
