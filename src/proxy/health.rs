//! Active health between regions: what a proxy's peer listener answers for its region at
//! `/.flowgate/health` (and the table in force at `/.flowgate/table`), and, in [`probe`],
//! the probes every proxy sends its own origins' endpoints and each peer region's load
//! balancer and proxies.
//!
//! A peer's answer is a JSON document of its origins' health; the proxy takes from it
//! which origins that region can serve, so a region that lost only `video` still gets
//! `api` traffic. An answer that does not come from a flowgate proxy (a load balancer's
//! own 503) counts against the load balancer, not the region.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};

mod grpc;
pub(crate) mod probe;

use super::body::{ProxyBody, RequestGuard};
use super::headers::X_FLOWGATE_REGION;
use super::targets::Targets;
use crate::metrics::window::TargetWindow;
use crate::table::compile::CompiledTable;
use crate::wire::ServedFigures;

/// The path every proxy's peer listener answers for its region.
pub(crate) const HEALTH_PATH: &str = "/.flowgate/health";

/// Where the peer listener serves the table in force, for peers catching up.
pub(crate) const TABLE_PATH: &str = "/.flowgate/table";

/// The span of the figures a health answer reports: short, so that a region's errors
/// reach the other regions (and the autopilot's quorum) within seconds.
pub(crate) const SERVED_WINDOW_SECONDS: u64 = 10;

/// One origin in a region health document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OriginHealth {
    pub(crate) healthy: bool,
    pub(crate) endpoints_healthy: usize,
    pub(crate) endpoints_total: usize,
}

/// The document at `/.flowgate/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RegionHealth {
    pub(crate) region: String,
    pub(crate) healthy: bool,
    pub(crate) origins: BTreeMap<String, OriginHealth>,
    /// What this region's own origins served over the last `SERVED_WINDOW_SECONDS`:
    /// other regions relay it in their status, so that a region answering 5xx while its
    /// health checks pass is seen failing from outside it. Absent from older proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) served: Option<ServedFigures>,
    /// The table this proxy has: a peer that sees a higher version fetches it from
    /// `TABLE_PATH` and catches up. Absent from older proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) table_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) table_digest: Option<String>,
}

/// This region's health: healthy only when every origin can be served.
fn region_health(
    region: &str,
    targets: &Targets,
    served: Option<ServedFigures>,
    table: &CompiledTable,
) -> RegionHealth {
    let origins: BTreeMap<String, OriginHealth> = targets
        .origins
        .iter()
        .map(|o| {
            let set = &o.upstream.set;
            let h = OriginHealth {
                healthy: set.any_usable(),
                endpoints_healthy: set.usable_count(),
                endpoints_total: set.len(),
            };
            (o.name.to_string(), h)
        })
        .collect();
    RegionHealth {
        region: region.to_owned(),
        healthy: origins.values().all(|o| o.healthy),
        origins,
        served,
        table_version: Some(table.table.version),
        table_digest: Some(table.digest.clone()),
    }
}

/// What the peer listener answers for its region.
pub(crate) struct Answerer<'a> {
    pub(crate) region: &'a str,
    /// `region` as the `x-flowgate-region` value.
    pub(crate) region_header: &'a HeaderValue,
    pub(crate) targets: &'a Targets,
    /// This region's own window first: what its origins served.
    pub(crate) windows: &'a [TargetWindow],
    pub(crate) table: &'a CompiledTable,
}

impl Answerer<'_> {
    /// `GET /.flowgate/health`: the region health document, 503 when not healthy.
    pub(crate) fn health(&self, guard: RequestGuard) -> Response<ProxyBody> {
        let served = self.windows.first().map(|w| {
            let s = w.stats(SERVED_WINDOW_SECONDS);
            ServedFigures { rps: s.rps, error_ratio: s.error_ratio }
        });
        let report = region_health(self.region, self.targets, served, self.table);
        let mut resp = self.json(serde_json::to_vec(&report).unwrap_or_default(), guard);
        if !report.healthy {
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        resp
    }

    /// `GET /.flowgate/table`: the table in force, for a peer catching up.
    pub(crate) fn table(&self, guard: RequestGuard) -> Response<ProxyBody> {
        self.json(serde_json::to_vec(&*self.table.table).unwrap_or_default(), guard)
    }

    fn json(&self, body: Vec<u8>, guard: RequestGuard) -> Response<ProxyBody> {
        let mut resp = Response::new(ProxyBody::full(Bytes::from(body), guard));
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(&X_FLOWGATE_REGION, self.region_header.clone());
        resp
    }
}
