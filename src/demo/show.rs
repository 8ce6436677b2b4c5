//! The show's timeline over a running world: the real `exercise` evacuates and restores
//! `EVACUATED` (crushing `CRUSHED`'s load balancer halfway through the hold, so that the
//! bypass engages), then the unplanned outage act; and the summary it ends with.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::load::Tally;
use super::world::{REGIONS, World};
use super::{CRUSHED, EVACUATED, Now, lb, outage};
use crate::fleet::client::AdminClient;
use crate::fleet::evacuate::{RunOptions, Runner, exercise};

/// What the show did, for the summary.
pub(crate) struct Played {
    result: Result<(), String>,
    act: outage::Outcome,
    evac: Duration,
    restore: Duration,
}

/// Plays the show over `world`, whose clients are already running, in about `duration`.
pub(crate) async fn run(
    world: &Arc<World>,
    now: &Arc<Now>,
    tally: &Tally,
    dir: &std::path::Path,
    duration: Duration,
) -> Played {
    // Timeline: a step every `interval`, three steps each way, the rest is the hold.
    let d = duration.max(Duration::from_secs(15));
    let interval = (d / 15).max(Duration::from_secs(1));
    let steps = 3u32;
    let warmup = interval;
    let hold = d.saturating_sub(warmup + interval * (2 * steps + 1)).max(Duration::from_secs(3));

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
    let result = exercise(&mut runner, EVACUATED, hold).await.map_err(|e| e.to_string());
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
    let act = outage::run(world, now, tally, dir, Duration::from_secs(4)).await;
    let (evac, restore) = phase_times(&runner, interval, total);
    Played { result, act, evac, restore }
}

/// Prints the summary of what `tally` counted; returns the show's exit code.
pub(crate) fn summary(played: &Played, tally: &Tally, now: &Now) -> u8 {
    let (ok, _) = tally.total();
    let [errors, during, after] = tally.phases();
    if !now.bypass_seen.load(Ordering::Relaxed) {
        crate::outln!("note: the bypass of {CRUSHED}'s load balancer was not observed in this run");
    } else {
        crate::outln!("bypass: {EVACUATED}'s proxies went around {CRUSHED}'s crushed load balancer and back");
    }
    if let Err(e) = &played.result {
        crate::outln!("exercise: {e}");
    }
    if errors > 0
        && let Ok(last) = tally.last_error.lock()
    {
        crate::outln!("last client error: {}", last.as_deref().unwrap_or("?"));
    }
    crate::outln!(
        "demo: {} requests, {errors} errors in the exercise, evacuated {EVACUATED} in {:.0}s, restored in {:.0}s; \
         outage: {}, {during} requests failed before the evacuation was in force, {after} after",
        ok + errors + during + after,
        played.evac.as_secs_f64(),
        played.restore.as_secs_f64(),
        played.act.note,
    );
    // The outage's failures before its evacuation are what the act shows; after it, and
    // anywhere in the planned exercise, one failed request is a failed demo.
    if errors == 0 && after == 0 && played.result.is_ok() && played.act.to_evacuation.is_some() {
        0
    } else {
        1
    }
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
