//! `[drain]`, `[fleet]`, `[log]` and `[runtime]`: how the process starts, runs, logs and
//! stops.

use std::time::Duration;

use serde::Deserialize;

use super::report::Report;

/// `[drain]`: what SIGTERM / SIGINT do, in the order load balancers expect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Drain {
    /// `/readyz` is 503 at once; listeners keep accepting this long so load balancers can
    /// deregister the instance without refused connections.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// After the listeners close, in-flight requests get this long; the rest are cut.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Drain { delay: Duration::from_secs(5), timeout: Duration::from_secs(30) }
    }
}

/// `[fleet]`: how this proxy keeps up with the rest of the fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Fleet {
    /// A starting proxy with peers reports ready once it has compared its table with a
    /// peer's (and caught up if the peer's is newer), or after this long.
    #[serde(with = "humantime_serde")]
    pub(crate) sync_timeout: Duration,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet { sync_timeout: Duration::from_secs(5) }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `tracing` filter directive; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
    /// One line per request on target `flowgate::access`.
    pub access: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log { level: "info".to_owned(), format: LogFormat::Text, access: false }
    }
}

impl Log {
    pub(super) fn check(&self, report: &mut Report<'_>) {
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.level) {
            report.error("log.level", format!("invalid filter: {e}"));
        }
    }
}

/// `[runtime]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Worker threads; 0 means one per core.
    pub workers: usize,
}
