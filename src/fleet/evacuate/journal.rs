//! What a run saw and said: every step, a status sample about once a second and every
//! note, printed as they happen (a JSON line a step with `--json`) and kept for the
//! exercise report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{RunError, Runner};
use crate::fleet::status::{self, FleetStatus};
use crate::fleet::store_write;

/// One step as it happened, for `--json`, logs and the exercise report.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub phase: String,
    pub step: u32,
    pub of: u32,
    pub version: u64,
    /// Seconds since the run started.
    pub at: f64,
    /// The evacuated region's share of its own traffic after this step.
    pub region_share: f64,
    pub outcome: String,
    /// The rule that decided the step (`receiving-regions-ok`, or the one that failed:
    /// `receiving-error-ratio`, `receiving-readiness`, `receiving-health`,
    /// `receiving-capacity`, `push-refused-by-receiving-region`).
    pub rule: String,
    /// Per region error ratio the gate saw (what its origins served).
    pub gate: BTreeMap<String, f64>,
    /// Proxies this step could not reach or that did not apply it, in regions where that
    /// is tolerated (the draining side, or proxies already unreachable before the run):
    /// they must catch up later.
    pub unreached: Vec<String>,
    /// What the gate saw and did not count (the draining side's errors and readiness).
    pub ignored: Vec<String>,
}

/// Per region request rate and error ratio at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    pub at: f64,
    /// What the region's proxies answered (requests/s, error ratio), peers' requests too.
    pub regions: BTreeMap<String, (f64, f64)>,
    /// What the region's own origins served (requests/s, error ratio), whoever sent the
    /// requests: an evacuated region's figure falls to 0 while its proxies still answer.
    pub served: BTreeMap<String, (f64, f64)>,
    /// Client requests/s arriving at the region's public listeners.
    pub clients: BTreeMap<String, f64>,
}

/// Everything a run saw.
#[derive(Debug, Default, Serialize)]
pub struct Journal {
    pub steps: Vec<StepRecord>,
    pub samples: Vec<Sample>,
    pub notes: Vec<String>,
    /// When each step (same index as `steps`) was pushed, in seconds since the run
    /// started: its record is made after the step's `--interval` of watching, so the
    /// report marks the push here. Missing entries fall back to the record's `at`.
    #[serde(skip)]
    pub pushed_at: Vec<f64>,
    /// When the last watch began (a step's push is followed by one), for `pushed_at`.
    #[serde(skip)]
    watch_began: Option<f64>,
}

impl Journal {
    /// Whether any sample saw client requests (or, for samples without client figures,
    /// any request at all): an exercise on an idle fleet proves nothing about clients.
    pub fn saw_traffic(&self) -> bool {
        self.samples.iter().any(|s| {
            if s.clients.is_empty() && s.served.is_empty() {
                s.regions.values().any(|(rps, _)| *rps > 0.0)
            } else {
                s.clients.values().any(|rps| *rps > 0.0) || s.served.values().any(|(rps, _)| *rps > 0.0)
            }
        })
    }

    /// When step `i` was pushed (see [`Journal::pushed_at`]).
    pub fn step_pushed_at(&self, i: usize) -> f64 {
        let at = self.steps.get(i).map(|s| s.at).unwrap_or(0.0);
        self.pushed_at.get(i).copied().filter(|p| *p <= at).unwrap_or(at)
    }
}

impl Runner<'_> {
    /// Says `line` on stderr (unless `--json` or quiet) and keeps it among the notes.
    pub(super) fn say(&mut self, line: String) {
        if !self.opts.json && !self.opts.quiet {
            crate::errln!("{line}");
        }
        self.journal.notes.push(line);
    }

    /// Prints a step (a JSON line with `--json`) and keeps it in the journal.
    pub(super) fn record(&mut self, region: &str, record: StepRecord, bar: &indicatif::ProgressBar) {
        if self.opts.json {
            crate::outln!("{}", serde_json::to_string(&record).unwrap_or_default());
        } else if !self.opts.quiet {
            let mut line = format!(
                "{} {region}: step {}/{} version {} in force; {region} keeps {:.1} %; gate {} [rule {}]",
                record.phase,
                record.step,
                record.of,
                record.version,
                record.region_share * 100.0,
                record.outcome,
                record.rule
            );
            if !record.unreached.is_empty() {
                line.push_str(&format!(
                    "\n  not reached (they catch up later): {}",
                    record.unreached.join("; ")
                ));
            }
            if !record.ignored.is_empty() {
                line.push_str(&format!("\n  not counted (draining side): {}", record.ignored.join("; ")));
            }
            // A hidden bar (stderr not a terminal: CI, logs) prints nothing itself.
            if bar.is_hidden() {
                crate::errln!("{line}");
            } else {
                bar.println(line);
            }
        }
        // A pushed step was watched for `--interval` before its record: the push was when
        // that watch began. A refused push was not watched.
        let began = self.journal.watch_began.take();
        let pushed = began.filter(|_| record.rule != crate::fleet::gate::PUSH_REFUSED).unwrap_or(record.at);
        self.journal.pushed_at.push(pushed);
        self.journal.steps.push(record);
    }

    /// Records one status sample of every region.
    pub(super) async fn sample(&mut self, window: u64) -> Result<FleetStatus, RunError> {
        let proxies = self.proxies().await?;
        let st = status::gather(&self.client, &proxies, window).await;
        let at = self.started.elapsed().as_secs_f64();
        let regions = st.regions.iter().map(|(r, s)| (r.clone(), (s.rps, s.error_ratio))).collect();
        let served =
            st.regions.iter().map(|(r, s)| (r.clone(), (s.served_rps, s.served_error_ratio))).collect();
        let clients = st.regions.iter().map(|(r, s)| (r.clone(), s.source_rps)).collect();
        self.journal.samples.push(Sample { at, regions, served, clients });
        Ok(st)
    }

    /// Waits `d`, sampling about once a second for the report.
    pub(super) async fn watch(&mut self, d: Duration) -> Result<(), RunError> {
        let until = Instant::now() + d;
        self.journal.watch_began = Some(self.started.elapsed().as_secs_f64());
        while Instant::now() < until {
            if self.store.as_ref().is_some_and(|r| r.lease_lost()) {
                let msg = store_write::refused(&crate::store::StoreError::LeaseLost, "the run");
                self.say(msg.clone());
                return Err(RunError::Held(msg));
            }
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            self.sample(2).await?;
        }
        Ok(())
    }
}
