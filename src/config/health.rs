//! `[health]` and `[outlier]`: how endpoints are judged healthy, actively by probes and
//! passively from real requests.

use std::time::Duration;

use serde::Deserialize;

use super::report::Report;

/// `[health]`: active probes of origins (`health_path`) and peers (`/.flowgate/health`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Health {
    #[serde(with = "humantime_serde")]
    pub(crate) interval: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// Each wait is `interval` ± this share of it, so a fleet's probes do not align.
    pub(crate) jitter: f64,
    /// Consecutive good probes that make an unhealthy endpoint healthy.
    pub(crate) healthy_threshold: u32,
    /// Consecutive bad probes that make a healthy endpoint unhealthy.
    pub(crate) unhealthy_threshold: u32,
    /// How many of each peer region's proxies this proxy probes and bypasses to (a
    /// deterministic subset, with stand-ins for members that are down); 0: all of them.
    pub(crate) peer_subset: usize,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            jitter: 0.1,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            peer_subset: 3,
        }
    }
}

impl Health {
    pub(super) fn check(&self, report: &mut Report<'_>) {
        report.positive("health.interval", self.interval);
        report.positive("health.timeout", self.timeout);
        report.between("health.jitter", self.jitter, 0.0, 0.5);
        report.at_least_one("health.healthy_threshold", self.healthy_threshold.into());
        report.at_least_one("health.unhealthy_threshold", self.unhealthy_threshold.into());
    }
}

/// `[outlier]`: passive health from real requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Outlier {
    /// Consecutive connect failures, resets or 5xx that eject an endpoint.
    pub(crate) consecutive_failures: u32,
    /// First ejection; each further one doubles, up to `max_ejection`.
    #[serde(with = "humantime_serde")]
    pub(crate) base_ejection: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) max_ejection: Duration,
    /// Never eject more than this share of a set at once.
    pub(crate) max_ejected_percent: u32,
}

impl Default for Outlier {
    fn default() -> Self {
        Outlier {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(60),
            max_ejected_percent: 50,
        }
    }
}

impl Outlier {
    pub(super) fn check(&self, report: &mut Report<'_>) {
        report.positive("outlier.base_ejection", self.base_ejection);
        report.at_least_one("outlier.consecutive_failures", self.consecutive_failures.into());
        report.percentage("outlier.max_ejected_percent", self.max_ejected_percent);
    }
}
