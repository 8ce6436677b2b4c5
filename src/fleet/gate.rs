//! The gate between the steps of a move: what a step may hurt is the regions it sends
//! traffic to, so only they are judged.
//!
//! A move has two sides. The *draining* regions lose traffic (the region being evacuated;
//! the others during a restore); the *receiving* regions gain it. In a real outage the
//! draining region is the broken one: its proxies may not answer, its errors are why the
//! move runs, and a falling error ratio there is the point. So its proxies may be
//! unreachable, unready or erroring without stopping anything (they are named, and catch
//! up later). A receiving region stops the run when, compared with the run's baseline:
//!
//! 1. `receiving-error-ratio`: what its origins served has an error ratio above the limit
//!    and above where it was;
//! 2. `receiving-readiness`: a proxy of it that answered and was ready no longer is (one
//!    restarted since, as its uptime shows, is a new pod catching up, not a toppling one);
//! 3. `receiving-health`: a proxy outside the draining regions that saw it healthy no
//!    longer does;
//! 4. `receiving-capacity`: it serves more than its whole `capacity_rps` (the plan kept it
//!    under `--max-utilization`; beyond 100 % it is toppling, not merely busy).
//!
//! Each decision names its rule, for the output and the `--json` records.

use std::collections::{BTreeMap, BTreeSet};

use super::status::FleetStatus;

/// The two sides of a move.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sides {
    pub(crate) draining: BTreeSet<String>,
    pub(crate) receiving: BTreeSet<String>,
}

impl Sides {
    /// Evacuating `region`: it drains, every other region receives.
    pub(crate) fn evacuate<'a>(region: &str, all: impl Iterator<Item = &'a String>) -> Sides {
        let (draining, receiving) = all.cloned().partition(|r| r == region);
        Sides { draining, receiving }
    }

    /// Restoring `region`: it receives, the others drain.
    pub(crate) fn restore<'a>(region: &str, all: impl Iterator<Item = &'a String>) -> Sides {
        let (receiving, draining) = all.cloned().partition(|r| r == region);
        Sides { draining, receiving }
    }
}

/// The rule that passed a step when nothing was wrong.
pub(crate) const PASSED: &str = "receiving-regions-ok";

/// What the gate decided about one step.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// [`PASSED`], or the name of the rule that failed.
    pub(crate) rule: &'static str,
    /// Why it failed; `None` when it passed.
    pub(crate) why: Option<String>,
    /// Per region, the error ratio of what its origins served.
    pub(crate) seen: BTreeMap<String, f64>,
    /// What the gate saw and deliberately did not count (the draining side's state).
    pub(crate) ignored: Vec<String>,
}

/// The rule of a step that some receiving proxy did not apply.
pub(crate) const PUSH_REFUSED: &str = "push-refused-by-receiving-region";

impl Decision {
    /// A step that receiving proxies did not take: nothing to judge, the run stops.
    pub(crate) fn push_refused(why: String) -> Decision {
        Decision { rule: PUSH_REFUSED, why: Some(why), seen: BTreeMap::new(), ignored: Vec::new() }
    }

    fn fail(mut self, rule: &'static str, why: String) -> Decision {
        self.rule = rule;
        self.why = Some(why);
        self
    }
}

