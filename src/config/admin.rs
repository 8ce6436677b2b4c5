//! `[admin]`: the control endpoint, who may change the table through it, and where the
//! applied table is kept.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::report::Report;
use crate::vocab::checks::check_public_key;

/// `[admin]`: the control endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Loopback by default: the admin listener must not be reachable by accident.
    pub listen: SocketAddr,
    /// Environment variable holding the bearer token required for every change.
    pub token_env: String,
    /// Where the last applied table survives restarts.
    pub state_dir: Option<PathBuf>,
    /// A file of named tokens, one `NAME TOKEN` per line (`#` starts a comment).
    pub token_file: Option<PathBuf>,
    /// Largest table body accepted by `PUT /v1/table`; larger gets 413.
    pub(crate) max_table_bytes: usize,
    /// Ed25519 public keys (base64): when set, only tables signed by one of them are
    /// accepted, from any path.
    pub(crate) table_keys: Vec<String>,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: SocketAddr::from(([127, 0, 0, 1], 9901)),
            token_env: "FLOWGATE_ADMIN_TOKEN".to_owned(),
            state_dir: None,
            token_file: None,
            max_table_bytes: 8 * 1024 * 1024,
            table_keys: Vec::new(),
        }
    }
}

impl Admin {
    /// Makes the paths absolute; the keys must be keys and the token file readable.
    pub(super) fn check(&mut self, report: &mut Report<'_>) {
        report.resolve(&mut self.state_dir);
        report.resolve(&mut self.token_file);
        for (i, key) in self.table_keys.iter().enumerate() {
            if let Err(why) = check_public_key(key) {
                report.error(format!("admin.table_keys[{i}]"), why);
            }
        }
        if let Some(file) = &self.token_file
            && let Err(e) = std::fs::metadata(file)
        {
            report.error("admin.token_file", format!("{}: {e}", file.display()));
        }
    }
}
