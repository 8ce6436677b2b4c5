//! `[[routes]]`: which origin serves a host and path prefix.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::Origin;
use super::report::Report;
use crate::vocab::checks::check_host_pattern;

/// `[[routes]]`: host + path prefix → origin.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `api.example.com`, `*.example.com` (any subdomain) or `*`.
    #[serde(default = "default_host")]
    pub host: String,
    /// The longest matching prefix wins.
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    pub origin: String,
}

fn default_host() -> String {
    "*".to_owned()
}

fn default_prefix() -> String {
    "/".to_owned()
}

/// Reads `routes` naming the TOML form it takes, since `[routes]` for `[[routes]]` is an
/// easy slip.
pub(super) fn array_of_tables<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Route>, D::Error> {
    struct Routes;
    impl<'de> Visitor<'de> for Routes {
        type Value = Vec<Route>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of tables ([[routes]])")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Route>, A::Error> {
            let mut routes = Vec::new();
            while let Some(route) = seq.next_element()? {
                routes.push(route);
            }
            Ok(routes)
        }
    }
    de.deserialize_seq(Routes)
}

impl Route {
    /// Checks the route written `i`-th in the file against the origins read.
    pub(super) fn check(&self, i: usize, origins: &BTreeMap<String, Origin>, report: &mut Report<'_>) {
        if let Err(why) = check_host_pattern(&self.host) {
            report.error(format!("routes[{i}].host"), why);
        }
        if !self.path_prefix.starts_with('/') {
            report.error(format!("routes[{i}].path_prefix"), "must start with `/`");
        }
        if !origins.contains_key(&self.origin) {
            let known: Vec<&str> = origins.keys().map(String::as_str).collect();
            report.error(
                format!("routes[{i}].origin"),
                format!("unknown origin `{}` (known: {})", self.origin, known.join(", ")),
            );
        }
    }
}
