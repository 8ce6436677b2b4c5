//! Fleet operations: the commands that steer every proxy of every region through their
//! control endpoints (`push`, `status`, `evacuate`, `restore`, `exercise`).
//!
//! The pipeline: the fleet file ([`FleetFile`]) names each region's proxies' admin
//! addresses and capacity; [`resolve`] expands `dns:NAME:PORT` entries into every address
//! of the name (again before every step, so a scaled fleet is followed); [`client`] talks
//! to one proxy; [`push`] and [`status`] do it fleet-wide; [`plan`] is the pure planner;
//! [`evacuate`] runs a plan with gates and rollback; [`report`] writes the exercise report.

pub(crate) mod claim;
pub mod cli;
pub(crate) mod client;
pub mod evacuate;
#[cfg(test)]
pub(crate) mod fixtures;
mod gate;
pub(crate) mod plan;
pub(crate) mod push;
pub mod report;
mod resolve;
pub(crate) mod status;
mod store_write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A fleet file, validated.
#[derive(Debug, Clone)]
pub struct FleetFile {
    /// Where it was read from: the autopilot reads it again on SIGHUP.
    pub(crate) file: PathBuf,
    /// The environment variable that holds the admin token.
    pub token_env: String,
    pub regions: BTreeMap<String, FleetRegion>,
    /// A token given directly (the demo drives its own fleet); wins over `token_env`.
    pub(crate) token_value: Option<String>,
    /// `[store]`: the commands write tables through etcd ([`crate::store`]).
    pub store: Option<crate::config::Store>,
}

/// `[regions.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetRegion {
    /// Every proxy's admin address: `host:port`, or `dns:NAME:PORT` for all the A/AAAA
    /// records of a name.
    pub admin: Vec<String>,
    /// What the region can serve at 100 %.
    pub capacity_rps: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    #[serde(default = "default_token_env")]
    token_env: String,
    regions: BTreeMap<String, FleetRegion>,
    #[serde(default)]
    store: Option<crate::config::Store>,
}

fn default_token_env() -> String {
    "FLOWGATE_ADMIN_TOKEN".to_owned()
}

/// Why a fleet file was refused; names the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{message}", file.display(), if field.is_empty() || field == "." { String::new() } else { format!("{field}: ") })]
pub struct FleetError {
    file: PathBuf,
    field: String,
    message: String,
}

impl FleetFile {
    pub fn load(path: &Path) -> Result<FleetFile, FleetError> {
        let err = |field: &str, message: String| FleetError {
            file: path.to_owned(),
            field: field.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err("", format!("cannot read: {e}")))?;
        FleetFile::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<FleetFile, FleetError> {
        let err = |field: String, message: String| FleetError { file: path.to_owned(), field, message };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            // The parser's own span: the line an operator must look at.
            let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            err(String::new(), format!("{}{at}", e.message().trim()))
        })?;
        let mut raw: RawFleet = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            err(field, inner.message().trim().to_owned())
        })?;
        if raw.regions.is_empty() {
            return Err(err("regions".into(), "at least one [regions.NAME] is needed".into()));
        }
        for (name, r) in &raw.regions {
            crate::config::check_name(name).map_err(|m| err(format!("regions.{name}"), m.to_owned()))?;
            if r.admin.is_empty() {
                return Err(err(format!("regions.{name}.admin"), "needs at least one address".into()));
            }
            for (i, a) in r.admin.iter().enumerate() {
                resolve::Entry::parse(a)
                    .map_err(|m| err(format!("regions.{name}.admin[{i}]"), format!("{a:?}: {m}")))?;
            }
            if !(r.capacity_rps.is_finite() && r.capacity_rps > 0.0) {
                return Err(err(format!("regions.{name}.capacity_rps"), "must be a positive number".into()));
            }
        }
        if let Some(store) = &mut raw.store {
            let base = path.parent().map(Path::to_owned).unwrap_or_default();
            if let Some((field, message)) = store.check(&base).into_iter().next() {
                return Err(err(field, message));
            }
        }
        Ok(FleetFile {
            file: path.to_owned(),
            token_env: raw.token_env,
            regions: raw.regions,
            token_value: None,
            store: raw.store,
        })
    }

    /// The admin token: given directly, or from the environment.
    pub(crate) fn token(&self) -> Option<String> {
        if let Some(t) = &self.token_value {
            return Some(t.clone());
        }
        std::env::var(&self.token_env).ok().filter(|t| !t.trim().is_empty()).map(|t| t.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_example_parses_and_mistakes_are_named() {
        let ok = r#"token_env = "FLOWGATE_ADMIN_TOKEN"
[regions.us-east-1]
admin = ["10.0.0.5:9901", "10.0.0.6:9901"]
capacity_rps = 50000
[regions.us-west-2]
admin = ["dns:flowgate-admin.us-west-2.internal:9901"]
capacity_rps = 40000
"#;
        let f = FleetFile::parse(Path::new("fleet.toml"), ok).unwrap();
        assert_eq!(f.regions.len(), 2);
        let cases = [
            (ok.replace("capacity_rps = 40000", "capacity_rps = 0"), "regions.us-west-2.capacity_rps"),
            (ok.replace("\"10.0.0.6:9901\"", "\"10.0.0.6\""), "regions.us-east-1.admin[1]"),
            (ok.replace("token_env", "tokenenv"), "tokenenv"),
            (
                ok.replace("dns:flowgate-admin.us-west-2.internal:9901", "dns:nope"),
                "regions.us-west-2.admin[0]",
            ),
        ];
        for (text, field) in cases {
            let e = FleetFile::parse(Path::new("fleet.toml"), &text).unwrap_err();
            assert!(e.field.contains(field) || e.message.contains(field), "{field}: {e}");
            assert!(e.to_string().starts_with("fleet.toml: "), "{e}");
        }
    }
}
