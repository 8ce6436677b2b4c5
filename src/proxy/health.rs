//! Active health: every proxy probes its own origins' endpoints as their `health` says
//! (`GET health_path`, the gRPC health service, or a TCP connect), and each peer region's
//! load balancer and proxies at `/.flowgate/health`, with thresholds in both directions
//! and jittered intervals. It also answers that path for its own region.
//!
//! A peer's answer is a JSON document of its origins' health; the proxy takes from it
//! which origins that region can serve, so a region that lost only `video` still gets
//! `api` traffic. An answer that does not come from a flowgate proxy (a load balancer's
//! own 503) counts against the load balancer, not the region.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

mod grpc;

use super::Targets;
use super::forward::Upstream;
use super::origin::OriginPool;
use super::peer::PeerRegion;
use crate::config::HealthCheck;
use crate::metrics::Metrics;
use crate::table::store::TableStore;

/// The path every proxy's peer listener answers for its region.
pub const HEALTH_PATH: &str = "/.flowgate/health";

/// One origin in a region health document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OriginHealth {
    pub healthy: bool,
    pub endpoints_healthy: usize,
    pub endpoints_total: usize,
}

/// The document at `/.flowgate/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionHealth {
    pub region: String,
    pub healthy: bool,
    pub origins: std::collections::BTreeMap<String, OriginHealth>,
    /// What this region's own origins served over the last `SERVED_WINDOW_SECONDS`:
    /// other regions relay it in their status, so that a region answering 5xx while its
    /// health checks pass is seen failing from outside it. Absent from older proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<crate::wire::ServedFigures>,
    /// The table this proxy has: a peer that sees a higher version fetches it from
    /// `TABLE_PATH` and catches up. Absent from older proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_digest: Option<String>,
}

/// Where the peer listener serves the table in force, for peers catching up.
pub const TABLE_PATH: &str = "/.flowgate/table";

/// The span of the figures a health answer reports: short, so that a region's errors
/// reach the other regions (and the autopilot's quorum) within seconds.
pub const SERVED_WINDOW_SECONDS: u64 = 10;

/// This region's health: healthy only when every origin can be served.
pub fn region_health(
    region: &str,
    targets: &Targets,
    served: Option<crate::wire::ServedFigures>,
    table: &crate::table::compile::CompiledTable,
) -> RegionHealth {
    let origins: std::collections::BTreeMap<String, OriginHealth> = targets
        .origins
        .iter()
        .map(|o| {
            let set = &o.upstream.set;
            let h = OriginHealth {
                healthy: set.any_usable(),
                endpoints_healthy: set.usable_count(),
                endpoints_total: set.len(),
            };
            (o.name.to_string(), h)
        })
        .collect();
    RegionHealth {
        region: region.to_owned(),
        healthy: origins.values().all(|o| o.healthy),
        origins,
        served,
        table_version: Some(table.table.version),
        table_digest: Some(table.digest.clone()),
    }
}

/// What a probe loop needs besides its endpoint.
#[derive(Clone)]
pub struct ProbeCtx {
    pub interval: Duration,
    pub timeout: Duration,
    pub jitter: f64,
    pub metrics: Metrics,
    pub stop: CancellationToken,
}

impl ProbeCtx {
    fn next_wait(&self) -> Duration {
        let j = self.jitter.clamp(0.0, 0.5);
        let f = if j > 0.0 { rand::rng().random_range(1.0 - j..=1.0 + j) } else { 1.0 };
        self.interval.mul_f64(f)
    }

    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stop.cancelled() => false,
        }
    }

    /// Like `sleep`, but cut short when real requests make the endpoint suspect: the probe
    /// then goes out a tenth of an interval later (so that a burst of failures cannot turn
    /// into a burst of probes), and the verdict does not wait for the next interval.
    async fn sleep_or_suspect(&self, d: Duration, suspect: impl std::future::Future<Output = ()>) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = suspect => self.sleep((self.interval / 10).min(d)).await,
            _ = self.stop.cancelled() => false,
        }
    }
}

