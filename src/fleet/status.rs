//! `flowgate status`: every proxy of every region, side by side.

use std::collections::BTreeMap;

use serde::Serialize;

use super::client::AdminClient;
use super::push::Proxy;
use crate::wire::Status;

/// One proxy's status, or why it could not be read.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProxyStatus {
    pub(crate) region: String,
    pub(crate) addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// The whole fleet at one moment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FleetStatus {
    pub(crate) proxies: Vec<ProxyStatus>,
    /// Whether every reachable proxy has the same table version.
    pub(crate) versions_agree: bool,
    pub(crate) versions: Vec<u64>,
    /// Versions held with more than one digest: a split fleet (version → digests).
    pub(crate) conflicts: BTreeMap<u64, Vec<String>>,
    pub(crate) unreachable: usize,
    /// Per region: summed rps and client demand, and the request-weighted error ratio.
    pub(crate) regions: BTreeMap<String, RegionSummary>,
    /// With `[store]` in the fleet file: the store's table and the proxies that lag it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) store: Option<StoreView>,
}

/// The store as `status` saw it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StoreView {
    /// The store's table version (0: none written yet), its note and etcd revision.
    pub(crate) version: u64,
    pub(crate) note: Option<String>,
    pub(crate) revision: i64,
    /// Reachable proxies on another version than the store's, with how many versions
    /// behind (negative: ahead, a direct push past the store).
    pub(crate) lagging: Vec<Lag>,
    /// Why the store could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Lag {
    pub(crate) region: String,
    pub(crate) addr: String,
    pub(crate) version: u64,
    pub(crate) behind: i64,
}

impl StoreView {
    /// Compares the store's table with every reachable proxy's.
    pub(crate) fn new(version: u64, note: Option<String>, revision: i64, fleet: &FleetStatus) -> StoreView {
        let lagging = fleet
            .proxies
            .iter()
            .filter_map(|p| p.status.as_ref().map(|st| (p, st.table_version)))
            .filter(|(_, v)| *v != version)
            .map(|(p, v)| Lag {
                region: p.region.clone(),
                addr: p.addr.clone(),
                version: v,
                behind: version as i64 - v as i64,
            })
            .collect();
        StoreView { version, note, revision, lagging, error: None }
    }

    pub(crate) fn unreadable(error: String) -> StoreView {
        StoreView { version: 0, note: None, revision: 0, lagging: Vec::new(), error: Some(error) }
    }

