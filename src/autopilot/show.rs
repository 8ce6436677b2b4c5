//! What the autopilot's page and metrics show after a round: each region's verdict and
//! evidence, the pause switch and the proxies that do not answer.

use std::time::SystemTime;

use super::decide::{Decision, spelled};
use super::{Pilot, keeps, server, switch};
use crate::fleet::status::FleetStatus;
use crate::table::Table;

impl Pilot {
    /// Refreshes the page's view and the per-region metrics.
    pub(super) fn show(
        &self,
        st: &FleetStatus,
        table: Option<&Table>,
        decisions: &[(Decision, bool)],
        state: &switch::State,
        ours: Option<&str>,
    ) {
        let m = &self.shared.metrics;
        m.proxies_unreachable.set(st.unreachable as i64);
        let mut rows = Vec::new();
        for (d, _) in decisions {
            for v in ["healthy", "suspect", "failing"] {
                let on = spelled(d.verdict) == v;
                m.verdict.with_label_values(&[&d.region, v]).set(on as i64);
            }
            m.region_error_ppm
                .with_label_values(&[&d.region])
                .set((d.evidence.served_error_ratio * 1e6) as i64);
            let mut versions: Vec<u64> = st
                .proxies
                .iter()
                .filter(|p| p.region == d.region)
                .filter_map(|p| p.status.as_ref().map(|s| s.table_version))
                .collect();
            versions.sort_unstable();
            versions.dedup();
            rows.push(server::RegionRow {
                region: d.region.clone(),
                verdict: spelled(d.verdict),
                rule: d.rule.to_owned(),
                why: d.why.clone(),
                proxies: d.evidence.proxies,
                answering: d.evidence.proxies_answering,
                ready: d.evidence.proxies_ready,
                versions,
                served_rps: d.evidence.served_rps,
                served_error_ratio: d.evidence.served_error_ratio,
                keeps_share: table.map(|t| keeps(t, &d.region)),
            });
        }
        if let Ok(mut v) = self.shared.view.lock() {
            v.regions = rows;
            v.paused = state.paused;
            v.evacuated_by_autopilot = ours.map(str::to_owned);
            v.dry_run = self.opts.dry_run;
            v.last_round = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
            v.unreachable = st
                .proxies
                .iter()
                .filter_map(|p| p.error.as_ref().map(|e| format!("{} ({}): {e}", p.addr, p.region)))
                .collect();
        }
        // After the view: whoever sees the gauge flip finds the page flipped too.
        m.paused.set(state.paused as i64);
    }
}
