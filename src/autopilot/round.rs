//! One round of the loop: read every proxy and the table in force, judge each region
//! against its baseline, decide, show, and (as the leader) act on what is news.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::decide::{Action, Context};
use super::judge::{self, Reading};
use super::{Pilot, keeps, leader, switch};
use crate::fleet::FleetFile;
use crate::fleet::client::AdminClient;
use crate::fleet::push;
use crate::fleet::status::{self, FleetStatus};
use crate::table::Table;

/// Per region: an exponentially weighted mean of its successful requests per second,
/// kept while it looks healthy and its inbound shares stay the same.
#[derive(Debug, Default, Clone)]
pub(super) struct Baseline {
    mean: f64,
    samples: u32,
    fingerprint: f64,
}

/// Rounds of health before a baseline counts.
const BASELINE_ROUNDS: u32 = 10;

/// The fleet's table in force, from the reachable proxy with the newest version.
async fn table_in_force(client: &AdminClient, st: &FleetStatus) -> Option<Table> {
    let mut order: Vec<&status::ProxyStatus> = st.proxies.iter().filter(|p| p.status.is_some()).collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.status.as_ref().map(|s| s.table_version)));
    for p in order.into_iter().take(3) {
        if let Ok(t) = client.table(&p.addr).await {
            return Some(t);
        }
    }
    None
}

impl Pilot {
    pub(super) async fn round(&mut self, stop: &CancellationToken) {
        if self.reload.swap(false, std::sync::atomic::Ordering::Relaxed) {
            match FleetFile::load(&self.fleet.file) {
                Ok(f) => {
                    tracing::warn!(file = %self.fleet.file.display(), regions = f.regions.len(), "autopilot: fleet file reloaded");
                    self.client = AdminClient::for_fleet(&f, self.opts.timeout);
                    self.fleet = f;
                }
                Err(e) => {
                    tracing::error!(error = %e, "autopilot: fleet file refused; keeping the one in force")
                }
            }
        }
        let proxies = push::proxies_or_unresolved(&self.fleet).await;
        let st = status::gather(&self.client, &proxies, self.th.window_seconds).await;
        let table = table_in_force(&self.client, &st).await;
        let state = match switch::load(&self.opts.state_file) {
            Ok(s) => s,
            Err(e) => {
                // The pause switch cannot be read: act as if paused, and say so.
                tracing::error!(error = %e, "autopilot: cannot read its state; acting as paused");
                switch::State { paused: true, ..Default::default() }
            }
        };
        let evacuated: BTreeSet<String> = match &table {
            Some(t) => self
                .fleet
                .regions
                .keys()
                .filter(|r| t.weights.contains_key(*r) && keeps(t, r) <= 0.0)
                .cloned()
                .collect(),
            None => BTreeSet::new(),
        };
        // The region the autopilot evacuated, unless someone brought it back since.
        let mut ours = state.evacuated.clone();
        if let (Some(r), Some(_)) = (&ours, &table)
            && !evacuated.contains(r)
            && !state.paused
        {
            tracing::info!(region = %r, "autopilot: its evacuated region was restored by someone else");
            let _ = switch::update(&self.opts.state_file, |s| s.evacuated = None);
            ours = None;
        }
        let mut readings = BTreeMap::new();
        for region in self.fleet.regions.keys() {
            let fingerprint: f64 = st
                .proxies
                .iter()
                .filter_map(|p| p.status.as_ref()?.targets.get(region).map(|t| t.share))
                .sum();
            let b = self.baselines.entry(region.clone()).or_default();
            if (b.fingerprint - fingerprint).abs() > 0.01 {
                *b = Baseline { fingerprint, ..Default::default() };
            }
            let baseline = (b.samples >= BASELINE_ROUNDS).then_some(b.mean);
            let (evidence, reading) = judge::judge(&st, region, baseline, &self.th);
            if reading == Reading::Healthy && !evacuated.contains(region) {
                let alpha = (self.opts.interval.as_secs_f64() / 60.0).clamp(0.01, 1.0);
                b.mean = if b.samples == 0 {
                    evidence.success_rps
                } else {
                    b.mean + alpha * (evidence.success_rps - b.mean)
                };
                b.samples += 1;
            }
            readings.insert(region.clone(), (evidence, reading));
        }
        let now_unix = switch::unix_now();
        let ctx = Context {
            evacuated: evacuated.clone(),
            ours: ours.clone(),
            paused: state.paused,
            cooldown_left: state
                .cooldown_until
                .filter(|u| *u > now_unix)
                .map(|u| Duration::from_secs(u - now_unix)),
        };
        let role = self.role.borrow().clone();
        if role.acts() && !self.acted_as_leader && matches!(role, leader::Role::Leader(_)) {
            tracing::warn!("autopilot: now the leader; acting on what it has been watching");
            self.controller.forget_news();
        }
        self.acted_as_leader = role.acts();
        self.shared.metrics.leader.set(role.acts() as i64);
        if let Ok(mut v) = self.shared.view.lock() {
            v.role = match &role {
                leader::Role::Standby { leader: Some(l), .. } => format!("standby (leader: {l})"),
                leader::Role::Standby { why: Some(w), .. } => format!("standby ({w})"),
                other => other.name().to_owned(),
            };
        }
        let decisions = self.controller.round(Instant::now(), &readings, &ctx, &self.rails);
        self.show(&st, table.as_ref(), &decisions, &state, ours.as_deref());
        let result = if st.unreachable == st.proxies.len() { "failed" } else { "ok" };
        self.shared.metrics.rounds.with_label_values(&[result]).inc();
        self.shared.liveness.round_done();
        if !role.acts() {
            // A standby judges and shows, and neither logs nor acts: that is the leader's.
            return;
        }
        let store_lease = match &role {
            leader::Role::Leader(l) => Some(l.clone()),
            _ => None,
        };
        let mut todo = None;
        for (d, news) in &decisions {
            if *news {
                self.emit(d, None, None);
                if matches!(d.action, Action::Evacuate | Action::Restore) && todo.is_none() {
                    todo = Some(d.clone());
                }
            }
        }
        if let Some(d) = todo {
            let avoid: BTreeSet<String> = readings
                .iter()
                .filter(|(r, (_, reading))| **r != d.region && matches!(reading, Reading::Failing { .. }))
                .map(|(r, _)| r.clone())
                .chain(evacuated.iter().filter(|r| **r != d.region).cloned())
                .collect();
            self.act(&d, avoid, store_lease, stop).await;
        }
    }
}
