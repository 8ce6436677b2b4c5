//! `[timeouts]`: every wait the proxy does on someone else has a bound.

use std::time::Duration;

use serde::Deserialize;

use super::report::Report;

/// `[timeouts]`: every wait the proxy does on someone else has a bound.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Timeouts {
    /// TCP connect to an upstream endpoint.
    #[serde(with = "humantime_serde")]
    pub(crate) connect: Duration,
    /// From a request's first byte to its last header byte (slowloris guard).
    #[serde(with = "humantime_serde")]
    pub(crate) header_read: Duration,
    /// From the request's arrival to the upstream's response headers. Body streaming after
    /// that is not bounded by it, so long downloads are not cut.
    #[serde(with = "humantime_serde")]
    pub(crate) request: Duration,
    /// A client connection with no request in flight is closed after this.
    #[serde(with = "humantime_serde")]
    pub(crate) idle: Duration,
    /// How long an unused pooled upstream connection is kept.
    #[serde(with = "humantime_serde")]
    pub(crate) upstream_idle: Duration,
    /// An HTTP/2 client connection is PINGed after this long without frames...
    #[serde(with = "humantime_serde")]
    pub(crate) h2_ping_interval: Duration,
    /// ...and closed if the PING is not answered within this (a dead peer).
    #[serde(with = "humantime_serde")]
    pub(crate) h2_ping_timeout: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(60),
            idle: Duration::from_secs(75),
            upstream_idle: Duration::from_secs(60),
            h2_ping_interval: Duration::from_secs(30),
            h2_ping_timeout: Duration::from_secs(20),
        }
    }
}

impl Timeouts {
    /// A zero bound would fail every wait at once.
    pub(super) fn check(&self, report: &mut Report<'_>) {
        for (field, d) in [
            ("timeouts.connect", self.connect),
            ("timeouts.header_read", self.header_read),
            ("timeouts.request", self.request),
            ("timeouts.idle", self.idle),
            ("timeouts.upstream_idle", self.upstream_idle),
            ("timeouts.h2_ping_interval", self.h2_ping_interval),
            ("timeouts.h2_ping_timeout", self.h2_ping_timeout),
        ] {
            report.positive(field, d);
        }
    }
}
