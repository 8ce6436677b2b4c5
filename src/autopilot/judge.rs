//! Judging one region from the whole fleet's statuses: the evidence, and whether it adds
//! up to "failing".
//!
//! Two views of a region `R` are kept apart:
//!
//! - **The autopilot's own view**, through `R`'s admin endpoints: whether its proxies
//!   answer and are ready, the error ratio of what `R`'s origins served, whether its
//!   origins have usable endpoints, and its successful requests per second against its
//!   own recent baseline (clients that stop arriving are an outage that error ratios miss).
//! - **Each other region's view**, from that region's proxies: whether they see `R`
//!   unhealthy (their probes of `R`'s peer listener), the error ratio of the requests they
//!   send to `R`, and what `R` itself reports about its origins in its health answer
//!   (which reaches them over the peer network, not the autopilot's).
//!
//! An observer region votes "failing" when any of its signals says so, "healthy" when its
//! proxies answer and none does, and abstains when none of its proxies answers. `R` is
//! failing only when at least `min(2, other regions)` observers vote failing, more vote
//! failing than healthy, and the autopilot's own view does not show `R` serving well. So
//! a controller cut off from `R` by its own network problem sees `R` suspect, never
//! failing: the other regions still see it healthy.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fleet::status::FleetStatus;
use crate::proxy::health::SERVED_WINDOW_SECONDS;

/// What makes a signal fire.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// An error ratio at or above this is a failure signal.
    pub(crate) error_ratio: f64,
    /// Fewer requests than this in a window make its error ratio noise, not a signal.
    pub(crate) min_requests: f64,
    /// Successful requests per second below this share of the baseline is a signal.
    pub(crate) drop_ratio: f64,
    /// A baseline below this many successful requests per second is too small to judge.
    pub(crate) min_baseline_rps: f64,
    /// The span of the statuses read, in seconds.
    pub(crate) window_seconds: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            error_ratio: 0.05,
            min_requests: 20.0,
            drop_ratio: 0.5,
            min_baseline_rps: 1.0,
            window_seconds: 10,
        }
    }
}

/// One other region's view of the judged region.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ObserverView {
    /// Its proxies that answered the autopilot.
    pub(crate) proxies_answering: usize,
    /// Of those, how many see the judged region unhealthy.
    pub(crate) see_unhealthy: usize,
    /// Requests per second they send to the judged region, and their error ratio.
    pub(crate) sent_rps: f64,
    pub(crate) sent_error_ratio: f64,
    /// The judged region's own figures as its health answers told them (the highest error
    /// ratio any of them heard), when recent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reported_error_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reported_rps: Option<f64>,
    /// `failing`, `healthy` or `abstains`.
    pub(crate) vote: &'static str,
    /// Why it votes failing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) because: Vec<String>,
}

/// Everything the verdict on one region rests on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Evidence {
    pub(crate) proxies: usize,
    pub(crate) proxies_answering: usize,
    pub(crate) proxies_ready: usize,
    /// Client requests per second arriving at the region's proxies (its demand).
    pub(crate) demand_rps: f64,
    /// What the region's origins served over the window (its proxies' local figures).
    pub(crate) served_rps: f64,
    pub(crate) served_error_ratio: f64,
    pub(crate) success_rps: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) success_baseline_rps: Option<f64>,
    /// The autopilot's own view: what is wrong, seen through the region's admin endpoints.
    pub(crate) own_view: Vec<String>,
    pub(crate) observers: BTreeMap<String, ObserverView>,
    /// Observer votes needed for a failing verdict.
    pub(crate) quorum: usize,
    pub(crate) failing_votes: usize,
    pub(crate) healthy_votes: usize,
}

/// What the evidence adds up to, before `--confirm`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reading {
    Healthy,
    /// Something is wrong but not enough for a verdict; `quorum_missing` when the only
    /// thing missing is the other regions' agreement (the decision log says so).
    Suspect {
        why: String,
        quorum_missing: bool,
    },
    Failing {
        why: String,
    },
}

