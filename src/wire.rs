//! The JSON documents of the admin API, defined once and shared by the server that writes
//! them (`admin`) and every client that reads them (`fleet`, the autopilot, the demo).
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
pub struct EndpointCounts {
    pub healthy: usize,
    pub usable: usize,
    pub total: usize,
}

/// What a proxy saw of the requests it sent to one target region, over the status window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetFigures {
    /// Requests per second this proxy sent there (answered, whatever the status).
    pub rps: f64,
    /// Share of those answered with a 5xx.
    pub error_ratio: f64,
    /// Median time to the response head, in milliseconds (0 without requests).
    pub latency_ms_p50: f64,
}

/// One target region as this proxy sees it (`/v1/status` → `targets`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetStatus {
    /// This proxy's own region.
    pub local: bool,
    /// Whether it would get traffic now (for at least one origin).
    pub healthy: bool,
    /// This region's share of the default row, 0 to 1.
    pub share: f64,
    /// `lb`, `direct` or `auto`; absent for the local region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<PeerMode>,
    pub bypass_active: bool,
    /// `lb` or `proxies`: where requests go now; absent when nothing is usable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub endpoints: BTreeMap<String, EndpointCounts>,
    /// Requests this proxy sent there over the window.
    #[serde(flatten)]
    pub figures: TargetFigures,
    /// What the region itself says in its health answers about the requests its own
    /// origins served (5xx share and rate over its last 10 s, summed over its proxies
    /// that answered within 30 s); absent for the local region and before the first answer. It reaches this proxy over the peer network, so it
    /// tells a region that fails apart from a controller that cannot reach its admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported: Option<ServedFigures>,
    /// The share of what the table gives this region that it keeps after region outlier
    /// detection on 5xx: 1 normally, down to 0.02 while it answers far more errors than
    /// the other regions.
    pub outlier_share: f64,
}

/// A region's own account of what its origins served (in `/.flowgate/health`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServedFigures {
    pub rps: f64,
    pub error_ratio: f64,
}

/// One origin of this region (`/v1/status` → `origins`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OriginStatus {
    pub healthy: bool,
    pub endpoints: EndpointCounts,
    pub inflight: usize,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub region: String,
    pub table_version: u64,
    /// [`crate::table::Table::digest`] of the table in force.
    pub table_digest: String,
    pub table_note: Option<String>,
    /// Peers on this version with another digest (empty when the fleet agrees).
    pub table_conflicts: Vec<TableConflict>,
    pub ready: bool,
    /// `starting`, `ready` or `draining`.
    pub state: String,
    /// Whether this proxy follows an etcd store (`[store]`) and can reach it now.
    pub store: StoreState,
    /// Requests per second answered over the last minute (or `window_seconds`).
    pub rps: f64,
    /// Share of those answered with a 5xx.
    pub error_ratio: f64,
    /// Requests per second arriving from clients (public listeners): this region's demand,
    /// what an evacuation has to move.
    pub source_rps: f64,
    pub window_seconds: u64,
    pub inflight_requests: i64,
    pub uptime_seconds: u64,
    pub targets: BTreeMap<String, TargetStatus>,
    /// Per origin of this region: usable endpoints and concurrency in use.
    pub origins: BTreeMap<String, OriginStatus>,
}

/// `store` in `/v1/status`: `none` (no `[store]`), `connected` or `disconnected` (it
/// keeps serving its last good table and reconnects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreState {
    #[default]
    None,
    Connected,
    Disconnected,
}

impl StoreState {
    pub fn name(self) -> &'static str {
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
pub struct TableConflict {
    pub region: String,
    pub version: u64,
    pub digest: String,
}

impl Status {
    /// This proxy's own region's entry in `targets` (what its origins served).
    pub fn local(&self) -> Option<&TargetStatus> {
        self.targets.values().find(|t| t.local)
    }
}

/// One entry of `GET /v1/table/history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    /// RFC 3339.
    pub applied_at: String,
    pub note: Option<String>,
    /// Who pushed it (the admin client's address, or `file` / `config`).
    pub who: String,
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
}
