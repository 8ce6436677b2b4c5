//! From readings to decisions: `--confirm`, the safety rails, and at most one action.
//!
//! A region's reading must stay "failing" for `--confirm` before its verdict is
//! `failing`; a shorter blip changes nothing. A failing region is evacuated unless a rail
//! holds it back, checked in this order:
//!
//! 1. it is already evacuated (by anyone: its own row serves nothing locally);
//! 2. the autopilot is paused;
//! 3. another region is evacuated by the autopilot (one at a time);
//! 4. the cooldown after the last action has not run out;
//! 5. fewer than `--min-healthy-regions` healthy regions would remain (regions neither
//!    evacuated nor failing, the candidate left out);
//! 6. another region's action was already chosen in this round.
//!
//! A region the autopilot evacuated that has looked healthy for `--auto-restore` comes
//! back the same way (paused, cooldown and one-action-per-round hold it too); without
//! `--auto-restore` the autopilot only says, once, that it looks healthy again.
//!
//! Decisions are emitted when a region's verdict, action or kind of reason changes, so the
//! log reads as a story rather than a heartbeat.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::judge::{Evidence, Reading};

/// The rails and timers, from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Rails {
    pub(crate) confirm: Duration,
    pub(crate) min_healthy_regions: usize,
    pub(crate) auto_restore: Option<Duration>,
}

/// `healthy`, `suspect` or `failing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    Healthy,
    Suspect,
    Failing,
}

/// `none`, `evacuate`, `restore` or `held`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    None,
    Evacuate,
    Restore,
    Held,
}

/// How a [`Verdict`] or an [`Action`] is spelled in the decision records: the same word
/// labels its metrics and goes to the `--notify` command.
pub(crate) fn spelled(word: impl Serialize) -> String {
    serde_json::to_value(word).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// What the controller knows beyond this round's readings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context {
    /// Regions whose own row serves nothing locally in the table in force.
    pub(crate) evacuated: BTreeSet<String>,
    /// The region the autopilot evacuated and has not restored.
    pub(crate) ours: Option<String>,
    pub(crate) paused: bool,
    /// Time left before the next action may start.
    pub(crate) cooldown_left: Option<Duration>,
}

/// One decision about one region.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Decision {
    pub(crate) region: String,
    pub(crate) verdict: Verdict,
    pub(crate) action: Action,
    /// A short, stable name for the reason (`confirming`, `quorum-missing`, `paused`, ...).
    pub(crate) rule: &'static str,
    pub(crate) why: String,
    pub(crate) evidence: Evidence,
}

