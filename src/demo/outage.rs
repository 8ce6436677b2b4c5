//! The demo's second act: an unplanned outage. `OUTAGE`'s origin dies; nobody touches the
//! fleet; the real autopilot (in this process, on the product's own code path) sees the
//! region failing, confirms it and evacuates it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Now;
use super::load::Tally;
use super::world::{REGIONS, World};
use crate::autopilot::{Autopilot, Options};
use crate::fleet::plan;

/// The region whose origin dies.
const OUTAGE: &str = REGIONS[2];
/// How long the autopilot waits before it believes the failure.
const CONFIRM: Duration = Duration::from_secs(3);

/// What the act saw.
pub(crate) struct Outcome {
    /// From the origin's death to the evacuation table on every proxy.
    pub(crate) to_evacuation: Option<Duration>,
    pub(crate) note: String,
}

/// Whether every proxy of the world has a table where `region` keeps nothing.
fn evacuated_everywhere(world: &World, region: &str) -> bool {
    world.regions.iter().flat_map(|r| r.proxies.iter()).all(|p| {
        let table = p.control.proxy.load().tables.load();
        let keeps = plan::shares(table.table.weights.get(region), region).get(region).copied().unwrap_or(0.0);
        keeps <= 0.0
    })
}

/// Runs the act: autopilot up, origin killed, wait (bounded) for the evacuation, then
/// `after` of load on the evacuated fleet.
pub(crate) async fn run(
    world: &Arc<World>,
    now: &Now,
    tally: &Tally,
    dir: &std::path::Path,
    after: Duration,
) -> Outcome {
    let opts = Options {
        listen: "127.0.0.1:0".into(),
        interval: Duration::from_millis(500),
        confirm: CONFIRM,
        min_healthy_regions: 2,
        max_utilization: 0.8,
        steps: 2,
        step_interval: Duration::from_secs(1),
        auto_restore: None,
        cooldown: Duration::from_secs(300),
        dry_run: false,
        before_shift: None,
        dns: None,
        notify: None,
        max_error_ratio: 0.05,
        failing_error_ratio: 0.05,
        state_file: dir.join("autopilot-state.json"),
        timeout: Duration::from_secs(2),
        print: false,
        signer: None,
    };
    let pilot = match Autopilot::bind(world.fleet.clone(), opts).await {
        Ok(p) => p,
        Err(e) => {
            return Outcome { to_evacuation: None, note: format!("the autopilot could not start: {e}") };
        }
    };
    let shared = pilot.shared();
    let page = pilot.local_addr().map(|a| format!(" (its page: http://{a}/)")).unwrap_or_default();
    let stop = CancellationToken::new();
    let running = tokio::spawn(pilot.run(stop.clone()));
    now.set(format!("unplanned: the autopilot watches the fleet{page}"));
    // Bounded: its first round reads every proxy.
    for _ in 0..40 {
        if shared.view.lock().map(|v| v.regions.len() == world.regions.len()).unwrap_or(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(region) = world.regions.iter().find(|r| r.name == OUTAGE) else {
        stop.cancel();
        return Outcome { to_evacuation: None, note: format!("no region {OUTAGE}") };
    };
    let t0 = Instant::now();
    let _ = tally.outage_at.set(t0);
    region.origin.kill();
    now.set(format!("{OUTAGE}'s origin died; nobody is paged; the autopilot decides"));
    let deadline = t0 + CONFIRM + Duration::from_secs(30);
    let mut to_evacuation = None;
    while Instant::now() < deadline {
        if evacuated_everywhere(world, OUTAGE) {
            let _ = tally.evacuated_at.set(Instant::now());
            to_evacuation = Some(t0.elapsed());
            break;
        }
        let latest = shared.view.lock().ok().and_then(|v| {
            v.regions.iter().find(|r| r.region == OUTAGE).map(|r| format!("{}, {}", r.verdict, r.why))
        });
        if let Some(why) = latest {
            now.set(format!("autopilot on {OUTAGE}: {}", short(&why)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let note = match to_evacuation {
        Some(d) => {
            now.set(format!(
                "{OUTAGE} evacuated by the autopilot {:.1} s after its origin died; its clients are served elsewhere",
                d.as_secs_f64()
            ));
            tokio::time::sleep(after).await;
            format!(
                "{OUTAGE}'s origin died; the autopilot evacuated it {:.1}s after the failure",
                d.as_secs_f64()
            )
        }
        None => {
            format!("{OUTAGE}'s origin died; the autopilot did NOT evacuate it within {:?}", deadline - t0)
        }
    };
    stop.cancel();
    let _ = running.await;
    Outcome { to_evacuation, note }
}

/// The first clause of a decision's reason, for a one-line view.
fn short(why: &str) -> &str {
    let cut = why.find(';').unwrap_or(why.len()).min(110);
    let mut end = cut;
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    &why[..end]
}
