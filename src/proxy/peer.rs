//! A peer region: its load balancer and its proxies as two endpoint sets, what its health
//! reports say about each origin, and which path (`lb` or `direct`) requests take.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::balance::SetPolicy;
use super::bypass::BypassJudge;
use super::forward::{Upstream, UpstreamSettings};
use super::slow_start::SlowStart;
use crate::config;
use crate::table::PeerMode;
use crate::vocab::tls::{TlsError, peer_client_config};

/// Which path a request to a peer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Lb,
    Direct,
}

impl Path {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Path::Lb => "lb",
            Path::Direct => "proxies",
        }
    }
}

/// One peer region.
#[derive(Debug)]
pub(crate) struct PeerRegion {
    pub(crate) name: Arc<str>,
    pub(crate) lb: Upstream,
    pub(crate) proxies: Upstream,
    pub(crate) bypass: BypassJudge,
    /// Which of `proxies` this proxy probes and sends bypassed traffic to.
    pub(crate) subset: super::subset::Subset,
    /// Per local `OriginId`: since when (on `ramp`'s clock) the region reports it can serve
    /// that origin, or `NOT_OK`. The time drives the region's slow start: a region that
    /// comes back gets its share back over `slow_start`, not at once (its caches are cold).
    origin_ok_since: Vec<AtomicU64>,
    ramp: SlowStart,
    /// Per endpoint (load balancer endpoints first, then proxies): its last account of
    /// what its origins served (its health answer), and when it came.
    reported: std::sync::Mutex<Vec<Option<(crate::wire::ServedFigures, Instant)>>>,
    /// Per endpoint (load balancer endpoints first, then proxies): the last table it
    /// advertised, and when.
    adverts: std::sync::Mutex<Vec<Option<(Advert, Instant)>>>,
}

/// What a peer proxy's health answer said about its table, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advert {
    pub(crate) version: Option<u64>,
    pub(crate) digest: Option<String>,
    /// Through the region's proxies (`true`) or its load balancer.
    pub(crate) direct: bool,
    /// The endpoint's index in that set: where to fetch the table.
    pub(crate) endpoint: usize,
}

/// A region's own figures older than this are no longer shown.
const REPORT_STALE: Duration = Duration::from_secs(30);

const NOT_OK: u64 = u64::MAX;

impl PeerRegion {
    pub(crate) fn new(name: &str, cfg: &config::Peer, all: &config::Config) -> Result<PeerRegion, TlsError> {
        let tls = match (cfg.tls, &cfg.ca, &cfg.client_cert, &cfg.client_key) {
            (true, Some(ca), Some(cert), Some(key)) => Some(Arc::new(peer_client_config(ca, cert, key)?)),
            _ => None,
        };
        let settings = UpstreamSettings {
            protocol: cfg.protocol.unwrap_or(all.forwarding.peer_protocol),
            connect_timeout: all.timeouts.connect,
            request_timeout: all.timeouts.request,
            pool_idle_timeout: all.timeouts.upstream_idle,
            pool_max_idle: all.limits.upstream_pool_idle,
            tls,
            server_name: cfg.server_name.clone(),
        };
        let policy = SetPolicy::from_config(all);
        let proxies = Upstream::new(&cfg.proxies, policy.clone(), &settings);
        let subset =
            super::subset::Subset::new(&super::subset::identity(all), &cfg.proxies, all.health.peer_subset);
        subset.refresh(&proxies.set);
        Ok(PeerRegion {
            name: name.into(),
            lb: Upstream::new(&cfg.lb, policy, &settings),
            proxies,
            bypass: BypassJudge::new(all.bypass.clone()),
            subset,
            // Optimistic start, and no ramp at boot: "ok since long ago".
            origin_ok_since: all.origins.keys().map(|_| AtomicU64::new(0)).collect(),
            ramp: SlowStart::new(all.balance.slow_start),
            reported: std::sync::Mutex::new(vec![None; cfg.lb.len() + cfg.proxies.len()]),
            adverts: std::sync::Mutex::new(vec![None; cfg.lb.len() + cfg.proxies.len()]),
        })
    }

    /// The path requests take under `mode` right now, if any is usable.
    pub(crate) fn path(&self, mode: PeerMode) -> Option<Path> {
        let lb = !self.lb.set.is_empty() && self.lb.set.any_usable();
        let direct = !self.proxies.set.is_empty() && self.proxies.set.any_usable();
        match mode {
            PeerMode::Lb => lb.then_some(Path::Lb),
            PeerMode::Direct => direct.then_some(Path::Direct),
            PeerMode::Auto => {
                if (self.bypass.is_active() || !lb) && direct {
                    Some(Path::Direct)
                } else if lb {
                    Some(Path::Lb)
                } else {
                    None
                }
            }
        }
    }

    /// Whether requests go around a configured load balancer now.
    pub(crate) fn bypassing(&self, mode: PeerMode) -> bool {
        !self.lb.set.is_empty() && mode != PeerMode::Lb && self.path(mode) == Some(Path::Direct)
    }

