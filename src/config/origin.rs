//! `[origins.NAME]`: the backend services this region serves, how they are reached and how
//! their health is probed.

use std::time::Duration;

use serde::Deserialize;

use super::report::Report;
use crate::vocab::checks::{check_host_port, check_name};

/// The protocol an origin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub(crate) enum Protocol {
    /// HTTP/1.1 with pooled keep-alive connections.
    #[default]
    #[serde(rename = "http1", alias = "h1", alias = "http/1.1")]
    Http1,
    /// HTTP/2 with prior knowledge (h2c), as gRPC services speak it.
    #[serde(rename = "h2", alias = "http2")]
    Http2,
}

/// `[origins.NAME]`: a backend service served in this region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// `host:port` entries; names are resolved again for every new connection.
    pub(crate) endpoints: Vec<String>,
    /// How active health checks probe each endpoint.
    #[serde(default)]
    pub(crate) health: HealthCheck,
    /// Path probed by `health = "http"` checks.
    #[serde(default = "default_health_path")]
    pub(crate) health_path: String,
    /// The service a `health = "grpc"` check asks about; empty: the whole server.
    #[serde(default)]
    pub(crate) health_service: String,
    /// Requests in flight to this origin beyond which new ones are refused with 503.
    #[serde(default = "default_max_concurrency")]
    pub(crate) max_concurrency: usize,
    #[serde(default)]
    pub(crate) protocol: Protocol,
    /// Overrides `timeouts.connect` for this origin.
    #[serde(default, with = "humantime_serde")]
    pub(crate) connect_timeout: Option<Duration>,
    /// Overrides `timeouts.request` for this origin.
    #[serde(default, with = "humantime_serde")]
    pub(crate) request_timeout: Option<Duration>,
}

/// How an origin's endpoints are probed (`[origins.NAME] health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub(crate) enum HealthCheck {
    /// `GET health_path`; any 2xx is healthy.
    #[default]
    #[serde(rename = "http")]
    Http,
    /// The standard `grpc.health.v1.Health/Check` for `health_service`; healthy when it
    /// answers `SERVING`. Needs `protocol = "h2"`.
    #[serde(rename = "grpc")]
    Grpc,
    /// A TCP connection within `[health] timeout` is healthy.
    #[serde(rename = "tcp")]
    Tcp,
}

fn default_health_path() -> String {
    "/healthz".to_owned()
}

fn default_max_concurrency() -> usize {
    2000
}

impl Origin {
    pub(super) fn check(&self, name: &str, report: &mut Report<'_>) {
        let at = format!("origins.{name}");
        if let Err(why) = check_name(name) {
            report.error(at.clone(), format!("invalid origin name: {why}"));
        }
        if self.endpoints.is_empty() {
            report.error(format!("{at}.endpoints"), "needs at least one endpoint");
        }
        for (i, ep) in self.endpoints.iter().enumerate() {
            if let Err(why) = check_host_port(ep) {
                report.error(format!("{at}.endpoints[{i}]"), format!("{ep:?}: {why}"));
            }
        }
        if !self.health_path.starts_with('/') {
            report.error(format!("{at}.health_path"), "must start with `/`");
        }
        self.check_health_kind(&at, report);
        if self.max_concurrency == 0 {
            report.error(format!("{at}.max_concurrency"), "must be at least 1");
        }
        for (field, d) in
            [("connect_timeout", self.connect_timeout), ("request_timeout", self.request_timeout)]
        {
            if let Some(d) = d {
                report.positive(&format!("{at}.{field}"), d);
            }
        }
    }

    /// gRPC health checks run over HTTP/2, and only they name a service.
    fn check_health_kind(&self, at: &str, report: &mut Report<'_>) {
        if self.health == HealthCheck::Grpc && self.protocol != Protocol::Http2 {
            report.error(
                format!("{at}.health"),
                "`grpc` health checks need `protocol = \"h2\"` (gRPC runs over HTTP/2)",
            );
        }
        if !self.health_service.is_empty() && self.health != HealthCheck::Grpc {
            report.error(format!("{at}.health_service"), "only used by `health = \"grpc\"`");
        }
    }
}
