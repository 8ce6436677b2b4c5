//! The operator's hooks around a direction's steps: `--before-shift` before the first
//! push (pre-scaling), `--dns` after the last (only once the region is empty).

use super::{RunError, Runner};
use crate::fleet::plan::Plan;
use crate::table::Table;

impl Runner<'_> {
    /// Hooks, steps and gates of one direction, with the fleet claimed.
    pub(super) async fn claimed_run(
        &mut self,
        plan: &Plan,
        claimed: &Table,
        region: &str,
        phase: &str,
    ) -> Result<(), RunError> {
        if let Some(cmd) = self.opts.before_shift.clone() {
            self.hook(&cmd, region, &format!("before-{phase}")).await?;
        }
        self.execute(plan, claimed, region, phase).await?;
        let table = claimed;
        let done = if phase == "restore" { "restored" } else { "evacuated" };
        self.say(format!(
            "{phase} {region}: done, version {} in force fleet-wide",
            plan.tables.last().map(|t| t.version).unwrap_or(table.version)
        ));
        match (self.opts.dns.clone(), &plan.shortfall) {
            // DNS would move every client away at once: only once the region is empty.
            (Some(_), Some(short)) if phase == "evacuate" => self.say(format!(
                "DNS hook not run: {region} still serves {:.1} % of its traffic (capacity is short)",
                short.kept_share * 100.0
            )),
            (Some(cmd), _) => self.hook(&cmd, region, done).await?,
            (None, _) => {}
        }
        Ok(())
    }

    /// Runs `cmd` under `sh -c` with the region and the phase in its environment; a hook
    /// that fails stops the run where it is.
    async fn hook(&mut self, cmd: &str, region: &str, phase: &str) -> Result<(), RunError> {
        self.say(format!("running hook ({phase}): {cmd}"));
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("FLOWGATE_REGION", region)
            .env("FLOWGATE_PHASE", phase)
            .envs(self.opts.hook_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .status()
            .await
            .map_err(|e| RunError::Hook(format!("hook `{cmd}` ({phase}) could not start: {e}")))?;
        if !status.success() {
            return Err(RunError::Hook(format!("hook `{cmd}` ({phase}) failed: {status}")));
        }
        Ok(())
    }
}