    /// Whether `status` must fail: the store unreadable, or a proxy not on its table.
    pub(crate) fn failing(&self) -> bool {
        self.error.is_some() || !self.lagging.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct RegionSummary {
    pub(crate) proxies: usize,
    /// Proxies whose status could be read.
    pub(crate) reachable: usize,
    pub(crate) ready: usize,
    pub(crate) rps: f64,
    pub(crate) source_rps: f64,
    pub(crate) error_ratio: f64,
    /// Whether every reachable proxy of the region reports every target healthy.
    pub(crate) all_targets_healthy: bool,
    /// What the region's own origins served (its proxies' local target figures): the load
    /// on the region and its error ratio, whoever sent the requests.
    pub(crate) served_rps: f64,
    pub(crate) served_error_ratio: f64,
    /// Whether every origin of every reachable proxy has a usable endpoint.
    pub(crate) origins_healthy: bool,
}

pub(crate) async fn gather(client: &AdminClient, proxies: &[Proxy], window_seconds: u64) -> FleetStatus {
    let work = proxies.iter().map(|p| async move {
        if let Some(why) = &p.unresolved {
            return ProxyStatus {
                region: p.region.clone(),
                addr: p.addr.clone(),
                status: None,
                error: Some(why.clone()),
            };
        }
        match client.status(&p.addr, window_seconds).await {
            Ok(s) => {
                ProxyStatus { region: p.region.clone(), addr: p.addr.clone(), status: Some(s), error: None }
            }
            Err(e) => ProxyStatus {
                region: p.region.clone(),
                addr: p.addr.clone(),
                status: None,
                error: Some(e.to_string()),
            },
        }
    });
    summarize(futures_util::future::join_all(work).await)
}

/// The fleet-wide view of the proxies' answers.
pub(crate) fn summarize(proxies: Vec<ProxyStatus>) -> FleetStatus {
    let mut versions: Vec<u64> =
        proxies.iter().filter_map(|p| p.status.as_ref().map(|s| s.table_version)).collect();
    versions.sort_unstable();
    versions.dedup();
    let mut regions: BTreeMap<String, RegionSummary> = BTreeMap::new();
    for p in &proxies {
        let r = regions.entry(p.region.clone()).or_insert(RegionSummary {
            all_targets_healthy: true,
            origins_healthy: true,
            ..Default::default()
        });
        r.proxies += 1;
        if let Some(s) = &p.status {
            r.reachable += 1;
            r.ready += s.ready as usize;
            if let Some(local) = s.local() {
                r.served_rps += local.figures.rps;
                r.served_error_ratio += local.figures.error_ratio * local.figures.rps;
            }
            r.origins_healthy &= s.origins.values().all(|o| o.healthy);
            r.error_ratio += s.error_ratio * s.rps;
            r.rps += s.rps;
            r.source_rps += s.source_rps;
            r.all_targets_healthy &= s.targets.values().all(|t| t.healthy);
        }
    }
    for r in regions.values_mut() {
        r.error_ratio = if r.rps > 0.0 { r.error_ratio / r.rps } else { 0.0 };
        r.served_error_ratio = if r.served_rps > 0.0 { r.served_error_ratio / r.served_rps } else { 0.0 };
    }
    let mut digests: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for st in proxies.iter().filter_map(|p| p.status.as_ref()) {
        let d = digests.entry(st.table_version).or_default();
        if !d.contains(&st.table_digest) {
            d.push(st.table_digest.clone());
        }
    }
    digests.retain(|_, d| d.len() > 1);
    FleetStatus {
        conflicts: digests,
        versions_agree: versions.len() <= 1,
        versions,
        unreachable: proxies.iter().filter(|p| p.status.is_none()).count(),
        proxies,
        regions,
        store: None,
    }
}

/// A table for people.
pub(crate) fn render(s: &FleetStatus) -> String {
    let mut out = format!(
        "{:<14} {:<24} {:>7} {:<12} {:<6} {:>9} {:>7}  targets (health, bypass)\n",
        "region", "proxy", "version", "digest", "ready", "rps", "err %"
    );
    for p in &s.proxies {
        match &p.status {
            Some(st) => {
                let targets: Vec<String> = st
                    .targets
                    .iter()
                    .map(|(name, t)| {
                        let health = if t.healthy { "ok" } else { "DOWN" };
                        let bypass = if t.bypass_active { ",bypass" } else { "" };
                        format!("{name}:{:.0}%:{health}{bypass}", t.share * 100.0)
                    })
                    .collect();
                out.push_str(&format!(
                    "{:<14} {:<24} {:>7} {:<12} {:<6} {:>9.1} {:>7.2}  {}\n",
                    p.region,
                    p.addr,
                    st.table_version,
                    &st.table_digest[..st.table_digest.len().min(12)],
                    if st.ready { "yes" } else { "NO" },
                    st.rps,
                    st.error_ratio * 100.0,
                    targets.join(" ")
                ));
            }
            None => out.push_str(&format!(
                "{:<14} {:<24} {:>7} {:<12} {:<6} {:>9} {:>7}  {}\n",
                p.region,
                p.addr,
                "-",
                "-",
                "-",
                "-",
                "-",
                p.error.as_deref().unwrap_or("unreachable")
            )),
        }
    }
    for (v, d) in &s.conflicts {
        let by: Vec<String> = d
            .iter()
            .map(|digest| {
                let holders: Vec<&str> = s
                    .proxies
                    .iter()
                    .filter(|p| {
                        p.status
                            .as_ref()
                            .is_some_and(|st| st.table_version == *v && st.table_digest == *digest)
                    })
                    .map(|p| p.addr.as_str())
                    .collect();
                format!("{} on {}", &digest[..digest.len().min(12)], holders.join(", "))
            })
            .collect();
        out.push_str(&format!(
            "CONFLICT: version {v} has {} different contents: {}\n",
            d.len(),
            by.join("; ")
        ));
    }
    if s.versions_agree && s.conflicts.is_empty() {
        out.push_str(&format!(
            "table version: {} on every reachable proxy\n",
            s.versions.first().copied().unwrap_or(0)
        ));
    } else if s.versions_agree {
        out.push_str("table versions agree, their contents DO NOT\n");
    } else {
        out.push_str(&format!("table versions DISAGREE: {:?}\n", s.versions));
    }
    if s.unreachable > 0 {
        out.push_str(&format!("{} proxies unreachable\n", s.unreachable));
    }
    match &s.store {
        Some(StoreView { error: Some(e), .. }) => out.push_str(&format!("store: UNREADABLE: {e}\n")),
        Some(st) => {
            out.push_str(&format!(
                "store: version {} ({}), etcd revision {}\n",
                st.version,
                st.note.as_deref().unwrap_or("no note"),
                st.revision
            ));
            for l in &st.lagging {
                let how = if l.behind > 0 {
                    format!("{} behind", l.behind)
                } else {
                    format!("{} AHEAD (a direct push past the store)", -l.behind)
                };
                out.push_str(&format!(
                    "  LAGGING: {} ({}) on version {}: {how}\n",
                    l.addr, l.region, l.version
                ));
            }
        }
        None => {}
    }
    out
}
