//! What a run shows before it pushes (the plan, region by region) and the question it
//! asks unless `--yes`.

use std::io::IsTerminal;

use super::{RunError, Runner};
use crate::fleet::plan::Plan;

impl Runner<'_> {
    /// The plan as the operator reads it before saying yes: each region's load now and
    /// after against its capacity, then the evacuated region's row step by step.
    pub(super) fn describe(&self, plan: &Plan, region: &str, phase: &str) -> String {
        let mut s = format!(
            "{phase} {region}: {} steps, {:.0} rps change region; load per region now → after (limit {:.0} %):\n",
            plan.tables.len(),
            plan.moved_rps,
            self.opts.max_utilization * 100.0
        );
        for (r, before) in &plan.load_before {
            let after = plan.load_after.get(r).copied().unwrap_or(0.0);
            let cap = self.fleet.regions.get(r).map(|c| c.capacity_rps).unwrap_or(0.0);
            s.push_str(&format!(
                "  {r:<14} {before:>9.1} → {after:>9.1} rps  ({:.0} % of {cap:.0})\n",
                if cap > 0.0 { after / cap * 100.0 } else { 0.0 }
            ));
        }
        for t in &plan.tables {
            let own = t
                .weights
                .get(region)
                .map(|r| serde_json::to_string(r).unwrap_or_default())
                .unwrap_or_else(|| "(serves itself)".into());
            s.push_str(&format!("  version {}: {region} row {own}\n", t.version));
        }
        s
    }

    /// Asks before the first push unless `--yes`; refuses to ask a non-terminal.
    pub(super) fn confirm(&self, what: &str) -> Result<(), RunError> {
        if self.opts.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() {
            return Err(RunError::Usage(format!(
                "refusing to ask for confirmation of {what}: stdin is not a terminal (use --yes)"
            )));
        }
        crate::err!("proceed with {what}? [y/N] ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| RunError::Usage(e.to_string()))?;
        if matches!(line.trim(), "y" | "Y" | "yes") {
            Ok(())
        } else {
            Err(RunError::Refused("not confirmed; nothing pushed".into()))
        }
    }
}
