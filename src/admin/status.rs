//! `GET /v1/status`: what an operator (and `flowgate status` / `evacuate`) looks at first.

use std::collections::BTreeMap;

use super::AdminState;
use crate::proxy::Proxy;
use crate::proxy::peer::Path;
use crate::table::compile::Target;
use crate::wire::{EndpointCounts, OriginStatus, Status, TargetFigures, TargetStatus};

fn counts(set: &crate::proxy::balance::EndpointSet) -> EndpointCounts {
    EndpointCounts { healthy: set.healthy_count(), usable: set.usable_count(), total: set.active_count() }
}

/// `?window=N` (seconds, 1 to 60; 60 when absent or unreadable).
pub(crate) fn window_param(query: Option<&str>) -> u64 {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("window="))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|v| v.clamp(1, 60))
        .unwrap_or(60)
}

pub(crate) fn status(state: &AdminState, window: u64) -> Status {
    let proxy = state.control.proxy.load_full();
    let table = proxy.tables.load();
    let metrics = &state.control.shared.metrics;
    let (rps, error_ratio) = metrics.rate.rate(window);
    let (source_rps, _) = metrics.source_rate.rate(window);
    let readiness = state.readiness.state();
    Status {
        region: proxy.region.to_string(),
        table_version: table.version(),
        table_digest: table.digest.clone(),
        table_conflicts: state.control.conflicts(),
        table_note: table.table.note.clone(),
        ready: readiness == "ready",
        state: readiness.to_owned(),
        store: state.control.store_state(),
        rps,
        error_ratio,
        source_rps,
        window_seconds: window,
        inflight_requests: state.control.shared.metrics.inflight_requests.get(),
        uptime_seconds: state.started.elapsed().as_secs(),
        targets: targets(&proxy, &table, window),
        origins: proxy
            .targets
            .origins
            .iter()
            .map(|o| {
                let s = &o.upstream.set;
                (
                    o.name.to_string(),
                    OriginStatus { healthy: s.any_usable(), endpoints: counts(s), inflight: o.inflight() },
                )
            })
            .collect(),
    }
}

fn targets(
    proxy: &Proxy,
    table: &crate::table::compile::CompiledTable,
    window: u64,
) -> BTreeMap<String, TargetStatus> {
    let row = table.table.weights.get(&*proxy.region);
    let sum: u64 = row.map(|r| r.values().sum()).unwrap_or(0);
    let share = |name: &str| match row {
        Some(r) if sum > 0 => *r.get(name).unwrap_or(&0) as f64 / sum as f64,
        Some(_) => 0.0,
        None => (name == &*proxy.region) as u8 as f64,
    };
    let mut out = BTreeMap::new();
    for (index, name) in proxy.regions.names.iter().enumerate() {
        let Some(target) = proxy.regions.target(name) else { continue };
        let figures = proxy
            .target_windows
            .get(index)
            .map(|w| {
                let s = w.stats(window);
                TargetFigures { rps: s.rps, error_ratio: s.error_ratio, latency_ms_p50: s.latency_ms_p50 }
            })
            .unwrap_or_default();
        let status = match target {
            Target::Local => {
                let healthy = proxy.targets.origins.iter().any(|o| o.upstream.set.any_usable());
                let mut endpoints = BTreeMap::new();
                for o in &proxy.targets.origins {
                    let c = counts(&o.upstream.set);
                    let e = endpoints.entry("origin".to_owned()).or_insert(EndpointCounts {
                        healthy: 0,
                        usable: 0,
                        total: 0,
                    });
                    e.healthy += c.healthy;
                    e.usable += c.usable;
                    e.total += c.total;
                }
                TargetStatus {
                    local: true,
                    healthy,
                    share: share(name),
                    mode: None,
                    bypass_active: false,
                    path: None,
                    endpoints,
                    figures,
                    reported: None,
                    outlier_share: proxy.outliers.kept(index),
                }
            }
            Target::Peer(i) => {
                let Some(peer) = proxy.targets.peers.get(i) else { continue };
                let mode = table.peer_modes.get(i).copied().unwrap_or_default();
                let path = peer.path(mode);
                let healthy = (0..proxy.targets.origins.len()).any(|o| peer.factor(o, mode) > 0.0);
                TargetStatus {
                    local: false,
                    healthy,
                    share: share(name),
                    mode: Some(mode),
                    bypass_active: peer.bypassing(mode),
                    path: path.map(|p| Path::name(p).to_owned()),
                    endpoints: BTreeMap::from([
                        ("lb".to_owned(), counts(&peer.lb.set)),
                        ("proxies".to_owned(), counts(&peer.proxies.set)),
                    ]),
                    figures,
                    reported: peer.reported(),
                    outlier_share: proxy.outliers.kept(index),
                }
            }
        };
        out.insert(name.to_string(), status);
    }
    out
}
