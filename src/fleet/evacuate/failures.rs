//! What a step's failed pushes mean: a receiving proxy that answered before the run stops
//! it, a draining or already unreachable one catches up later, and one on someone else's
//! newer table means the fleet moved under the run.

use super::{Move, Runner};
use crate::fleet::push;

impl Runner<'_> {
    /// When a receiving proxy that answered before the run is on another version than this
    /// run left there, the fleet moved under it: who moved it, from that proxy's history.
    pub(super) async fn moved_under(&self, results: &[push::PushResult], ctx: &Move<'_>) -> Option<String> {
        // A proxy behind the version this run left (a pod restarted empty, one that missed
        // a push) has not been moved: it catches up from its peers.
        let expected = self.in_force.as_ref().map(|t| t.version).unwrap_or(0);
        let r = results.iter().find(|r| {
            r.answer == "moved"
                && r.after.is_none_or(|v| v > expected)
                && ctx.sides.receiving.contains(&r.region)
                && ctx.baseline.proxies.iter().any(|p| p.addr == r.addr && p.status.is_some())
        })?;
        let by = match self.client.history(&r.addr).await {
            Ok(h) => h
                .first()
                .map(|e| {
                    format!(
                        "version {} applied at {} by {} ({})",
                        e.version,
                        e.applied_at,
                        e.who,
                        e.note.as_deref().unwrap_or("no note")
                    )
                })
                .unwrap_or_else(|| "an empty history".into()),
            Err(e) => format!("a history that cannot be read: {e}"),
        };
        Some(format!(
            "{} {}: the fleet moved under this run: proxy {} ({}) has {by}; stopped, nothing rolled back over it",
            ctx.phase, ctx.region, r.addr, r.region
        ))
    }

    /// Failed pushes, split into those that stop the run (a receiving proxy that answered
    /// before the run) and those tolerated (draining side, or already unreachable).
    pub(super) fn split_failures(
        &self,
        results: &[push::PushResult],
        ctx: &Move<'_>,
    ) -> (Vec<String>, Vec<String>) {
        let mut blocking = Vec::new();
        let mut tolerated = Vec::new();
        let expected = self.in_force.as_ref().map(|t| t.version).unwrap_or(0);
        for r in results.iter().filter(|r| !r.ok()) {
            let line = format!("{} ({}): {} {}", r.addr, r.region, r.answer, r.detail).trim_end().to_owned();
            let answered_before = ctx.baseline.proxies.iter().any(|p| p.addr == r.addr && p.status.is_some());
            // Behind this run's table (restarted empty, or it missed a push): it catches up.
            let lagging = r.answer == "moved" && r.after.is_some_and(|v| v < expected);
            if ctx.sides.receiving.contains(&r.region) && answered_before && !lagging {
                blocking.push(line);
            } else {
                tolerated.push(line);
            }
        }
        (blocking, tolerated)
    }
}