    pub(crate) fn upstream(&self, path: Path) -> &Upstream {
        match path {
            Path::Lb => &self.lb,
            Path::Direct => &self.proxies,
        }
    }

    /// Share of traffic this region may take for `origin` now, in [0, 1]: 0 when it cannot
    /// serve it, below 1 while it warms up after coming back.
    pub(crate) fn factor(&self, origin: usize, mode: PeerMode) -> f64 {
        let since = self.origin_ok_since.get(origin).map(|o| o.load(Ordering::Relaxed)).unwrap_or(NOT_OK);
        if since == NOT_OK {
            return 0.0;
        }
        let ramp = self.ramp.factor(since, self.ramp.now_ms());
        match self.path(mode) {
            Some(p) => ramp * self.upstream(p).set.warmth(),
            None => 0.0,
        }
    }

    pub(crate) fn set_origin_ok(&self, origin: usize, ok: bool) {
        let Some(o) = self.origin_ok_since.get(origin) else { return };
        if !ok {
            o.store(NOT_OK, Ordering::Relaxed);
        } else if o.load(Ordering::Relaxed) == NOT_OK {
            o.store(self.ramp.now_ms(), Ordering::Relaxed);
        }
    }

    /// Keeps what one endpoint's health answer said about its table.
    pub(crate) fn advertise(&self, ad: Advert) {
        let slot = if ad.direct { self.lb.set.len() + ad.endpoint } else { ad.endpoint };
        if let Ok(mut all) = self.adverts.lock()
            && let Some(s) = all.get_mut(slot)
        {
            *s = Some((ad, Instant::now()));
        }
    }

    /// The tables the region's endpoints advertised within `fresh`.
    pub(crate) fn adverts(&self, fresh: Duration) -> Vec<Advert> {
        let Ok(all) = self.adverts.lock() else { return Vec::new() };
        all.iter().flatten().filter(|(_, at)| at.elapsed() < fresh).map(|(a, _)| a.clone()).collect()
    }

    /// Keeps what one endpoint's health answer said about its region's origins.
    pub(crate) fn set_reported(
        &self,
        served: Option<crate::wire::ServedFigures>,
        direct: bool,
        endpoint: usize,
    ) {
        let slot = if direct { self.lb.set.len() + endpoint } else { endpoint };
        if let Ok(mut all) = self.reported.lock()
            && let Some(s) = all.get_mut(slot)
        {
            *s = served.map(|f| (f, Instant::now()));
        }
    }

    /// The region's own figures, while recent: summed over its proxies' answers (each
    /// proxy reports only what its own origins served, so a region of many proxies with a
    /// little traffic each is judged on all of it), or the load balancer's latest answer
    /// when no proxy was asked directly.
    pub(crate) fn reported(&self) -> Option<crate::wire::ServedFigures> {
        let all = self.reported.lock().ok()?;
        let fresh = |s: &Option<(crate::wire::ServedFigures, Instant)>| {
            s.filter(|(_, at)| at.elapsed() < REPORT_STALE).map(|(f, _)| f)
        };
        let lb = self.lb.set.len().min(all.len());
        let direct: Vec<crate::wire::ServedFigures> = all[lb..].iter().filter_map(fresh).collect();
        if direct.is_empty() {
            return all[..lb].iter().rev().find_map(fresh);
        }
        let rps: f64 = direct.iter().map(|f| f.rps).sum();
        let errors: f64 = direct.iter().map(|f| f.rps * f.error_ratio).sum();
        Some(crate::wire::ServedFigures { rps, error_ratio: if rps > 0.0 { errors / rps } else { 0.0 } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(slow_start: &str) -> PeerRegion {
        let text = format!(
            r#"region = "a"
[listen]
public = "127.0.0.1:0"
[origins.api]
endpoints = ["127.0.0.1:1"]
[peers.b]
proxies = ["127.0.0.1:2"]
[balance]
slow_start = "{slow_start}"
"#
        );
        let cfg = config::Config::from_toml(std::path::Path::new("/t.toml"), &text).expect("config");
        PeerRegion::new("b", &cfg.peers["b"], &cfg).expect("peer")
    }

    #[tokio::test(start_paused = true)]
    async fn a_returning_region_ramps_its_share_back() {
        let p = peer("10s");
        assert_eq!(p.factor(0, PeerMode::Auto), 1.0, "no ramp at boot");
        p.set_origin_ok(0, false);
        assert_eq!(p.factor(0, PeerMode::Auto), 0.0);
        p.set_origin_ok(0, true);
        assert!(p.factor(0, PeerMode::Auto) < 0.1);
        tokio::time::advance(Duration::from_secs(5)).await;
        let half = p.factor(0, PeerMode::Auto);
        assert!((half - 0.5).abs() < 0.05, "{half}");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(p.factor(0, PeerMode::Auto), 1.0);
    }
}
