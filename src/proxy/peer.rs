//! A peer region: its load balancer and its proxies as two endpoint sets, what its health
//! reports say about each origin, and which path (`lb` or `direct`) requests take.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::balance::SetPolicy;
use super::bypass::BypassJudge;
use super::forward::{Upstream, UpstreamSettings};
use crate::config;
use crate::table::PeerMode;

/// Which path a request to a peer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Lb,
    Direct,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Lb => "lb",
            Path::Direct => "proxies",
        }
    }
}

/// One peer region.
#[derive(Debug)]
pub struct PeerRegion {
    pub name: Arc<str>,
    pub lb: Upstream,
    pub proxies: Upstream,
    pub bypass: BypassJudge,
    /// Per local `OriginId`: whether the region last reported it can serve that origin.
    origin_ok: Vec<AtomicBool>,
}

impl PeerRegion {
    pub fn new(name: &str, cfg: &config::Peer, all: &config::Config) -> PeerRegion {
        let settings = UpstreamSettings {
            protocol: cfg.protocol.unwrap_or(all.forwarding.peer_protocol),
            connect_timeout: all.timeouts.connect,
            request_timeout: all.timeouts.request,
            pool_idle_timeout: all.timeouts.upstream_idle,
            pool_max_idle: all.limits.upstream_pool_idle,
        };
        let policy = SetPolicy::from_config(all);
        PeerRegion {
            name: name.into(),
            lb: Upstream::new(&cfg.lb, policy.clone(), &settings),
            proxies: Upstream::new(&cfg.proxies, policy, &settings),
            bypass: BypassJudge::new(all.bypass.clone()),
            origin_ok: all.origins.keys().map(|_| AtomicBool::new(true)).collect(),
        }
    }

    /// The path requests take under `mode` right now, if any is usable.
    pub fn path(&self, mode: PeerMode) -> Option<Path> {
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
    pub fn bypassing(&self, mode: PeerMode) -> bool {
        !self.lb.set.is_empty() && mode != PeerMode::Lb && self.path(mode) == Some(Path::Direct)
    }

    pub fn upstream(&self, path: Path) -> &Upstream {
        match path {
            Path::Lb => &self.lb,
            Path::Direct => &self.proxies,
        }
    }

    /// Share of traffic this region may take for `origin` now, in [0, 1]: 0 when it cannot
    /// serve it, below 1 while it warms up after coming back.
    pub fn factor(&self, origin: usize, mode: PeerMode) -> f64 {
        if !self.origin_ok.get(origin).is_some_and(|o| o.load(Ordering::Relaxed)) {
            return 0.0;
        }
        match self.path(mode) {
            Some(p) => self.upstream(p).set.warmth(),
            None => 0.0,
        }
    }

    pub fn set_origin_ok(&self, origin: usize, ok: bool) {
        if let Some(o) = self.origin_ok.get(origin) {
            o.store(ok, Ordering::Relaxed);
        }
    }

    pub fn origin_ok(&self, origin: usize) -> bool {
        self.origin_ok.get(origin).is_some_and(|o| o.load(Ordering::Relaxed))
    }
}
