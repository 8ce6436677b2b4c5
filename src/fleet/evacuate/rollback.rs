//! After a failed step: the last good shares pushed back as a new version, unless that
//! would send traffic back to a failing region (then the run holds where it is).

use super::{Move, RunError, Runner};
use crate::fleet::{gate, push};
use crate::table::Table;

impl Runner<'_> {
    /// After a failed step: back to the last good shares, unless that would send traffic
    /// back to a region that is failing; then the run holds where it is.
    pub(super) async fn stop(
        &mut self,
        last_good: &Table,
        version: u64,
        why: String,
        ctx: &Move<'_>,
    ) -> RunError {
        if ctx.phase == "evacuate" {
            let failing = if self.opts.source_failing {
                Some(format!("{} was judged failing", ctx.region))
            } else {
                match self.sample(10).await {
                    Ok(now) => gate::failing(&now, ctx.region, self.opts.max_error_ratio),
                    Err(e) => Some(format!("its state cannot be read: {e}")),
                }
            };
            if let Some(because) = failing {
                let msg = format!(
                    "{why}; NOT rolled back, since that would move traffic back to {} ({because}): holding the shares in force",
                    ctx.region
                );
                self.say(msg.clone());
                return RunError::Held(msg);
            }
        }
        let mut back = last_good.clone();
        back.version = version;
        back.max_shift = None;
        back.note = Some(format!("rollback of {} {}: {why}", ctx.phase, ctx.region));
        // The run ends with its rollback: the claim goes with it.
        back.operation = None;
        self.sign(&mut back);
        self.in_force = Some(back.clone());
        self.say(format!("rolling back: pushing the last good shares as version {version}"));
        let proxies = match self.proxies().await {
            Ok(p) => p,
            Err(e) => {
                return RunError::RolledBack(format!("{why}; the rollback could not list the proxies: {e}"));
            }
        };
        if let Err(e) =
            self.write_store(&back, &format!("the rollback of {} {}", ctx.phase, ctx.region)).await
        {
            return RunError::Held(format!("{why}; NOT rolled back: {e}"));
        }
        // Over the failing step only: a proxy on someone else's table keeps it.
        let results = push::push_if(&self.client, &proxies, &back, Some(version - 1)).await;
        let (blocking, tolerated) = self.split_failures(&results, ctx);
        if blocking.is_empty() {
            let mut msg = format!(
                "{why}; rolled back to the shares of version {} as version {version}",
                last_good.version
            );
            if !tolerated.is_empty() {
                msg.push_str(&format!("; not reached (they catch up later): {}", tolerated.join("; ")));
            }
            RunError::RolledBack(msg)
        } else if let Some(token) = push::auth_refusal(&results) {
            // One line for a refused token, however many proxies refused it.
            RunError::RolledBack(format!(
                "{why}; ROLLBACK INCOMPLETE ({} receiving proxies did not take it): {token}",
                blocking.len()
            ))
        } else {
            RunError::RolledBack(format!("{why}; ROLLBACK INCOMPLETE: {}", blocking.join("; ")))
        }
    }
}