#[derive(Debug, Default)]
struct Track {
    failing_since: Option<Instant>,
    healthy_since: Option<Instant>,
    last: Option<(Verdict, Action, &'static str)>,
}

/// Per-region timers and what was said last.
#[derive(Debug, Default)]
pub(crate) struct Controller {
    tracks: BTreeMap<String, Track>,
}

impl Controller {
    /// Decides every region for this round. Returns every decision (for the page) and
    /// which of them are news (for the log and `--notify`).
    pub(crate) fn round(
        &mut self,
        now: Instant,
        readings: &BTreeMap<String, (Evidence, Reading)>,
        ctx: &Context,
        rails: &Rails,
    ) -> Vec<(Decision, bool)> {
        for (r, (_, reading)) in readings {
            let t = self.tracks.entry(r.clone()).or_default();
            match reading {
                Reading::Failing { .. } => {
                    t.failing_since.get_or_insert(now);
                    t.healthy_since = None;
                }
                Reading::Suspect { .. } => {
                    t.failing_since = None;
                    t.healthy_since = None;
                }
                Reading::Healthy => {
                    t.failing_since = None;
                    t.healthy_since.get_or_insert(now);
                }
            }
        }
        let confirmed = |tracks: &BTreeMap<String, Track>, r: &str| {
            tracks
                .get(r)
                .and_then(|t| t.failing_since)
                .is_some_and(|s| now.duration_since(s) >= rails.confirm)
        };
        let not_failing: BTreeSet<&String> = readings
            .iter()
            .filter(|(r, (_, reading))| {
                !matches!(reading, Reading::Failing { .. }) && !ctx.evacuated.contains(*r)
            })
            .map(|(r, _)| r)
            .collect();
        let mut acted = false;
        let mut out = Vec::new();
        for (region, (evidence, reading)) in readings {
            let (verdict, action, rule, why) = match reading {
                Reading::Failing { why } if !confirmed(&self.tracks, region) => {
                    let since = self.tracks.get(region).and_then(|t| t.failing_since).unwrap_or(now);
                    let held = now.duration_since(since);
                    (
                        Verdict::Suspect,
                        Action::None,
                        "confirming",
                        format!(
                            "failing for {:.0} s of --confirm {:.0} s: {why}",
                            held.as_secs_f64(),
                            rails.confirm.as_secs_f64()
                        ),
                    )
                }
                Reading::Failing { why } => {
                    let remaining: Vec<&str> =
                        not_failing.iter().filter(|r| **r != region).map(|r| r.as_str()).collect();
                    let (action, rule, because) = if ctx.evacuated.contains(region) {
                        (Action::None, "evacuated", "it is evacuated".to_owned())
                    } else if ctx.paused {
                        (
                            Action::Held,
                            "paused",
                            "the autopilot is paused (flowgate autopilot resume)".to_owned(),
                        )
                    } else if let Some(other) = ctx.ours.as_ref().filter(|o| *o != region) {
                        (
                            Action::Held,
                            "one-at-a-time",
                            format!("one region at a time: {other} is evacuated by the autopilot"),
                        )
                    } else if let Some(left) = ctx.cooldown_left {
                        (
                            Action::Held,
                            "cooldown",
                            format!(
                                "cooling down after the last action for {:.0} s more",
                                left.as_secs_f64()
                            ),
                        )
                    } else if remaining.len() < rails.min_healthy_regions {
                        (
                            Action::Held,
                            "min-healthy-regions",
                            format!(
                                "evacuating it would leave {} healthy region(s) ({}), fewer than --min-healthy-regions {}",
                                remaining.len(),
                                if remaining.is_empty() { "none".to_owned() } else { remaining.join(", ") },
                                rails.min_healthy_regions
                            ),
                        )
                    } else if acted {
                        (
                            Action::Held,
                            "one-at-a-time",
                            "another region's action comes first this round".to_owned(),
                        )
                    } else {
                        acted = true;
                        (Action::Evacuate, "evacuate", "evacuating".to_owned())
                    };
                    (Verdict::Failing, action, rule, format!("{because}: {why}"))
                }
                Reading::Suspect { why, quorum_missing } => {
                    let held = *quorum_missing && !evidence.own_view.is_empty();
                    if held {
                        (Verdict::Suspect, Action::Held, "quorum-missing", format!("not evacuated: {why}"))
                    } else {
                        (Verdict::Suspect, Action::None, "suspect", why.clone())
                    }
                }
                Reading::Healthy => {
                    let since = self.tracks.get(region).and_then(|t| t.healthy_since).unwrap_or(now);
                    let healthy_for = now.duration_since(since);
                    if ctx.ours.as_deref() == Some(region.as_str()) {
                        match rails.auto_restore {
                            Some(d) if healthy_for >= d => {
                                if ctx.paused {
                                    (
                                        Verdict::Healthy,
                                        Action::Held,
                                        "paused",
                                        "healthy again, but the autopilot is paused".to_owned(),
                                    )
                                } else if let Some(left) = ctx.cooldown_left {
                                    (
                                        Verdict::Healthy,
                                        Action::Held,
                                        "cooldown",
                                        format!(
                                            "healthy again; cooling down for {:.0} s more before restoring",
                                            left.as_secs_f64()
                                        ),
                                    )
                                } else if acted {
                                    (
                                        Verdict::Healthy,
                                        Action::Held,
                                        "one-at-a-time",
                                        "another action comes first this round".to_owned(),
                                    )
                                } else {
                                    acted = true;
                                    (
                                        Verdict::Healthy,
                                        Action::Restore,
                                        "restore",
                                        format!(
                                            "healthy for {:.0} s (--auto-restore {:.0} s): restoring",
                                            healthy_for.as_secs_f64(),
                                            d.as_secs_f64()
                                        ),
                                    )
                                }
                            }
                            Some(d) => (
                                Verdict::Healthy,
                                Action::None,
                                "restore-waiting",
                                format!("healthy again; restoring after {:.0} s of health", d.as_secs_f64()),
                            ),
                            None if healthy_for >= rails.confirm => (
                                Verdict::Healthy,
                                Action::None,
                                "restore-manual",
                                format!(
                                    "healthy again for {:.0} s; restore is manual without --auto-restore: flowgate restore {region}",
                                    healthy_for.as_secs_f64()
                                ),
                            ),
                            None => (
                                Verdict::Healthy,
                                Action::None,
                                "evacuated",
                                "evacuated by the autopilot".to_owned(),
                            ),
                        }
                    } else {
                        (Verdict::Healthy, Action::None, "healthy", "no signal".to_owned())
                    }
                }
            };
            let t = self.tracks.entry(region.clone()).or_default();
            let key = (verdict, action, rule);
            let news = t.last != Some(key);
            t.last = Some(key);
            out.push((
                Decision { region: region.clone(), verdict, action, rule, why, evidence: evidence.clone() },
                news,
            ));
        }
        out
    }

    /// Forgets what was said, keeping the timers: a standby that becomes the leader says
    /// (and acts on) every current decision again, with the `--confirm` it already ran.
    pub(crate) fn forget_news(&mut self) {
        for t in self.tracks.values_mut() {
            t.last = None;
        }
    }

    /// Forgets a region's failing timer (after an action, so that a new episode needs a
    /// new `--confirm`).
    pub(crate) fn reset(&mut self, region: &str) {
        if let Some(t) = self.tracks.get_mut(region) {
            t.failing_since = None;
            t.healthy_since = None;
            t.last = None;
        }
    }
}

#[cfg(test)]
mod tests;
