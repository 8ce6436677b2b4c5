//! The JSON documents of the admin API, defined once and shared by the server that writes
//! them (`admin`) and every client that reads them (`fleet`, the autopilot, the demo):
//! `/v1/status`, `/v1/table/history` and the answers to `PUT /v1/table`.
//!
//! No field has a serde default: a field renamed or dropped on one side fails to decode
//! on the other, loudly, instead of reading as 0 or `false` (a proxy whose status does not
//! decode is reported as unreadable, never as healthy). Fields a newer proxy adds are
//! ignored by an older client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::table::PeerMode;

/// Healthy, usable and total endpoints of one set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndpointCounts {
    pub(crate) healthy: usize,
    pub(crate) usable: usize,
    pub(crate) total: usize,
}

/// What a proxy saw of the requests it sent to one target region, over the status window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetFigures {
    /// Requests per second this proxy sent there (answered, whatever the status).
    pub(crate) rps: f64,
    /// Share of those answered with a 5xx.
    pub(crate) error_ratio: f64,
    /// Median time to the response head, in milliseconds (0 without requests).
    pub(crate) latency_ms_p50: f64,
}

/// One target region as this proxy sees it (`/v1/status` → `targets`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TargetStatus {
    /// This proxy's own region.
    pub(crate) local: bool,
    /// Whether it would get traffic now (for at least one origin).
    pub(crate) healthy: bool,
    /// This region's share of the default row, 0 to 1.
    pub(crate) share: f64,
    /// `lb`, `direct` or `auto`; absent for the local region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<PeerMode>,
    pub(crate) bypass_active: bool,
    /// `lb` or `proxies`: where requests go now; absent when nothing is usable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    pub(crate) endpoints: BTreeMap<String, EndpointCounts>,
    /// Requests this proxy sent there over the window.
    #[serde(flatten)]
    pub(crate) figures: TargetFigures,
    /// What the region itself says in its health answers about the requests its own
    /// origins served (5xx share and rate over its last 10 s, summed over its proxies
    /// that answered within 30 s); absent for the local region and before the first
    /// answer. It reaches this proxy over the peer network, so it tells a region that
    /// fails apart from a controller that cannot reach its admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reported: Option<ServedFigures>,
    /// The share of what the table gives this region that it keeps after region outlier
    /// detection on 5xx: 1 normally, down to 0.02 while it answers far more errors than
    /// the other regions.
    pub(crate) outlier_share: f64,
}

/// A region's own account of what its origins served (in `/.flowgate/health`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServedFigures {
    pub(crate) rps: f64,
    pub(crate) error_ratio: f64,
}

/// One origin of this region (`/v1/status` → `origins`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OriginStatus {
    pub(crate) healthy: bool,
    pub(crate) endpoints: EndpointCounts,
    pub(crate) inflight: usize,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Status {
    pub(crate) region: String,
    pub(crate) table_version: u64,
    /// [`crate::table::Table::digest`] of the table in force.
    pub(crate) table_digest: String,
    pub(crate) table_note: Option<String>,
    /// Peers on this version with another digest (empty when the fleet agrees).
    pub(crate) table_conflicts: Vec<TableConflict>,
    pub(crate) ready: bool,
    /// `starting`, `ready` or `draining`.
    pub(crate) state: String,
    /// Whether this proxy follows an etcd store (`[store]`) and can reach it now.
    pub(crate) store: StoreState,
    /// Requests per second answered over the last minute (or `window_seconds`).
    pub(crate) rps: f64,
    /// Share of those answered with a 5xx.
    pub(crate) error_ratio: f64,
    /// Requests per second arriving from clients (public listeners): this region's demand,
    /// what an evacuation has to move.
    pub(crate) source_rps: f64,
    pub(crate) window_seconds: u64,
    pub(crate) inflight_requests: i64,
    pub(crate) uptime_seconds: u64,
    pub(crate) targets: BTreeMap<String, TargetStatus>,
    /// Per origin of this region: usable endpoints and concurrency in use.
    pub(crate) origins: BTreeMap<String, OriginStatus>,
}