/// Judges `region` from `st` (`baseline`: its recent successful requests per second).
pub(crate) fn judge(
    st: &FleetStatus,
    region: &str,
    baseline: Option<f64>,
    th: &Thresholds,
) -> (Evidence, Reading) {
    let window = th.window_seconds.max(1) as f64;
    let summary = st.regions.get(region).cloned().unwrap_or_default();
    let success_rps = summary.served_rps * (1.0 - summary.served_error_ratio);
    let mut own_view = Vec::new();
    if summary.reachable == 0 {
        own_view.push(format!("none of its {} proxies answers the autopilot", summary.proxies));
    } else {
        if summary.reachable < summary.proxies {
            own_view.push(format!(
                "{} of its {} proxies do not answer",
                summary.proxies - summary.reachable,
                summary.proxies
            ));
        }
        if summary.ready < summary.reachable {
            own_view.push(format!(
                "{} of its answering proxies are not ready",
                summary.reachable - summary.ready
            ));
        }
        if summary.served_rps * window >= th.min_requests && summary.served_error_ratio >= th.error_ratio {
            own_view.push(format!("its origins answer {:.1} % errors", summary.served_error_ratio * 100.0));
        }
        if !summary.origins_healthy {
            own_view.push("its proxies report origins with no usable endpoint".into());
        }
        if let Some(b) = baseline.filter(|b| *b >= th.min_baseline_rps)
            && success_rps < th.drop_ratio * b
        {
            own_view
                .push(format!("successful requests fell to {success_rps:.1}/s from a baseline of {b:.1}/s"));
        }
    }
    let mut observers = BTreeMap::new();
    for other in st.regions.keys().filter(|r| *r != region) {
        observers.insert(other.clone(), observe(st, other, region, th));
    }
    let failing_votes = observers.values().filter(|o| o.vote == "failing").count();
    let healthy_votes = observers.values().filter(|o| o.vote == "healthy").count();
    let quorum = observers.len().min(2);
    let serving_well = summary.reachable == summary.proxies && summary.proxies > 0 && own_view.is_empty();
    let evidence = Evidence {
        proxies: summary.proxies,
        proxies_answering: summary.reachable,
        proxies_ready: summary.ready,
        demand_rps: summary.source_rps,
        served_rps: summary.served_rps,
        served_error_ratio: summary.served_error_ratio,
        success_rps,
        success_baseline_rps: baseline,
        own_view: own_view.clone(),
        observers: observers.clone(),
        quorum,
        failing_votes,
        healthy_votes,
    };
    let voters: Vec<String> = observers
        .iter()
        .filter(|(_, o)| o.vote == "failing")
        .map(|(r, o)| format!("{r}: {}", o.because.join(", ")))
        .collect();
    let healthy: Vec<&String> =
        observers.iter().filter(|(_, o)| o.vote == "healthy").map(|(r, _)| r).collect();
    let reading = if quorum > 0 && failing_votes >= quorum && failing_votes > healthy_votes && !serving_well {
        let mut why = format!(
            "{failing_votes} of {} other regions see it failing ({})",
            observers.len(),
            voters.join("; ")
        );
        if !own_view.is_empty() {
            why.push_str(&format!("; the autopilot's own view: {}", own_view.join(", ")));
        }
        Reading::Failing { why }
    } else if failing_votes > 0 || !own_view.is_empty() {
        let mut parts = Vec::new();
        if !own_view.is_empty() {
            parts.push(format!("the autopilot's own view: {}", own_view.join(", ")));
        }
        if !voters.is_empty() {
            parts.push(format!("seen failing by {}", voters.join("; ")));
        }
        let quorum_missing = failing_votes < quorum || failing_votes <= healthy_votes;
        if quorum_missing {
            let names: Vec<&str> = healthy.iter().map(|s| s.as_str()).collect();
            parts.push(format!(
                "quorum not met: {failing_votes} of the {quorum} other regions needed agree{}",
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({} see it healthy)", names.join(", "))
                }
            ));
        } else if serving_well {
            parts.push("its own proxies show it serving well".into());
        }
        Reading::Suspect { why: parts.join("; "), quorum_missing }
    } else {
        Reading::Healthy
    };
    (evidence, reading)
}

/// How `observer`'s proxies see `region`.
fn observe(st: &FleetStatus, observer: &str, region: &str, th: &Thresholds) -> ObserverView {
    let mut v = ObserverView {
        proxies_answering: 0,
        see_unhealthy: 0,
        sent_rps: 0.0,
        sent_error_ratio: 0.0,
        reported_error_ratio: None,
        reported_rps: None,
        vote: "abstains",
        because: Vec::new(),
    };
    let mut errors = 0.0;
    for p in st.proxies.iter().filter(|p| p.region == observer) {
        let Some(s) = &p.status else { continue };
        v.proxies_answering += 1;
        let Some(t) = s.targets.get(region) else { continue };
        if !t.healthy {
            v.see_unhealthy += 1;
        }
        v.sent_rps += t.figures.rps;
        errors += t.figures.rps * t.figures.error_ratio;
        if let Some(r) = t.reported
            && r.rps * SERVED_WINDOW_SECONDS as f64 >= th.min_requests
            && v.reported_error_ratio.is_none_or(|e| r.error_ratio > e)
        {
            v.reported_error_ratio = Some(r.error_ratio);
            v.reported_rps = Some(r.rps);
        }
    }
    if v.proxies_answering == 0 {
        return v;
    }
    v.sent_error_ratio = if v.sent_rps > 0.0 { errors / v.sent_rps } else { 0.0 };
    if v.see_unhealthy * 2 > v.proxies_answering {
        v.because.push(format!("{} of {} proxies see it unhealthy", v.see_unhealthy, v.proxies_answering));
    }
    if v.sent_rps * th.window_seconds.max(1) as f64 >= th.min_requests && v.sent_error_ratio >= th.error_ratio
    {
        v.because.push(format!("{:.1} % of the requests sent to it fail", v.sent_error_ratio * 100.0));
    }
    if let Some(e) = v.reported_error_ratio.filter(|e| *e >= th.error_ratio) {
        v.because.push(format!("its health answers report {:.1} % errors", e * 100.0));
    }
    v.vote = if v.because.is_empty() { "healthy" } else { "failing" };
    v
}

#[cfg(test)]
mod tests;
