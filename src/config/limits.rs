//! `[limits]`: sizes and counts that protect the process.

use serde::Deserialize;

use super::report::Report;

/// `[limits]`: sizes and counts that protect the process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line + headers) in bytes; larger gets 431.
    pub(crate) max_header_bytes: usize,
    /// Longest request target (path and query, with the authority of an absolute-form or
    /// HTTP/2 target) in bytes; longer gets 414. As nginx's 8 KiB buffers: RFC 9110
    /// section 4.1 asks for at least 8000 octets. At most `max_header_bytes`, which holds
    /// the request line too.
    pub(crate) max_uri_bytes: usize,
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
            max_uri_bytes: 8 * 1024,
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
        report.at_least_one("limits.max_uri_bytes", self.max_uri_bytes as u64);
        if self.max_uri_bytes > self.max_header_bytes {
            report.error("limits.max_uri_bytes", "must be at most limits.max_header_bytes");
        }
        report.at_least_one("limits.max_headers", self.max_headers as u64);
        report.at_least_one("limits.max_connections", self.max_connections as u64);
        report.at_least_one("limits.max_concurrent_streams", u64::from(self.max_concurrent_streams));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn limits(lines: &str) -> Result<Config, Vec<String>> {
        let text =
            format!("region = \"us-east-1\"\n[listen]\npublic = \"127.0.0.1:8080\"\n[limits]\n{lines}");
        Config::from_toml(Path::new("/etc/flowgate/flowgate.toml"), &text)
            .map_err(|e| e.0.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn the_target_limit_defaults_to_8_kib_and_fits_in_the_head() {
        let cfg = limits("").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.limits.max_uri_bytes, 8192);
        assert!(limits("max_uri_bytes = 32768\n").is_ok());
        assert_eq!(limits("max_uri_bytes = 32769\n").err(), Some(vec!["limits.max_uri_bytes".to_owned()]));
        assert_eq!(limits("max_uri_bytes = 0\n").err(), Some(vec!["limits.max_uri_bytes".to_owned()]));
    }
}
