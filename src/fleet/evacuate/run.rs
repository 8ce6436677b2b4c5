//! One direction, `evacuate` or `restore`: read the fleet, plan, show, confirm, claim,
//! then the hooks and the steps.

use super::survey::Current;
use super::{RunError, Runner};
use crate::fleet::plan::{self, PlanInput};
use crate::fleet::push::Proxy;
use crate::table::Table;

impl Runner<'_> {
    /// Plans, shows, confirms, runs hooks and executes one direction.
    pub(crate) async fn run(
        &mut self,
        region: &str,
        phase: &str,
        restore_to: Option<Table>,
    ) -> Result<(), RunError> {
        if !self.fleet.regions.contains_key(region) {
            return Err(RunError::Usage(format!(
                "unknown region `{region}` (the fleet file has: {})",
                self.fleet.regions.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let sides = self.phase_sides(region, phase);
        let Current { proxies, status: st, table, unreached, behind } = self.current(&sides).await?;
        let table = self.store_base(table).await?;
        if !unreached.is_empty() {
            self.say(format!(
                "{} proxies do not answer; going on without them (they catch up later): {}",
                unreached.len(),
                unreached.join("; ")
            ));
        }
        if !behind.is_empty() {
            self.say(format!("behind the newest version (they get the next one): {}", behind.join("; ")));
        }
        let demand = Self::demand(&st);
        let capacity = self.capacity();
        let input = PlanInput {
            table: &table,
            demand: &demand,
            capacity: &capacity,
            steps: self.opts.steps,
            max_utilization: self.opts.max_utilization,
        };
        let plan = match (phase, restore_to) {
            ("restore", Some(target)) => plan::restore(&input, region, &target),
            ("restore", None) => {
                let target = self.pre_evacuation_table(&proxies, region).await?;
                plan::restore(&input, region, &target)
            }
            _ => {
                // A region the table in force has evacuated already takes none of this
                // move: its spare capacity is large because it is out of service.
                let mut opts = self.opts.evacuate.clone();
                let out: Vec<String> = plan::evacuated(&table, self.fleet.regions.keys())
                    .into_iter()
                    .filter(|r| r != region && !opts.avoid.contains(r))
                    .collect();
                if !out.is_empty() {
                    self.say(format!(
                        "{} evacuated in the table in force (no row sends it traffic): it takes none of this move; restore it first to use it",
                        out.join(", ")
                    ));
                }
                opts.avoid.extend(out);
                plan::evacuate_with(&input, region, &opts)
            }
        };
        let plan = plan.map_err(|e| match e {
            plan::PlanError::NotEnoughCapacity { .. } => {
                RunError::Refused(format!("{phase} {region} refused before any push: {e}"))
            }
            other => RunError::Usage(other.to_string()),
        })?;
        if let Some(short) = &plan.shortfall {
            // Each region short of capacity, with the whole requests per second it lacks.
            let lacking = |each: fn(&str, f64) -> String| -> Vec<String> {
                short.missing.iter().filter(|(_, m)| **m > 0.0).map(|(r, m)| each(r, m.ceil())).collect()
            };
            let missing = lacking(|r, rps| format!("{r} needs {rps:.0} rps more capacity"));
            self.say(format!(
                "capacity is short: {region} keeps {:.1} % of its traffic ({:.0} rps) after this move; {}",
                short.kept_share * 100.0,
                short.kept_rps,
                missing.join(", ")
            ));
            // The pre-scale hook learns what to add: `REGION=RPS,...`.
            let env = lacking(|r, rps| format!("{r}={rps:.0}"));
            self.opts.hook_env.push(("FLOWGATE_MISSING_CAPACITY".into(), env.join(",")));
        }
        let text = self.describe(&plan, region, phase);
        if self.opts.json {
            crate::outln!(
                "{}",
                serde_json::json!({"plan": plan.tables, "load_before": plan.load_before, "load_after": plan.load_after})
            );
        } else if !self.opts.quiet {
            // The plan is the command's output (`--dry-run > plan.txt` keeps it); progress
            // goes to stderr.
            crate::out!("{text}");
        } else {
            self.journal.notes.push(text);
        }
        if self.opts.dry_run {
            let done = "dry run: nothing pushed";
            if !self.opts.json && !self.opts.quiet {
                crate::outln!("{done}");
            }
            self.journal.notes.push(done.into());
            return Ok(());
        }
        self.confirm(&format!("{phase} {region}"))?;
        let kind = if self.keep_claim { format!("exercise {region}") } else { format!("{phase} {region}") };
        let claimed = self.claim(&table, &kind).await?;
        let plan = plan.rebased(&table, &claimed);
        let result = self.claimed_run(&plan, &claimed, region, phase).await;
        match &result {
            // Someone else's table, or the rollback that cleared the claim already.
            Err(RunError::Moved(_)) | Err(RunError::RolledBack(_)) => {}
            Ok(()) => self.release("done").await,
            Err(_) => self.release("stopped").await,
        }
        result
    }

    /// The shares in force before the last evacuation of `region`, from a proxy's history.
    async fn pre_evacuation_table(&self, proxies: &[Proxy], region: &str) -> Result<Table, RunError> {
        let marker = format!("evacuate {region}: step 1 of ");
        for p in proxies {
            let Ok(history) = self.client.history(&p.addr).await else { continue };
            // Newest first: the newest first step of an evacuation of this region.
            let Some(first) =
                history.iter().find(|h| h.note.as_deref().is_some_and(|n| n.starts_with(&marker)))
            else {
                continue;
            };
            let Some(from) = first
                .note
                .as_deref()
                .and_then(|n| n.rsplit("(from version ").next())
                .and_then(|v| v.trim_end_matches(')').parse::<u64>().ok())
            else {
                continue;
            };
            if let Ok(t) = self.client.history_table(&p.addr, from).await {
                return Ok(t);
            }
        }
        Err(RunError::Usage(format!(
            "no evacuation of {region} found in the proxies' table history (it keeps the last 50 tables); give the shares to restore with --to TABLE"
        )))
    }
}
