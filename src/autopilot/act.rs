//! One action run to its end: an evacuation or a restore with the same runner as
//! `flowgate evacuate`, told that the region is failing, and its outcome recorded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::decide::{Action, Decision};
use super::{Pilot, judge, switch};
use crate::fleet::evacuate::{HoldCheck, RunError, RunOptions, Runner};
use crate::fleet::plan;

/// Steps of an outage evacuation. The ramp protects the receiving regions from load that
/// moves; when the failing region already serves (almost) nothing of its demand (its own
/// proxies fail its traffic over to healthy regions, or none of them answers), that load
/// has moved already and one step makes it official.
fn ramp_steps(e: &judge::Evidence, configured: u32) -> u32 {
    if e.proxies_answering == 0 || e.served_rps <= 0.1 * e.demand_rps { 1 } else { configured }
}

impl Pilot {
    /// Runs one evacuation or restore to its end and logs how it ended.
    pub(super) async fn act(
        &mut self,
        d: &Decision,
        avoid: BTreeSet<String>,
        store_lease: Option<crate::store::LeaseRef>,
        stop: &CancellationToken,
    ) {
        let evacuate = d.action == Action::Evacuate;
        let phase = if evacuate { "evacuate" } else { "restore" };
        let state_path = self.opts.state_file.clone();
        let hold: HoldCheck = Arc::new(move || match switch::load(&state_path) {
            Ok(s) if s.paused => Some("the autopilot was paused".into()),
            Ok(_) => None,
            Err(e) => Some(format!("its state cannot be read: {e}")),
        });
        let steps = if evacuate { ramp_steps(&d.evidence, self.opts.steps) } else { self.opts.steps };
        let opts = RunOptions {
            steps,
            interval: self.opts.step_interval,
            max_utilization: self.opts.max_utilization,
            max_error_ratio: self.opts.max_error_ratio,
            dry_run: self.opts.dry_run,
            yes: true,
            json: false,
            quiet: true,
            before_shift: self.opts.before_shift.clone(),
            dns: self.opts.dns.clone(),
            timeout: self.opts.timeout,
            hold: Some(hold),
            source_failing: evacuate,
            evacuate: plan::EvacuateOptions { avoid, partial: true },
            hook_env: vec![("FLOWGATE_TRIGGER".into(), "autopilot".into())],
            signer: self.opts.signer.clone(),
            force: false,
            autopilot: true,
            store_lease,
        };
        let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        if let Ok(mut v) = self.shared.view.lock() {
            v.operation = Some(format!("{phase} {} (since {started})", d.region));
        }
        self.shared.metrics.operation_in_progress.set(1);
        // Steps, their gates and retries, and up to half an hour of hooks (pre-scaling).
        let per_step = self.opts.step_interval + self.opts.timeout * 10;
        self.shared.liveness.busy(Some(per_step * steps + Duration::from_secs(1800)));
        let mut runner = Runner::new(&self.fleet, opts);
        let result = tokio::select! {
            r = runner.run(&d.region, phase, None) => r,
            _ = stop.cancelled() => Err(RunError::Held(format!("stopped by a signal during the {phase}; the fleet stays where it is"))),
        };
        self.shared.metrics.operation_in_progress.set(0);
        self.shared.liveness.busy(None);
        if let Ok(mut v) = self.shared.view.lock() {
            v.operation = None;
        }
        let moved = !runner.journal.steps.is_empty();
        let (outcome, why) = match &result {
            Ok(()) if self.opts.dry_run => {
                ("dry-run", format!("dry run: would {phase} {}; nothing pushed", d.region))
            }
            Ok(()) => ("done", format!("{phase} of {} done", d.region)),
            Err(e @ RunError::RolledBack(_)) => ("rolled-back", e.to_string()),
            Err(e @ RunError::Held(_)) => ("held", e.to_string()),
            Err(e @ RunError::Refused(_)) => ("refused", e.to_string()),
            Err(e @ RunError::Moved(_)) => ("moved", e.to_string()),
            Err(e) => ("failed", e.to_string()),
        };
        let mut why = why;
        if let Some(short) = runner.journal.notes.iter().find(|n| n.starts_with("capacity is short")) {
            why.push_str(&format!("; {short}"));
        }
        if !self.opts.dry_run {
            self.shared.metrics.actions.with_label_values(&[phase, outcome]).inc();
            let cooldown = switch::unix_now() + self.opts.cooldown.as_secs();
            let region = d.region.clone();
            let kept = evacuate && (result.is_ok() || (moved && outcome == "held"));
            let restored = !evacuate && result.is_ok();
            let saved = switch::update(&self.opts.state_file, |s| {
                s.cooldown_until = Some(cooldown);
                if kept {
                    s.evacuated = Some(region);
                } else if restored {
                    s.evacuated = None;
                }
            });
            if let Err(e) = saved {
                tracing::error!(error = %e, "autopilot: cannot record the action in its state file");
            }
        }
        let mut done = d.clone();
        done.rule = match outcome {
            "done" => {
                if evacuate {
                    "evacuated"
                } else {
                    "restored"
                }
            }
            "dry-run" => "dry-run",
            "rolled-back" => "rolled-back",
            "held" => "run-held",
            "refused" => "refused",
            "moved" => "moved",
            _ => "failed",
        };
        done.why = why;
        self.emit(&done, Some(outcome), Some(&runner.journal));
        self.controller.reset(&d.region);
    }
}
