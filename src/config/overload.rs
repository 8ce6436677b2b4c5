//! `[overload]`: prioritized load shedding (see `proxy::shed`).

use serde::Deserialize;

use super::report::Report;
use crate::vocab::Priority;

/// `[overload]`: prioritized load shedding (see `proxy::shed`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Overload {
    /// Requests in flight across every data-plane listener; above it even critical
    /// requests are shed.
    pub(crate) max_inflight: usize,
    /// The request header that carries a priority: `low`, `normal`, `high`, `critical`
    /// (or 0 to 3).
    pub(crate) priority_header: String,
    /// The priority of a request without the header (or with an unknown value).
    pub(crate) default_priority: Priority,
    /// Share of `max_inflight` (percent) above which each priority is shed.
    pub(crate) shed_low_at: u32,
    pub(crate) shed_normal_at: u32,
    pub(crate) shed_high_at: u32,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            max_inflight: 20_000,
            priority_header: "x-priority".to_owned(),
            default_priority: Priority::Normal,
            shed_low_at: 50,
            shed_normal_at: 80,
            shed_high_at: 95,
        }
    }
}

impl Overload {
    pub(super) fn check(&self, report: &mut Report<'_>) {
        report.at_least_one("overload.max_inflight", self.max_inflight as u64);
        if http::HeaderName::from_bytes(self.priority_header.as_bytes()).is_err() {
            report.error("overload.priority_header", "not a valid header name");
        }
        // A more important priority is shed later, never sooner.
        if !(self.shed_low_at <= self.shed_normal_at
            && self.shed_normal_at <= self.shed_high_at
            && self.shed_high_at <= 100)
        {
            report.error("overload", "shed_low_at <= shed_normal_at <= shed_high_at <= 100 is required");
        }
    }
}
