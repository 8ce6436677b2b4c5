//! Static configuration: the TOML file of `flowgate serve --config`.
//!
//! The pipeline is `file → Config as serde reads it (spans kept) → semantic checks → Config`.
//! [`read`] reads each section on its own so that one run reports every mistake in the
//! file; each section's module holds its struct, its defaults and the checks serde cannot
//! express, and [`validate`] runs them. Every error names its field (`listen.public`,
//! `routes[2].origin`) and the line the parser saw that field on. A `Config` value is
//! therefore always valid: nothing downstream re-checks it.
//!
//! A new field is a field of its section's struct, with its default and, if it has one,
//! its check beside it; a new section is one more field of [`Config`] and its module.

mod admin;
mod balance;
mod error;
mod forwarding;
mod health;
mod limits;
mod listen;
mod origin;
mod overload;
mod peer;
mod process;
mod read;
mod report;
mod route;
mod store;
mod timeouts;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub(crate) use crate::vocab::checks::{check_host_pattern, check_host_port, check_name};
pub use admin::Admin;
pub(crate) use balance::{Balance, Retry};
pub use error::{ConfigError, ConfigErrors};
pub(crate) use forwarding::{Bypass, Forwarding};
pub(crate) use health::{Health, Outlier};
pub use limits::Limits;
pub use listen::Listen;
pub use origin::Origin;
pub(crate) use origin::{HealthCheck, Protocol};
pub(crate) use overload::Overload;
pub use peer::Peer;
pub(crate) use process::Fleet;
pub use process::{Drain, Log, LogFormat, Runtime};
pub use route::Route;
pub use store::Store;
pub(crate) use timeouts::Timeouts;

/// The validated static configuration of one proxy.
///
/// `Deserialize` reads the file's shape only, with a default for every section so that
/// each can be read alone: [`Config::load`] and [`Config::from_toml`] also check it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the config was read from; error messages and relative paths use it.
    #[serde(skip)]
    pub(crate) file: PathBuf,
    /// The region this proxy belongs to; it reads this row of the traffic table.
    #[serde(default)]
    pub region: String,
    /// The initial traffic table (absolute path); a newer persisted table wins.
    pub table: Option<PathBuf>,
    /// `[listen]`: required; the default only stands in while the file is checked.
    #[serde(default = "Listen::absent")]
    pub listen: Listen,
    #[serde(default)]
    pub admin: Admin,
    /// Origins by name, in name order.
    #[serde(default)]
    pub origins: BTreeMap<String, Origin>,
    /// Peer regions by name.
    #[serde(default)]
    pub peers: BTreeMap<String, Peer>,
    /// Routes in file order; the router orders them by specificity.
    #[serde(default, deserialize_with = "route::array_of_tables")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub(crate) timeouts: Timeouts,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub drain: Drain,
    #[serde(default)]
    pub(crate) fleet: Fleet,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub(crate) health: Health,
    #[serde(default)]
    pub(crate) outlier: Outlier,
    #[serde(default)]
    pub(crate) balance: Balance,
    #[serde(default)]
    pub(crate) retry: Retry,
    #[serde(default)]
    pub(crate) forwarding: Forwarding,
    #[serde(default)]
    pub(crate) bypass: Bypass,
    #[serde(default)]
    pub(crate) overload: Overload,
    /// `[store]`: follow the table in etcd (absent: pushes and peers only).
    pub store: Option<Store>,
}

impl Config {
    /// Reads, parses and validates a config file. Every problem found is returned at once.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::whole_file(path, format!("cannot read: {e}")))?;
        Config::from_toml(path, &text)
    }

    /// Parses and validates config text; `file` names it in errors and anchors relative paths.
    pub fn from_toml(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let (mut config, mut report) = read::read(file, text)?;
        validate::validate(&mut config, &mut report);
        report.finish()?;
        Ok(config)
    }
}
