//! `[forwarding]` and `[bypass]`: how requests travel between regions, and when a peer's
//! load balancer is judged overloaded and bypassed.

use std::time::Duration;

use serde::Deserialize;

use super::Protocol;
use super::report::Report;

/// `[forwarding]`: how requests travel between regions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Forwarding {
    /// A request that arrived with this many hops is served locally, never forwarded.
    pub(crate) max_hops: u32,
    /// `h2` (multiplexed: one connection per peer endpoint) or `http1`.
    pub(crate) peer_protocol: Protocol,
    /// How often endpoint names are resolved again for the probes' and pools' sake.
    #[serde(with = "humantime_serde")]
    pub(crate) resolve_interval: Duration,
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding { max_hops: 1, peer_protocol: Protocol::Http2, resolve_interval: Duration::from_secs(30) }
    }
}

impl Forwarding {
    pub(super) fn check(&self, report: &mut Report<'_>) {
        report.at_least_one("forwarding.max_hops", self.max_hops.into());
    }
}

/// `[bypass]`: when `auto` judges a peer's load balancer overloaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Bypass {
    /// The sliding window the judgement looks at.
    #[serde(with = "humantime_serde")]
    pub(crate) window: Duration,
    /// Fewer samples than this in the window: no judgement. Also the good load-balancer
    /// samples in a row (probes, while bypassed) needed before the bypass lifts.
    pub(crate) min_samples: u32,
    /// Share of connect failures, 502, 503 and 429 that makes it overloaded.
    pub(crate) failure_ratio: f64,
    /// Latency above `latency_factor` × the direct path's (and above `latency_floor`).
    pub(crate) latency_factor: f64,
    #[serde(with = "humantime_serde")]
    pub(crate) latency_floor: Duration,
    /// The load balancer must look well this long before traffic returns to it.
    #[serde(with = "humantime_serde")]
    pub(crate) recover_after: Duration,
}

impl Default for Bypass {
    fn default() -> Self {
        Bypass {
            window: Duration::from_secs(10),
            min_samples: 10,
            failure_ratio: 0.2,
            latency_factor: 3.0,
            latency_floor: Duration::from_millis(100),
            recover_after: Duration::from_secs(10),
        }
    }
}

impl Bypass {
    pub(super) fn check(&self, report: &mut Report<'_>) {
        report.positive("bypass.window", self.window);
        report.between("bypass.failure_ratio", self.failure_ratio, 0.0, 1.0);
        report.between("bypass.latency_factor", self.latency_factor, 1.0, 1000.0);
    }
}