/// Judges `now` against the run's `baseline`.
pub(crate) fn check(
    baseline: &FleetStatus,
    now: &FleetStatus,
    sides: &Sides,
    capacity: &BTreeMap<String, f64>,
    max_error_ratio: f64,
) -> Decision {
    let seen = now.regions.iter().map(|(r, s)| (r.clone(), s.served_error_ratio)).collect();
    let mut ignored = Vec::new();
    for r in &sides.draining {
        let Some(s) = now.regions.get(r) else { continue };
        if s.served_error_ratio > max_error_ratio {
            ignored.push(format!("{r} (draining): error ratio {:.2} %", s.served_error_ratio * 100.0));
        }
        if s.reachable < s.proxies || s.ready < s.reachable {
            ignored.push(format!(
                "{r} (draining): {} of {} proxies answer, {} ready",
                s.reachable, s.proxies, s.ready
            ));
        }
    }
    let d = Decision { rule: PASSED, why: None, seen, ignored };
    // Every receiving region over the limit, worst first.
    let mut over: Vec<(&String, f64, f64)> = sides
        .receiving
        .iter()
        .filter_map(|r| {
            let e = now.regions.get(r)?.served_error_ratio;
            let before = baseline.regions.get(r).map(|b| b.served_error_ratio).unwrap_or(0.0);
            (e > max_error_ratio && e > before).then_some((r, e, before))
        })
        .collect();
    if !over.is_empty() {
        over.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let why: Vec<String> = over
            .iter()
            .map(|(r, e, before)| {
                format!(
                    "region {r}: error ratio {:.2} % is above the limit of {:.2} % (it was {:.2} % before)",
                    e * 100.0,
                    max_error_ratio * 100.0,
                    before * 100.0
                )
            })
            .collect();
        return d.fail("receiving-error-ratio", why.join("; "));
    }
    for p in now.proxies.iter().filter(|p| sides.receiving.contains(&p.region)) {
        let was = baseline.proxies.iter().find(|b| b.addr == p.addr).and_then(|b| b.status.as_ref());
        let Some(was) = was else { continue };
        match &p.status {
            None => {
                let why = p.error.as_deref().unwrap_or("no answer");
                return d.fail(
                    "receiving-readiness",
                    format!("proxy {} of receiving region {} stopped answering: {why}", p.addr, p.region),
                );
            }
            // Restarted since the run began (a new pod): still catching up, and no load
            // balancer sends it traffic until it is ready; not a region toppling.
            Some(s) if s.uptime_seconds < was.uptime_seconds => {}
            Some(s) if was.ready && !s.ready => {
                return d.fail(
                    "receiving-readiness",
                    format!(
                        "proxy {} of receiving region {} is no longer ready ({})",
                        p.addr, p.region, s.state
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for p in now.proxies.iter().filter(|p| !sides.draining.contains(&p.region)) {
        let Some(st) = &p.status else { continue };
        let was = baseline.proxies.iter().find(|b| b.addr == p.addr).and_then(|b| b.status.as_ref());
        for (t, view) in st.targets.iter().filter(|(t, _)| sides.receiving.contains(*t)) {
            let was_healthy = was.and_then(|w| w.targets.get(t)).is_some_and(|w| w.healthy);
            if was_healthy && !view.healthy {
                return d.fail(
                    "receiving-health",
                    format!("proxy {} ({}) now sees receiving region {t} unhealthy", p.addr, p.region),
                );
            }
        }
    }
    for r in &sides.receiving {
        let (Some(s), Some(cap)) = (now.regions.get(r), capacity.get(r)) else { continue };
        let before = baseline.regions.get(r).map(|b| b.served_rps).unwrap_or(0.0);
        if s.served_rps > *cap && s.served_rps > before {
            return d.fail(
                "receiving-capacity",
                format!(
                    "receiving region {r} serves {:.0} rps, above its whole capacity of {cap:.0} rps",
                    s.served_rps
                ),
            );
        }
    }
    d
}

/// Why `region` looks broken now (so that a rollback must not send traffic back to it),
/// or `None` when it looks able to serve.
pub(crate) fn failing(now: &FleetStatus, region: &str, max_error_ratio: f64) -> Option<String> {
    let s = now.regions.get(region)?;
    if s.reachable == 0 {
        return Some(format!("none of {region}'s {} proxies answers", s.proxies));
    }
    if s.served_error_ratio > max_error_ratio {
        return Some(format!("{region}'s origins answer {:.1} % errors", s.served_error_ratio * 100.0));
    }
    if !s.origins_healthy {
        return Some(format!("{region}'s proxies report origins without a usable endpoint"));
    }
    if s.ready < s.proxies {
        return Some(format!(
            "{} of {region}'s {} proxies are not ready or not answering",
            s.proxies - s.ready,
            s.proxies
        ));
    }
    let unhealthy = now
        .proxies
        .iter()
        .filter(|p| p.region != region)
        .filter_map(|p| p.status.as_ref()?.targets.get(region))
        .filter(|t| !t.healthy)
        .count();
    if unhealthy > 0 {
        return Some(format!("{unhealthy} proxies of other regions see {region} unhealthy"));
    }
    None
}

#[cfg(test)]
mod tests;
