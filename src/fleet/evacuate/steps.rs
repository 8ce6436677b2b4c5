//! A plan's steps pushed one by one, each conditional on the last, watched for
//! `--interval` and gated on every proxy's status.

use std::io::IsTerminal;

use super::journal::StepRecord;
use super::{Move, RunError, Runner};
use crate::fleet::plan::{self, Plan};
use crate::fleet::{claim, gate, push};
use crate::table::Table;

impl Runner<'_> {
    /// Pushes the plan step by step with gates; returns when the last step is in force.
    pub(super) async fn execute(
        &mut self,
        plan: &Plan,
        start: &Table,
        region: &str,
        phase: &str,
    ) -> Result<(), RunError> {
        let sides = self.sides(region, phase, start, plan);
        let baseline = self.current(&sides).await?.status;
        let ctx = Move { region, phase, sides: &sides, baseline: &baseline };
        let bar = if self.opts.json || self.opts.quiet || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            let b = indicatif::ProgressBar::new(plan.tables.len() as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix(format!("{phase} {region}"));
            b
        };
        let capacity = self.capacity();
        let mut last_good = start.clone();
        let of = plan.tables.len() as u32;
        for (i, step) in plan.tables.iter().enumerate() {
            let k = i as u32 + 1;
            let mut signed = step.clone();
            if let Some(op) = signed.operation.as_mut() {
                op.expires_at = claim::now() + self.claim_ttl().as_secs();
            }
            // The last step releases the claim (unless an exercise goes on to its restore).
            if k == plan.tables.len() as u32 && !self.keep_claim {
                signed.operation = None;
            }
            self.sign(&mut signed);
            let step = &signed;
            if let Some(why) = self.opts.hold.as_ref().and_then(|h| h()) {
                bar.abandon();
                let msg = format!(
                    "{phase} {region}: held before step {k} of {of} ({why}); version {} stays in force",
                    last_good.version
                );
                self.say(msg.clone());
                return Err(RunError::Held(msg));
            }
            let proxies = self.proxies().await?;
            let share = plan::shares(step.weights.get(region), region).get(region).copied().unwrap_or(0.0);
            if let Err(e) = self.write_store(step, &format!("{phase} {region}, step {k} of {of}")).await {
                bar.abandon();
                return Err(e);
            }
            // Conditional: each proxy takes the step only over the table this run put there.
            let results = push::push_if(&self.client, &proxies, step, Some(last_good.version)).await;
            // Refused for the token everywhere: nothing of this step is in force, and a
            // rollback would meet the same refusal.
            if let Some(why) = push::auth_refusal(&results)
                && !results.iter().any(push::PushResult::ok)
            {
                bar.abandon();
                let msg = format!(
                    "{phase} {region}: step {k} of {of} refused: {why}; nothing of it was applied, version {} stays in force",
                    last_good.version
                );
                return Err(RunError::Held(msg));
            }
            if let Some(moved) = self.moved_under(&results, &ctx).await {
                bar.abandon();
                self.say(moved.clone());
                return Err(RunError::Moved(moved));
            }
            let (blocking, unreached) = self.split_failures(&results, &ctx);
            let decision = if blocking.is_empty() {
                bar.set_message(format!(
                    "version {}, {region} keeps {:.1} % of its traffic",
                    step.version,
                    share * 100.0
                ));
                self.watch(self.opts.interval).await?;
                let window = self.opts.interval.as_secs().clamp(1, 60);
                let now = self.sample(window).await?;
                gate::check(&baseline, &now, &sides, &capacity, self.opts.max_error_ratio)
            } else {
                gate::Decision::push_refused(format!(
                    "{} proxies of receiving regions did not apply version {}: {}",
                    blocking.len(),
                    step.version,
                    blocking.join("; ")
                ))
            };
            let record = StepRecord {
                phase: phase.to_owned(),
                step: k,
                of,
                version: step.version,
                at: self.started.elapsed().as_secs_f64(),
                region_share: share,
                outcome: match &decision.why {
                    None => "ok".into(),
                    Some(why) if decision.rule == gate::PUSH_REFUSED => format!("push failed: {why}"),
                    Some(why) => format!("gate failed: {why}"),
                },
                rule: decision.rule.to_owned(),
                gate: decision.seen.clone(),
                unreached,
                ignored: decision.ignored.clone(),
            };
            self.record(region, record, &bar);
            bar.inc(1);
            if decision.rule != gate::PUSH_REFUSED {
                self.in_force = Some(step.clone());
            }
            if let Some(why) = decision.why {
                bar.abandon();
                return Err(self.stop(&last_good, step.version + 1, why, &ctx).await);
            }
            last_good = step.clone();
        }
        bar.finish();
        Ok(())
    }

    /// Which regions a plan drains and which it feeds: a region receives when its share,
    /// summed over every row, grows from `start` to the plan's end.
    fn sides(&self, region: &str, phase: &str, start: &Table, plan: &Plan) -> gate::Sides {
        let Some(end) = plan.tables.last() else { return self.phase_sides(region, phase) };
        let total = |t: &Table, target: &str| -> f64 {
            self.fleet
                .regions
                .keys()
                .map(|src| plan::shares(t.weights.get(src), src).get(target).copied().unwrap_or(0.0))
                .sum()
        };
        let mut sides = gate::Sides::default();
        for r in self.fleet.regions.keys() {
            if total(end, r) > total(start, r) + 1e-9 {
                sides.receiving.insert(r.clone());
            } else {
                sides.draining.insert(r.clone());
            }
        }
        sides
    }
}
