//! The traffic table: one versioned JSON document for the whole fleet, saying for each
//! source region which share of its traffic each target region serves.
//!
//! The pipeline mirrors the config's: JSON text → [`Table`] ([`Table::parse`] in `parse`:
//! serde, unknown fields refused, JSON path of every type error) → [`Table::validate`]
//! (in `validate`) against what this proxy knows (regions, origins) →
//! [`compile::CompiledTable`], the immutable form the request path reads through
//! [`store::TableStore`] with one atomic load per request. This file holds the document's
//! types and what identifies its content (digest, equality); `sign` signs and verifies
//! tables, [`route`] is the router a compiled table carries.

pub mod compile;
mod parse;
pub mod route;
pub(crate) mod sign;
pub mod store;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Route;

/// Weights above this are refused: shares are ratios, and sums must not overflow.
pub(crate) const MAX_WEIGHT: u64 = 1_000_000;

/// How a proxy reaches a peer region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PeerMode {
    /// Through the peer's load balancer.
    Lb,
    /// Straight to the peer's proxies (the bypass).
    Direct,
    /// The load balancer, switching to direct while it is judged overloaded or failing.
    #[default]
    Auto,
}

impl PeerMode {
    /// As written in the table and shown on the dashboard.
    pub(crate) fn name(self) -> &'static str {
        match self {
            PeerMode::Lb => "lb",
            PeerMode::Direct => "direct",
            PeerMode::Auto => "auto",
        }
    }
}

/// One row: target region → weight.
pub type Row = BTreeMap<String, u64>;

/// The traffic table as pushed and persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// Positive, and only ever goes up.
    pub version: u64,
    /// Source region → row. A region with no row serves everything locally.
    #[serde(default)]
    pub weights: BTreeMap<String, Row>,
    /// Origin → source region → row, overriding `weights` for that origin.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub origins: BTreeMap<String, BTreeMap<String, Row>>,
    /// When present, replaces the config's routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    /// Peer region → how to reach it; `auto` when absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_modes: BTreeMap<String, PeerMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Largest share any row may move against the table in force (0..=1), checked on push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shift: Option<f64>,
    /// The fleet-wide operation in progress that pushed this table (its claim), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// Ed25519 signature (base64) over the rest of the table ([`sign`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A fleet-wide operation's claim, carried by every table it pushes: while it holds (until
/// `expires_at`), another operation refuses to start, naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// Unique, and ordered by start time: of two claims racing, the lower id wins.
    pub id: String,
    /// Who runs it: `user@host (pid N)` or `autopilot@host (pid N)`.
    pub owner: String,
    /// What it does: `evacuate us-east-1`, `exercise us-east-1`, ...
    pub kind: String,
    /// Unix seconds after which the claim is void (a run that died leaves it behind).
    pub expires_at: u64,
}

impl Operation {
    /// For people: `evacuate us-east-1 by alice@host (pid 7) (operation ..., its claim
    /// holds until ...)`.
    pub(crate) fn describe(&self) -> String {
        let until = std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.expires_at);
        format!(
            "{} by {} (operation {}, its claim holds until {})",
            self.kind,
            self.owner,
            self.id,
            humantime::format_rfc3339_seconds(until)
        )
    }
}

/// Why a table was refused; `field` is the JSON path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct TableError {
    pub(crate) field: String,
    pub(crate) message: String,
}

impl TableError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> TableError {
        TableError { field: field.into(), message: message.into() }
    }
}

/// What this proxy knows, against which a table is checked.
#[derive(Debug, Clone)]
pub struct Known<'a> {
    /// This proxy's region first, then its peers.
    pub regions: Vec<&'a str>,
    pub origins: Vec<&'a str>,
}

impl<'a> Known<'a> {
    /// What a proxy with this config knows.
    pub(crate) fn of_config(cfg: &'a crate::config::Config) -> Known<'a> {
        Known {
            regions: std::iter::once(cfg.region.as_str())
                .chain(cfg.peers.keys().map(String::as_str))
                .collect(),
            origins: cfg.origins.keys().map(String::as_str).collect(),
        }
    }
}

impl Table {
    /// The table a proxy runs with when it has none: everything served locally.
    pub fn local_only() -> Table {
        Table {
            version: 0,
            weights: BTreeMap::new(),
            origins: BTreeMap::new(),
            routes: None,
            peer_modes: BTreeMap::new(),
            note: Some("no table: every region serves itself".to_owned()),
            max_shift: None,
            operation: None,
            signature: None,
        }
    }

    /// SHA-256 (hex) of what [`Table::same_content`] compares, in canonical JSON (maps are
    /// ordered): equal tables have equal digests on every proxy, and the same version with
    /// another digest anywhere in the fleet is a conflict.
    pub(crate) fn digest(&self) -> String {
        #[derive(Serialize)]
        struct Content<'a> {
            version: u64,
            weights: &'a BTreeMap<String, Row>,
            origins: &'a BTreeMap<String, BTreeMap<String, Row>>,
            routes: &'a Option<Vec<Route>>,
            peer_modes: &'a BTreeMap<String, PeerMode>,
            operation: &'a Option<Operation>,
        }
        let content = Content {
            version: self.version,
            weights: &self.weights,
            origins: &self.origins,
            routes: &self.routes,
            peer_modes: &self.peer_modes,
            operation: &self.operation,
        };
        let bytes = serde_json::to_vec(&content).unwrap_or_default();
        let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(2 * d.as_ref().len());
        for b in d.as_ref() {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        hex
    }

    /// Same content, ignoring what only describes the push (`note`, `max_shift`,
    /// `signature`).
    pub(crate) fn same_content(&self, other: &Table) -> bool {
        self.version == other.version
            && self.weights == other.weights
            && self.origins == other.origins
            && self.routes == other.routes
            && self.peer_modes == other.peer_modes
            && self.operation == other.operation
    }
}
