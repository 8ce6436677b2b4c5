//! The table a starting proxy serves: the newer of the config's table and the one
//! persisted in `state_dir`.

use super::persist;
use crate::config::Config;
use crate::proxy::BuildError;
use crate::table::{Known, Table};

/// The start-up table and where it came from (`config`, `state_dir` or `none`). A bad
/// config table is an error; a bad state file is moved aside and logged, and the proxy
/// starts on the config's table.
pub(crate) fn startup_table(cfg: &Config) -> Result<(Table, &'static str), BuildError> {
    let known = Known::of_config(cfg);
    let configured = match &cfg.table {
        Some(path) => {
            let text =
                std::fs::read(path).map_err(|source| BuildError::TableRead { path: path.clone(), source })?;
            let t = Table::parse(&text)
                .and_then(|t| t.validate(&known).map(|_| t))
                .and_then(|t| crate::table::sign::verify(&t, &cfg.admin.table_keys).map(|_| t))
                .map_err(|source| BuildError::Table { path: path.clone(), source })?;
            Some(t)
        }
        None => None,
    };
    let persisted = match &cfg.admin.state_dir {
        Some(dir) => match persist::load(dir, &known) {
            persist::Loaded::Nothing => None,
            persist::Loaded::Table(t) => match crate::table::sign::verify(&t, &cfg.admin.table_keys) {
                Ok(()) => Some(t),
                Err(e) => {
                    tracing::error!(
                        state_file = %dir.join("table.json").display(),
                        error = %e,
                        "the persisted table is not signed by [admin] table_keys: ignored"
                    );
                    None
                }
            },
            persist::Loaded::MovedAside { reason, moved_to } => {
                tracing::error!(
                    state_file = %dir.join("table.json").display(),
                    moved_to = %moved_to.display(),
                    %reason,
                    "the persisted table is unusable: moved aside; starting on the config's table"
                );
                None
            }
        },
        None => None,
    };
    Ok(match (configured, persisted) {
        (Some(c), Some(p)) if p.version >= c.version => (p, "state_dir"),
        (Some(c), _) => (c, "config"),
        (None, Some(p)) => (p, "state_dir"),
        (None, None) => (Table::local_only(), "none"),
    })
}