/// `store` in `/v1/status`: `none` (no `[store]`), `connected` or `disconnected` (it
/// keeps serving its last good table and reconnects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreState {
    #[default]
    None,
    Connected,
    Disconnected,
}

impl StoreState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StoreState::None => "none",
            StoreState::Connected => "connected",
            StoreState::Disconnected => "disconnected",
        }
    }
}

/// A peer proxy seen with this proxy's table version and another digest: the fleet is
/// split, and catch-up does not pick a side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableConflict {
    pub(crate) region: String,
    pub(crate) version: u64,
    pub(crate) digest: String,
}

impl Status {
    /// This proxy's own region's entry in `targets` (what its origins served).
    pub(crate) fn local(&self) -> Option<&TargetStatus> {
        self.targets.values().find(|t| t.local)
    }
}

/// One entry of `GET /v1/table/history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HistoryEntry {
    pub(crate) version: u64,
    /// RFC 3339.
    pub(crate) applied_at: String,
    pub(crate) note: Option<String>,
    /// Who pushed it (the admin client's address, or `file` / `config`).
    pub(crate) who: String,
}

/// The answer to a `PUT /v1/table` the proxy took (200): applied, or the same table again.
///
/// Fields in name order, as the answer has always been written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableAccepted {
    /// Whether the table was put in force (`false`: it already was).
    pub(crate) applied: bool,
    /// The version in force before; only when applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) previous_version: Option<u64>,
    /// `true` when the same table was already in force; only when not applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unchanged: Option<bool>,
    /// The version in force now.
    pub(crate) version: u64,
}

/// The answer to a `PUT /v1/table` the proxy refused (4xx, 5xx): the table changed nothing.
///
/// Fields in name order, as the answer has always been written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Refusal {
    /// The proxy's version, when the refusal is about versions (409 stale, 412 moved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) current_version: Option<u64>,
    pub(crate) error: String,
    /// The JSON path (or header) at fault, for a table that does not validate (400).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
    /// The `table_rejected_total` reason of a table refused by its content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

impl Refusal {
    pub(crate) fn new(error: impl Into<String>) -> Refusal {
        Refusal { current_version: None, error: error.into(), field: None, reason: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_field_does_not_decode_as_zero() {
        let good = r#"{"region":"a","table_version":3,"table_digest":"ab","table_conflicts":[],"table_note":null,"ready":true,"state":"ready","store":"none",
            "rps":1.0,"error_ratio":0.0,"source_rps":1.0,"window_seconds":60,"inflight_requests":0,
            "uptime_seconds":5,"targets":{},"origins":{}}"#;
        let s: Status = serde_json::from_str(good).unwrap();
        assert_eq!(s.table_version, 3);
        let renamed = good.replace("table_version", "tableVersion");
        let e = serde_json::from_str::<Status>(&renamed).unwrap_err();
        assert!(e.to_string().contains("table_version"), "{e}");
    }

    /// The push answers read as they did when they were written field by field.
    #[test]
    fn push_answers_keep_their_shape() {
        let applied = TableAccepted { applied: true, previous_version: Some(6), unchanged: None, version: 7 };
        assert_eq!(
            serde_json::to_string(&applied).unwrap(),
            r#"{"applied":true,"previous_version":6,"version":7}"#
        );
        let same =
            TableAccepted { applied: false, previous_version: None, unchanged: Some(true), version: 7 };
        assert_eq!(
            serde_json::to_string(&same).unwrap(),
            r#"{"applied":false,"unchanged":true,"version":7}"#
        );
        let stale = Refusal { current_version: Some(9), ..Refusal::new("stale") };
        assert_eq!(serde_json::to_string(&stale).unwrap(), r#"{"current_version":9,"error":"stale"}"#);
        let invalid = Refusal {
            field: Some("weights.a".into()),
            reason: Some("invalid".into()),
            ..Refusal::new("bad")
        };
        assert_eq!(
            serde_json::to_string(&invalid).unwrap(),
            r#"{"error":"bad","field":"weights.a","reason":"invalid"}"#
        );
        let renamed = r#"{"applied":true,"previous_version":6,"Version":7}"#;
        assert!(serde_json::from_str::<TableAccepted>(renamed).is_err());
    }
}
