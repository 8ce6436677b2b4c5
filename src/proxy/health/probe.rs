//! The probe loops: one per endpoint of every origin (as its `health` says: `GET
//! health_path`, the gRPC health service, or a TCP connect) and of each peer region's load
//! balancer and proxies (`GET /.flowgate/health`), with thresholds in both directions and
//! jittered intervals. A peer's answer also says which origins its region can serve, what
//! they served and which table it has.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio_util::sync::CancellationToken;

use super::{HEALTH_PATH, RegionHealth, grpc};
use crate::config::HealthCheck;
use crate::metrics::Metrics;
use crate::proxy::forward::Upstream;
use crate::proxy::origin::OriginPool;
use crate::proxy::peer::{Advert, PeerRegion};
use crate::proxy::targets::Targets;

/// What a probe loop needs besides its endpoint.
#[derive(Clone)]
pub(crate) struct ProbeCtx {
    interval: Duration,
    timeout: Duration,
    /// Each wait is the interval times a factor drawn from `1 ± jitter`, so that the
    /// fleet's probes do not fall into step.
    jitter: f64,
    metrics: Metrics,
    stop: CancellationToken,
}

impl ProbeCtx {
    pub(crate) fn new(cfg: &crate::config::Health, metrics: Metrics, stop: CancellationToken) -> ProbeCtx {
        ProbeCtx { interval: cfg.interval, timeout: cfg.timeout, jitter: cfg.jitter, metrics, stop }
    }

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

/// Starts one probe loop per endpoint of every origin and peer. They end when `ctx.stop`
/// fires.
pub(crate) fn spawn(targets: Arc<Targets>, region: Arc<str>, ctx: ProbeCtx) {
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
    }
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
            peer.advertise(Advert {
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
