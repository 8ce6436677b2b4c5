//! The fleet as a run finds it before it moves anything: who answers, on which version,
//! and the table in force; a receiving region that cannot take part stops the run here.

use std::collections::BTreeMap;

use super::{RunError, Runner};
use crate::fleet::push::Proxy;
use crate::fleet::status::{self, FleetStatus};
use crate::fleet::{claim, gate};
use crate::table::Table;

/// The fleet as a run found it.
pub(super) struct Current {
    pub(super) proxies: Vec<Proxy>,
    pub(super) status: FleetStatus,
    pub(super) table: Table,
    /// Proxies that did not answer (`addr (region): error`).
    pub(super) unreached: Vec<String>,
    /// Proxies on an older version than the newest (draining side only).
    pub(super) behind: Vec<String>,
}

impl Runner<'_> {
    /// Reads the fleet and the table in force. Proxies of the draining regions may be
    /// unreachable or behind (they are the broken side in an outage); a receiving region
    /// must answer through a majority of its proxies, all on one version (without a store),
    /// or nothing moves.
    pub(super) async fn current(&self, sides: &gate::Sides) -> Result<Current, RunError> {
        let proxies = self.proxies().await?;
        if proxies.is_empty() {
            return Err(RunError::Refused("the fleet has no proxy".into()));
        }
        let st = status::gather(&self.client, &proxies, 60).await;
        let mut unreached = Vec::new();
        for p in &st.proxies {
            if let Some(e) = &p.error {
                unreached.push(format!("{} ({}): {e}", p.addr, p.region));
            }
        }
        for r in &sides.receiving {
            let Some(s) = st.regions.get(r) else { continue };
            if s.reachable * 2 <= s.proxies {
                let down: Vec<&String> = unreached.iter().filter(|u| u.contains(&format!("({r})"))).collect();
                return Err(RunError::Refused(format!(
                    "receiving region {r} is unreachable ({} of {} proxies answer); nothing pushed: {}",
                    s.reachable,
                    s.proxies,
                    down.iter().map(|d| d.as_str()).collect::<Vec<_>>().join("; ")
                )));
            }
        }
        if !st.conflicts.is_empty() {
            let split: Vec<String> =
                st.conflicts.iter().map(|(v, d)| format!("version {v} has {} contents", d.len())).collect();
            return Err(RunError::Refused(format!(
                "the fleet is split ({}); nothing pushed: push one table to every proxy first (flowgate status shows who has which)",
                split.join(", ")
            )));
        }
        let newest = st.versions.last().copied().unwrap_or(0);
        let behind: Vec<String> = st
            .proxies
            .iter()
            .filter_map(|p| {
                let v = p.status.as_ref()?.table_version;
                (v != newest).then(|| format!("{} ({}) on version {v}", p.addr, p.region))
            })
            .collect();
        let receiving_behind = st.proxies.iter().any(|p| {
            sides.receiving.contains(&p.region)
                && p.status.as_ref().is_some_and(|s| s.table_version != newest)
        });
        // With a store the proxies converge from it and the run plans from its table: a
        // receiving proxy behind is one still catching up (often another run's step), and
        // the store's lock, taken before the first write, decides who runs.
        if receiving_behind && self.fleet.store.is_none() {
            // Often another operation's claim still reaching every proxy: name it.
            let newest_at =
                st.proxies.iter().find(|p| p.status.as_ref().is_some_and(|s| s.table_version == newest));
            if let Some(p) = newest_at
                && let Ok(t) = self.client.table(&p.addr).await
                && let Some(other) = claim::held_by_other(&t, self.operation.as_ref().map(|o| o.id.as_str()))
                && !self.opts.force
            {
                return Err(RunError::Refused(format!(
                    "refused: another operation is in progress (its claim is reaching the proxies): {}; wait for it, or take over with --force",
                    claim::describe(other)
                )));
            }
            return Err(RunError::Refused(format!(
                "the proxies disagree on the table version ({:?}); push one table to all of them first (flowgate push)",
                st.versions
            )));
        }
        // The table in force, from a receiving proxy on the newest version when there is one.
        let mut sources: Vec<&status::ProxyStatus> = st
            .proxies
            .iter()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.table_version == newest))
            .collect();
        sources.sort_by_key(|p| !sides.receiving.contains(&p.region));
        let mut last_error = String::from("no proxy answers");
        for p in sources {
            match self.client.table(&p.addr).await {
                Ok(table) => return Ok(Current { proxies, status: st, table, unreached, behind }),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(RunError::Refused(format!("cannot read the table in force: {last_error}")))
    }

    /// Client demand per region, summed over its proxies.
    pub(super) fn demand(st: &FleetStatus) -> BTreeMap<String, f64> {
        st.regions.iter().map(|(r, s)| (r.clone(), s.source_rps)).collect()
    }
}
