//! `[balance]` and `[retry]`: how a request picks an endpoint, and how often it may pick
//! again.

use std::time::Duration;

use serde::Deserialize;

use super::report::Report;

/// `[balance]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Balance {
    /// Below this share of usable endpoints, a set balances over all of them.
    pub(crate) panic_threshold_percent: u32,
    /// A returning endpoint or region gets its share back over this window.
    #[serde(with = "humantime_serde")]
    pub(crate) slow_start: Duration,
}

impl Default for Balance {
    fn default() -> Self {
        Balance { panic_threshold_percent: 50, slow_start: Duration::from_secs(10) }
    }
}

impl Balance {
    pub(super) fn check(&self, report: &mut Report<'_>) {
        report.percentage("balance.panic_threshold_percent", self.panic_threshold_percent);
    }
}

/// `[retry]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Retry {
    /// Retries may add at most this percentage of recent requests.
    pub(crate) budget_percent: f64,
    /// Retries per second always allowed, so a quiet proxy can still retry.
    pub(crate) min_per_second: u32,
    /// Request bodies up to this size are kept for a retry; larger ones are not retried.
    pub(crate) max_body_bytes: usize,
    /// Attempts per request, the first included.
    pub(crate) max_attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { budget_percent: 20.0, min_per_second: 10, max_body_bytes: 64 * 1024, max_attempts: 3 }
    }
}

impl Retry {
    pub(super) fn check(&self, report: &mut Report<'_>) {
        report.between("retry.budget_percent", self.budget_percent, 0.0, 100.0);
        report.at_least_one("retry.max_attempts", self.max_attempts.into());
    }
}
