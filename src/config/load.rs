//! Reading the TOML file section by section, collecting every error with its field and line.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::{
    Admin, Balance, Bypass, Config, Drain, Fleet, Forwarding, Health, Limits, Listen, Log, Origin, Outlier,
    Overload, Peer, Retry, Route, Runtime, Timeouts,
};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}{message}{}", file.display(), if field.is_empty() { String::new() } else { format!("{field}: ") }, line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted path of the field at fault (`listen.public`, `routes[1].origin`); empty when
    /// the whole file is at fault.
    pub field: String,
    /// 1-based line, when the parser knows it.
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub(super) fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            field: String::new(),
            line: None,
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Collects errors while the sections are read, so one run reports them all.
pub(super) struct Errors<'a> {
    file: &'a Path,
    text: &'a str,
    pub(super) list: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    pub(super) fn push(
        &mut self,
        field: impl Into<String>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) {
        let line = span.map(|s| line_of(self.text, s.start));
        self.list.push(ConfigError {
            file: self.file.to_owned(),
            field: field.into(),
            line,
            message: message.into(),
        });
    }

    /// Deserializes one value, recording an error (with the inner field path) on failure.
    /// An unknown key is recorded, removed and the value read again, so that one stray
    /// field does not hide a bad value beside it.
    fn section<T: DeserializeOwned>(&mut self, path: &str, value: Spanned<DeValue<'_>>) -> Option<T> {
        let mut value = value;
        // Bounded: each round removes one key of a finite table.
        for _ in 0..64 {
            let outer = value.span();
            let de = ValueDeserializer::from(value.clone());
            let err = match serde_path_to_error::deserialize::<_, T>(de) {
                Ok(v) => return Some(v),
                Err(err) => err,
            };
            let inner = err.path().to_string();
            let field = if inner.is_empty() || inner == "." {
                path.to_owned()
            } else if inner.starts_with('[') {
                format!("{path}{inner}")
            } else {
                format!("{path}.{inner}")
            };
            let source = err.into_inner();
            let message = source.message().trim().to_owned();
            let unknown = message.starts_with("unknown field").then_some(inner);
            self.push(field, source.span().or(Some(outer)), message);
            match (unknown, value.get_mut()) {
                (Some(key), DeValue::Table(table)) if !key.contains(['.', '[']) => {
                    let before = table.len();
                    *table = std::mem::take(table)
                        .into_iter()
                        .filter(|(k, _)| k.get_ref().as_ref() != key.as_str())
                        .collect();
                    if table.len() == before {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        None
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Sections as read, before cross-field checks; `None` where a section failed to parse.
#[derive(Default)]
pub(super) struct Sections {
    pub region: Option<String>,
    pub table: Option<String>,
    pub listen: Option<Listen>,
    pub admin: Option<Admin>,
    pub origins: BTreeMap<String, Origin>,
    pub peers: BTreeMap<String, Peer>,
    pub routes: Vec<Option<Route>>,
    pub timeouts: Option<Timeouts>,
    pub limits: Option<Limits>,
    pub drain: Option<Drain>,
    pub fleet: Option<Fleet>,
    pub log: Option<Log>,
    pub runtime: Option<Runtime>,
    pub health: Option<Health>,
    pub outlier: Option<Outlier>,
    pub balance: Option<Balance>,
    pub retry: Option<Retry>,
    pub forwarding: Option<Forwarding>,
    pub bypass: Option<Bypass>,
    pub overload: Option<Overload>,
    pub store: Option<super::Store>,
    /// Whether a required section was present at all.
    pub saw_region: bool,
    pub saw_listen: bool,
}

pub(super) fn parse(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut errors = Errors { file, text, list: Vec::new() };
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            errors.push("", e.span(), e.message().trim().to_owned());
            return Err(ConfigErrors(errors.list));
        }
    };
    let mut s = Sections::default();
    for (key, value) in doc.into_inner() {
        let key_span = key.span();
        let name = key.into_inner();
        match name.as_ref() {
            "region" => {
                s.saw_region = true;
                s.region = errors.section("region", value);
            }
            "table" => s.table = errors.section("table", value),
            "listen" => {
                s.saw_listen = true;
                s.listen = errors.section("listen", value);
            }
            "admin" => s.admin = errors.section("admin", value),
            "origins" => read_map(&mut errors, "origins", value, &mut s.origins),
            "peers" => read_map(&mut errors, "peers", value, &mut s.peers),
            "routes" => read_routes(&mut errors, value, &mut s.routes),
            "timeouts" => s.timeouts = errors.section("timeouts", value),
            "limits" => s.limits = errors.section("limits", value),
            "drain" => s.drain = errors.section("drain", value),
            "fleet" => s.fleet = errors.section("fleet", value),
            "log" => s.log = errors.section("log", value),
            "runtime" => s.runtime = errors.section("runtime", value),
            "health" => s.health = errors.section("health", value),
            "outlier" => s.outlier = errors.section("outlier", value),
            "balance" => s.balance = errors.section("balance", value),
            "retry" => s.retry = errors.section("retry", value),
            "forwarding" => s.forwarding = errors.section("forwarding", value),
            "bypass" => s.bypass = errors.section("bypass", value),
            "overload" => s.overload = errors.section("overload", value),
            "store" => s.store = errors.section("store", value),
            other => errors.push(
                other.to_owned(),
                Some(key_span),
                format!(
                    "unknown field `{other}`, expected one of region, table, listen, admin, \
                     origins, peers, routes, timeouts, limits, drain, fleet, log, runtime, health, \
                     outlier, balance, retry, forwarding, bypass, overload, store"
                ),
            ),
        }
    }
    super::validate::finish(errors, s)
}

/// Reads `[name.KEY]` tables one entry at a time, so a bad entry does not hide the others.
fn read_map<T: DeserializeOwned>(
    errors: &mut Errors<'_>,
    section: &str,
    value: Spanned<DeValue<'_>>,
    out: &mut BTreeMap<String, T>,
) {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(table) => {
            for (key, entry) in table {
                let name = key.into_inner().into_owned();
                let path = format!("{section}.{name}");
                if let Some(v) = errors.section(&path, entry) {
                    out.insert(name, v);
                }
            }
        }
        _ => errors.push(section, Some(span), "expected a table"),
    }
}

fn read_routes(errors: &mut Errors<'_>, value: Spanned<DeValue<'_>>, out: &mut Vec<Option<Route>>) {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                out.push(errors.section(&format!("routes[{i}]"), item));
            }
        }
        _ => errors.push("routes", Some(span), "expected an array of tables ([[routes]])"),
    }
}

impl Errors<'_> {
    pub(super) fn file(&self) -> &Path {
        self.file
    }

    /// The line of the first occurrence of `needle` in the file, for checks made after
    /// deserialization where spans are gone.
    pub(super) fn span_of(&self, needle: &str) -> Option<Range<usize>> {
        self.text.find(needle).map(|start| start..start + needle.len())
    }
}
