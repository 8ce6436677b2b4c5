//! The traffic table: one versioned JSON document for the whole fleet, saying for each
//! source region which share of its traffic each target region serves.
//!
//! The pipeline mirrors the config's: JSON text → [`Table`] (serde, unknown fields refused,
//! JSON path of every type error) → [`Table::validate`] against what this proxy knows
//! (regions, origins) → [`compile::CompiledTable`], the immutable form the request path
//! reads through [`store::TableStore`] with one atomic load per request.

pub mod compile;
pub mod route;
pub mod sign;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Route;

/// Weights above this are refused: shares are ratios, and sums must not overflow.
pub const MAX_WEIGHT: u64 = 1_000_000;

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
    pub fn describe(&self) -> String {
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
#[error("{field}: {message}")]
pub struct TableError {
    pub field: String,
    pub message: String,
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
    pub fn of_config(cfg: &'a crate::config::Config) -> Known<'a> {
        Known {
            regions: std::iter::once(cfg.region.as_str())
                .chain(cfg.peers.keys().map(String::as_str))
                .collect(),
            origins: cfg.origins.keys().map(String::as_str).collect(),
        }
    }
}

impl Table {
    /// Parses JSON, naming the JSON path of any type error or unknown field.
    pub fn parse(text: &[u8]) -> Result<Table, TableError> {
        // serde would also take a JSON array as the fields in order (`[7]`: version 7).
        if text.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'[') {
            return Err(TableError::new("", "the table must be a JSON object, not an array"));
        }
        let de = &mut serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let mut field = if path == "." { String::new() } else { path };
            let inner = e.into_inner();
            let message = inner.to_string();
            // A missing field is reported at its parent; name the field itself.
            if let Some(name) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
                field = if field.is_empty() { name.to_owned() } else { format!("{field}.{name}") };
            }
            TableError::new(field, message)
        })
    }

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

    /// Checks every rule of the contract; the first problem found is returned.
    pub fn validate(&self, known: &Known<'_>) -> Result<(), TableError> {
        if self.version == 0 {
            return Err(TableError::new("version", "must be a positive integer"));
        }
        let region = |path: String, name: &str| -> Result<(), TableError> {
            if known.regions.contains(&name) {
                Ok(())
            } else {
                Err(TableError::new(
                    path,
                    format!("unknown region `{name}` (known: {})", known.regions.join(", ")),
                ))
            }
        };
        for (src, row) in &self.weights {
            region(format!("weights.{src}"), src)?;
            check_row(&format!("weights.{src}"), row, &region)?;
        }
        for (origin, rows) in &self.origins {
            if !known.origins.contains(&origin.as_str()) {
                return Err(TableError::new(
                    format!("origins.{origin}"),
                    format!("unknown origin `{origin}` (known: {})", known.origins.join(", ")),
                ));
            }
            for (src, row) in rows {
                let path = format!("origins.{origin}.{src}");
                region(path.clone(), src)?;
                check_row(&path, row, &region)?;
            }
        }
        if let Some(routes) = &self.routes {
            for (i, r) in routes.iter().enumerate() {
                if !known.origins.contains(&r.origin.as_str()) {
                    return Err(TableError::new(
                        format!("routes[{i}].origin"),
                        format!("unknown origin `{}`", r.origin),
                    ));
                }
                if !r.path_prefix.starts_with('/') {
                    return Err(TableError::new(format!("routes[{i}].path_prefix"), "must start with `/`"));
                }
                crate::config::check_host_pattern(&r.host)
                    .map_err(|m| TableError::new(format!("routes[{i}].host"), m))?;
            }
        }
        for name in self.peer_modes.keys() {
            region(format!("peer_modes.{name}"), name)?;
        }
        if let Some(s) = self.max_shift
            && !(s.is_finite() && (0.0..=1.0).contains(&s))
        {
            return Err(TableError::new("max_shift", "must be between 0 and 1"));
        }
        Ok(())
    }

    /// Every region and origin the table names, for checking a table on its own (without a
    /// config): only the rules that need no outside knowledge can fail then.
    pub fn self_known(&self) -> Known<'_> {
        let mut regions: Vec<&str> = Vec::new();
        let rows = self.weights.iter().chain(self.origins.values().flat_map(|r| r.iter()));
        for (src, row) in rows {
            regions.push(src);
            regions.extend(row.keys().map(String::as_str));
        }
        regions.extend(self.peer_modes.keys().map(String::as_str));
        regions.sort_unstable();
        regions.dedup();
        let mut origins: Vec<&str> = self.origins.keys().map(String::as_str).collect();
        if let Some(routes) = &self.routes {
            origins.extend(routes.iter().map(|r| r.origin.as_str()));
        }
        Known { regions, origins }
    }

    /// Same content, ignoring what only describes the push (`note`, `max_shift`).
    /// SHA-256 (hex) of what [`Table::same_content`] compares, in canonical JSON (maps are
    /// ordered): equal tables have equal digests on every proxy, and the same version with
    /// another digest anywhere in the fleet is a conflict.
    pub fn digest(&self) -> String {
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
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn same_content(&self, other: &Table) -> bool {
        self.version == other.version
            && self.weights == other.weights
            && self.origins == other.origins
            && self.routes == other.routes
            && self.peer_modes == other.peer_modes
            && self.operation == other.operation
    }
}

