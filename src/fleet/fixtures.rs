//! Fleet statuses for unit tests of the code that judges them (gates, the autopilot).

use std::collections::BTreeMap;

use super::status::ProxyStatus;
use crate::wire::{OriginStatus, ServedFigures, Status, TargetFigures, TargetStatus};

/// One proxy's status, built up field by field.
pub(crate) struct Fixture {
    region: String,
    addr: String,
    regions: Vec<String>,
    served: TargetFigures,
    unhealthy: Vec<String>,
    sent: BTreeMap<String, TargetFigures>,
    reported: BTreeMap<String, ServedFigures>,
    ready: bool,
    origins_ok: bool,
}

/// A proxy of `region` (address `addr`) in a fleet of `regions`, serving `rps` locally
/// with `err` of them errors.
pub(crate) fn proxy(regions: &[&str], region: &str, addr: &str, rps: f64, err: f64) -> Fixture {
    Fixture {
        region: region.into(),
        addr: addr.into(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        served: TargetFigures { rps, error_ratio: err, latency_ms_p50: 1.0 },
        unhealthy: Vec::new(),
        sent: BTreeMap::new(),
        reported: BTreeMap::new(),
        ready: true,
        origins_ok: true,
    }
}

/// A proxy that did not answer.
pub(crate) fn down(region: &str, addr: &str) -> ProxyStatus {
    ProxyStatus {
        region: region.into(),
        addr: addr.into(),
        status: None,
        error: Some("connection refused".into()),
    }
}

impl Fixture {
    /// Sees these regions unhealthy.
    pub(crate) fn sees_unhealthy(mut self, regions: &[&str]) -> Fixture {
        self.unhealthy.extend(regions.iter().map(|r| r.to_string()));
        self
    }

    /// Sends `rps` to `region`, `err` of them failing.
    pub(crate) fn sends(mut self, region: &str, rps: f64, err: f64) -> Fixture {
        self.sent.insert(region.into(), TargetFigures { rps, error_ratio: err, latency_ms_p50: 2.0 });
        self
    }

    /// Heard from `region`'s health answer that its origins serve `rps` with `err` errors.
    pub(crate) fn heard(mut self, region: &str, rps: f64, err: f64) -> Fixture {
        self.reported.insert(region.into(), ServedFigures { rps, error_ratio: err });
        self
    }

    pub(crate) fn unready(mut self) -> Fixture {
        self.ready = false;
        self
    }

    pub(crate) fn origins_down(mut self) -> Fixture {
        self.origins_ok = false;
        self
    }

    pub(crate) fn build(self) -> ProxyStatus {
        let targets = self
            .regions
            .iter()
            .map(|t| {
                let local = *t == self.region;
                let status = TargetStatus {
                    local,
                    healthy: !self.unhealthy.contains(t),
                    share: if local { 1.0 } else { 0.0 },
                    mode: None,
                    bypass_active: false,
                    path: None,
                    endpoints: BTreeMap::new(),
                    figures: if local { self.served } else { self.sent.get(t).copied().unwrap_or_default() },
                    reported: self.reported.get(t).copied(),
                    outlier_share: 1.0,
                };
                (t.clone(), status)
            })
            .collect();
        let origins = BTreeMap::from([(
            "api".to_owned(),
            OriginStatus { healthy: self.origins_ok, endpoints: Default::default(), inflight: 0 },
        )]);
        let status = Status {
            region: self.region.clone(),
            table_version: 1,
            table_digest: "d1".into(),
            table_conflicts: Vec::new(),
            table_note: None,
            ready: self.ready,
            store: crate::wire::StoreState::None,
            state: if self.ready { "ready" } else { "draining" }.into(),
            rps: self.served.rps,
            error_ratio: self.served.error_ratio,
            source_rps: self.served.rps,
            window_seconds: 10,
            inflight_requests: 0,
            uptime_seconds: 100,
            targets,
            origins,
        };
        ProxyStatus { region: self.region, addr: self.addr, status: Some(status), error: None }
    }
}
