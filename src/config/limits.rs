//! `[limits]`: sizes and counts that protect the process.

use serde::Deserialize;

use super::report::Report;

/// `[limits]`: sizes and counts that protect the process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line + headers) in bytes; larger gets 431.
    pub(crate) max_header_bytes: usize,
    /// Most headers in one request.
    pub(crate) max_headers: usize,
    /// Client connections open at once across all data-plane listeners; beyond it the
    /// proxy stops accepting until one closes.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per client connection.
    pub(crate) max_concurrent_streams: u32,
    /// Idle pooled connections kept per upstream endpoint.
    pub(crate) upstream_pool_idle: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_connections: 50_000,
            max_concurrent_streams: 256,
            upstream_pool_idle: 256,
        }
    }
}

impl Limits {
    pub(super) fn check(&self, report: &mut Report<'_>) {
        // hyper's smallest read buffer; the head must fit in it.
        if self.max_header_bytes < 8192 {
            report.error("limits.max_header_bytes", "must be at least 8192");
        }
        report.at_least_one("limits.max_headers", self.max_headers as u64);
        report.at_least_one("limits.max_connections", self.max_connections as u64);
        report.at_least_one("limits.max_concurrent_streams", u64::from(self.max_concurrent_streams));
    }
}