fn check_row(
    path: &str,
    row: &Row,
    region: &impl Fn(String, &str) -> Result<(), TableError>,
) -> Result<(), TableError> {
    let mut sum: u64 = 0;
    for (target, w) in row {
        region(format!("{path}.{target}"), target)?;
        if *w > MAX_WEIGHT {
            return Err(TableError::new(format!("{path}.{target}"), format!("weight above {MAX_WEIGHT}")));
        }
        sum += w;
    }
    if sum == 0 {
        return Err(TableError::new(path, "weights sum to 0: the row would send traffic nowhere"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn known() -> Known<'static> {
        Known { regions: vec!["us-east-1", "us-west-2", "eu-west-1"], origins: vec!["api", "video"] }
    }

    fn check(json: &str) -> Result<Table, TableError> {
        let t = Table::parse(json.as_bytes())?;
        t.validate(&known())?;
        Ok(t)
    }

    #[test]
    fn contract_example_is_valid() {
        let t = check(
            r#"{"version": 7,
            "weights": {"us-east-1": {"us-east-1": 0, "us-west-2": 60, "eu-west-1": 40},
                        "us-west-2": {"us-west-2": 100}},
            "origins": {"video": {"us-east-1": {"us-east-1": 100}}},
            "routes": [{"host": "*", "path_prefix": "/", "origin": "api"}],
            "peer_modes": {"us-west-2": "auto"},
            "note": "evacuate us-east-1, step 6 of 10"}"#,
        )
        .unwrap();
        assert_eq!(t.version, 7);
    }

    #[test]
    fn each_invalid_case_names_its_path() {
        let cases = [
            (r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": -1}}}"#, "weights.us-east-1.us-west-2"),
            (
                r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 1.5}}}"#,
                "weights.us-east-1.us-west-2",
            ),
            (r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 0}}}"#, "weights.us-east-1"),
            (r#"{"version": 1, "weights": {"mars-1": {"us-west-2": 1}}}"#, "weights.mars-1"),
            (r#"{"version": 1, "weights": {"us-east-1": {"mars-1": 1}}}"#, "weights.us-east-1.mars-1"),
            (r#"{"version": 1, "origins": {"nope": {}}}"#, "origins.nope"),
            (r#"{"version": 1, "routes": [{"origin": "nope"}]}"#, "routes[0].origin"),
            (r#"{"version": 1, "bogus": 1}"#, "bogus"),
            (r#"{"version": 0}"#, "version"),
            (r#"{"version": -3}"#, "version"),
            (r#"{"version": 1, "peer_modes": {"us-west-2": "sideways"}}"#, "peer_modes.us-west-2"),
            (r#"{"weights": {}}"#, "version"),
            (r#"{"version": 1, "routes": [{"host": "*"}]}"#, "routes[0].origin"),
            (r#"[7]"#, ""),
        ];
        for (json, field) in cases {
            let err = check(json).expect_err(json);
            assert_eq!(err.field, field, "{json}: {err}");
        }
        let err = check(r#"{"version": 1, "bogus": 1}"#).unwrap_err();
        assert!(err.message.contains("bogus"), "{err}");
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![Just("us-east-1".to_owned()), Just("us-west-2".to_owned()), "[a-z0-9-]{1,12}", ".{0,8}"]
    }

    fn arb_row() -> impl Strategy<Value = Row> {
        proptest::collection::btree_map(arb_name(), 0..=MAX_WEIGHT * 2, 0..4)
    }

    fn arb_table() -> impl Strategy<Value = Table> {
        let routes =
            proptest::collection::vec(
                ("[*a-z.]{0,12}", "/?[a-z/]{0,8}", arb_name())
                    .prop_map(|(host, path_prefix, origin)| Route { host, path_prefix, origin }),
                0..3,
            );
        let mode = prop_oneof![Just(PeerMode::Lb), Just(PeerMode::Direct), Just(PeerMode::Auto)];
        (
            any::<u64>(),
            proptest::collection::btree_map(arb_name(), arb_row(), 0..3),
            proptest::collection::btree_map(
                arb_name(),
                proptest::collection::btree_map(arb_name(), arb_row(), 0..2),
                0..2,
            ),
            proptest::option::of(routes),
            proptest::collection::btree_map(arb_name(), mode, 0..2),
            proptest::option::of(".{0,16}"),
            proptest::option::of(prop_oneof![
                0.0..=1.0f64,
                any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            ]),
        )
            .prop_map(|(version, weights, origins, routes, peer_modes, note, max_shift)| Table {
                version,
                weights,
                origins,
                routes,
                peer_modes,
                note,
                max_shift,
                operation: None,
                signature: None,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// What `GET /v1/table` and the state file write is read back as the same table, and
        /// the verdict of validation does not change across the trip.
        #[test]
        fn json_round_trip_keeps_the_table_and_its_verdict(t in arb_table()) {
            let text = serde_json::to_vec(&t).unwrap();
            let back = Table::parse(&text).unwrap();
            prop_assert_eq!(&back, &t);
            prop_assert!(back.same_content(&t));
            prop_assert_eq!(back.validate(&known()), t.validate(&known()));
            prop_assert_eq!(back.validate(&back.self_known()), t.validate(&t.self_known()));
        }

        /// Bytes that are not a table are refused with an error, never a panic.
        #[test]
        fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Table::parse(&bytes);
        }
    }
}