/// Starts one probe loop per endpoint of every origin and peer, and one bypass judge
/// loop per peer. They end when `ctx.stop` fires.
pub fn spawn(targets: Arc<Targets>, tables: Arc<TableStore>, region: Arc<str>, ctx: ProbeCtx) {
    for (oid, origin) in targets.origins.iter().enumerate() {
        for i in 0..origin.upstream.set.len() {
            let (targets, ctx, region) = (targets.clone(), ctx.clone(), region.clone());
            tokio::spawn(async move {
                let Some(origin) = targets.origins.get(oid) else { return };
                let label = endpoint_label(&origin.upstream, i);
                let gauge = ctx.metrics.endpoint_healthy.with_label_values(&["origin", &region, &label]);
                gauge.set(1);
                // The first probe goes out at once, so a dead origin is known quickly.
                let mut wait = Duration::ZERO;
                let probes = ctx.metrics.probes_total.with_label_values(&["origin"]);
                while ctx.sleep_or_suspect(wait, origin.upstream.set.suspected(i)).await {
                    probes.inc();
                    let ok = probe_origin(origin, i, ctx.timeout).await;
                    if let Some(now) = origin.upstream.set.probe_result(i, ok) {
                        tracing::info!(origin = %origin.name, endpoint = %label, healthy = now, "origin endpoint health changed");
                    }
                    gauge.set(origin.upstream.set.is_healthy(i) as i64);
                    wait = ctx.next_wait();
                }
            });
        }
    }
    for (pid, peer) in targets.peers.iter().enumerate() {
        for (direct, set) in [(false, &peer.lb), (true, &peer.proxies)] {
            for i in 0..set.set.len() {
                let (targets, ctx) = (targets.clone(), ctx.clone());
                tokio::spawn(probe_peer(targets, pid, direct, i, ctx));
            }
        }
        let (targets, tables, ctx) = (targets.clone(), tables.clone(), ctx.clone());
        tokio::spawn(async move {
            let Some(peer) = targets.peers.get(pid) else { return };
            let gauge = ctx.metrics.bypass_active.with_label_values(&[&peer.name]);
            while ctx.sleep(Duration::from_millis(250)).await {
                peer.subset.refresh(&peer.proxies.set);
                let direct_usable = peer.proxies.set.any_usable();
                peer.bypass.evaluate(direct_usable);
                let mode = tables.load().peer_modes.get(pid).copied().unwrap_or_default();
                gauge.set(peer.bypassing(mode) as i64);
            }
        });
    }
}

/// What the region outlier loop reads and writes.
pub struct OutlierInputs {
    pub windows: Arc<Vec<crate::metrics::window::TargetWindow>>,
    pub targets: Arc<Targets>,
    pub outliers: Arc<super::region_outlier::RegionOutliers>,
    /// Region names, this region first: the index of every per-region vector.
    pub names: Vec<Arc<str>>,
}

/// Evaluates region outlier detection once a second ([`super::region_outlier`]): this
/// proxy's own figures per target, or for a peer it sends too little to judge, what the
/// region reports about its own origins.
pub fn spawn_outliers(inputs: OutlierInputs, metrics: Metrics, stop: CancellationToken) {
    use super::region_outlier::{MIN_REQUESTS, Observed, WINDOW_SECONDS};
    for name in &inputs.names {
        metrics.region_outlier_share.with_label_values(&[name]).set(1.0);
    }
    tokio::spawn(async move {
        let OutlierInputs { windows, targets, outliers, names } = inputs;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
            let observed: Vec<Option<Observed>> = (0..names.len())
                .map(|r| {
                    let own = windows.get(r).map(|w| w.stats(WINDOW_SECONDS));
                    let own = own.map(|s| Observed { error_ratio: s.failure_ratio, requests: s.unshed });
                    let reported =
                        r.checked_sub(1).and_then(|p| targets.peers.get(p)).and_then(|p| p.reported()).map(
                            |f| Observed {
                                error_ratio: f.error_ratio,
                                requests: (f.rps * WINDOW_SECONDS as f64) as u64,
                            },
                        );
                    match (own, reported) {
                        (Some(o), _) if o.requests >= MIN_REQUESTS => Some(o),
                        (_, Some(rep)) => Some(rep),
                        (o, None) => o,
                    }
                })
                .collect();
            for (r, kept) in outliers.evaluate(&observed) {
                let Some(name) = names.get(r) else { continue };
                metrics.region_outlier_share.with_label_values(&[name]).set(kept);
                let error_ratio = observed.get(r).copied().flatten().map(|o| o.error_ratio).unwrap_or(0.0);
                if kept < 1.0 {
                    tracing::warn!(region = %name, kept, error_ratio, "region answers far more 5xx than the others: it keeps only this share of its traffic");
                } else {
                    tracing::info!(region = %name, "region outlier detection: the region has its full share back");
                }
            }
        }
    });
}

/// Resolves an upstream's endpoint names every `interval`; when the addresses behind them
/// change, the upstream's pool is replaced so that new requests reach the new addresses
/// (a load balancer's addresses move; an HTTP/2 connection would otherwise stay on the
/// old ones for as long as it lives).
pub fn spawn_resolver(
    targets: Arc<Targets>,
    which: super::UpstreamRef,
    interval: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut last: Option<Vec<std::net::SocketAddr>> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.cancelled() => return,
            }
            let Some(upstream) = targets.upstream(which) else { return };
            let names: Vec<String> = upstream
                .set
                .iter()
                .filter(|e| e.authority.host().parse::<std::net::IpAddr>().is_err())
                .map(|e| e.authority.to_string())
                .collect();
            if names.is_empty() {
                return;
            }
            let mut addrs = Vec::new();
            for name in &names {
                match tokio::net::lookup_host(name.as_str()).await {
                    Ok(found) => addrs.extend(found),
                    Err(e) => tracing::warn!(endpoint = %name, error = %e, "cannot resolve endpoint name"),
                }
            }
            addrs.sort();
            addrs.dedup();
            // A failed lookup keeps the pool: better stale addresses than none.
            if addrs.is_empty() {
                continue;
            }
            if last.as_ref().is_some_and(|l| *l != addrs) {
                tracing::info!(endpoints = ?names, addresses = ?addrs, "endpoint addresses changed; renewing connections");
                upstream.refresh_pool();
            }
            last = Some(addrs);
        }
    });
}

/// One probe of endpoint `i` of an origin, as its `health` says: whether it passed.
async fn probe_origin(origin: &OriginPool, i: usize, timeout: Duration) -> bool {
    match origin.health {
        HealthCheck::Http => {
            let answer = origin.upstream.probe(i, &origin.health_path, timeout).await;
            matches!(answer, Ok(a) if a.status.is_success())
        }
        HealthCheck::Grpc => match grpc::check(&origin.upstream, i, &origin.health_service, timeout).await {
            Ok(()) => true,
            Err(why) => {
                tracing::debug!(origin = %origin.name, endpoint = %endpoint_label(&origin.upstream, i), %why, "gRPC health check failed");
                false
            }
        },
        HealthCheck::Tcp => {
            let Some(endpoint) = origin.upstream.set.get(i) else { return false };
            // Resolved as the upstream's own connections are, on every attempt; the
            // connection is closed at once.
            let connect = tokio::net::TcpStream::connect(endpoint.authority.as_str());
            matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_)))
        }
    }
}

fn endpoint_label(u: &Upstream, i: usize) -> String {
    u.set.get(i).map(|e| e.authority.to_string()).unwrap_or_default()
}

async fn probe_peer(targets: Arc<Targets>, pid: usize, direct: bool, i: usize, ctx: ProbeCtx) {
    let Some(peer) = targets.peers.get(pid) else { return };
    let upstream = if direct { &peer.proxies } else { &peer.lb };
    let kind = if direct { "proxies" } else { "lb" };
    let label = endpoint_label(upstream, i);
    let labels = [kind, &peer.name, &label];
    let mut gauge = ctx.metrics.endpoint_healthy.with_label_values(&labels);
    gauge.set(1);
    let probes = ctx.metrics.probes_total.with_label_values(&[kind]);
    let mut wait = Duration::ZERO;
    let mut subset = peer.subset.watch();
    while ctx.sleep(wait).await {
        if direct && upstream.set.is_standby(i) {
            // Outside this proxy's subset: not probed, so no verdict to export, until it
            // joins; then the first probe goes out at once.
            let _ = ctx.metrics.endpoint_healthy.remove_label_values(&labels);
            while upstream.set.is_standby(i) {
                tokio::select! {
                    changed = subset.changed() => if changed.is_err() { return },
                    _ = ctx.stop.cancelled() => return,
                }
            }
            gauge = ctx.metrics.endpoint_healthy.with_label_values(&labels);
            gauge.set(1);
            wait = Duration::ZERO;
            continue;
        }
        probes.inc();
        let answer = upstream.probe(i, HEALTH_PATH, ctx.timeout).await;
        let (alive, latency) = match &answer {
            Ok(a) => (a.from_flowgate, a.latency),
            Err(_) => (false, ctx.timeout),
        };
        if let Ok(a) = &answer
            && a.from_flowgate
        {
            apply_report(&targets, peer, &a.body, a.status.is_success(), direct, i);
        }
        if direct {
            peer.bypass.record_direct(!alive, latency);
        } else {
            peer.bypass.record_lb(!alive, latency);
        }
        if let Some(now) = upstream.set.probe_result(i, alive) {
            tracing::info!(region = %peer.name, kind, endpoint = %label, healthy = now, "peer endpoint health changed");
        }
        gauge.set(upstream.set.is_healthy(i) as i64);
        wait = ctx.next_wait();
    }
}

/// Takes a peer's health document: which of our origins that region can serve.
fn apply_report(
    targets: &Targets,
    peer: &PeerRegion,
    body: &[u8],
    all_ok: bool,
    direct: bool,
    endpoint: usize,
) {
    match serde_json::from_slice::<RegionHealth>(body) {
        Ok(report) => {
            peer.set_reported(report.served, direct, endpoint);
            peer.advertise(super::peer::Advert {
                version: report.table_version,
                digest: report.table_digest.clone(),
                direct,
                endpoint,
            });
            for (oid, origin) in targets.origins.iter().enumerate() {
                let ok = report.origins.get(&*origin.name).is_some_and(|o| o.healthy);
                peer.set_origin_ok(oid, ok);
            }
        }
        Err(_) => {
            for oid in 0..targets.origins.len() {
                peer.set_origin_ok(oid, all_ok);
            }
        }
    }
}
