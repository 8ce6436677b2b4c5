//! Reloading the static config (SIGHUP): a valid file that fits swaps in a new proxy
//! generation on the table in force; anything else is refused and changes nothing.

use std::sync::Arc;

use super::Control;
use super::history::{self, HistoryEntry};
use crate::config::Config;
use crate::proxy::{BuildError, Proxy};

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{0}")]
    Unchangeable(String),
}

impl Control {
    /// Re-reads the config file and, if it is valid and fits, swaps in a new generation
    /// (origins, endpoints, peers, routes, upstream timeouts and policies) keeping the
    /// table in force. Anything else is refused and changes nothing.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _one_at_a_time = self.change.lock().await;
        let path = self.config_path.clone();
        let cfg = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| ReloadError::Unchangeable(e.to_string()))??;
        let old_cfg = self.config();
        if cfg.region != old_cfg.region {
            return Err(ReloadError::Unchangeable(format!(
                "region: cannot change from {} to {} without a restart",
                old_cfg.region, cfg.region
            )));
        }
        if cfg.store != old_cfg.store {
            return Err(ReloadError::Unchangeable(
                "store: the etcd store a proxy follows cannot change without a restart".into(),
            ));
        }
        let old = self.proxy.load_full();
        let kept = old.tables.load().table.clone();
        let table = (*kept).clone();
        let version = table.version;
        let next = Proxy::new(&cfg, self.shared.clone(), table)?;
        next.start_background(&cfg);
        self.proxy.store(Arc::new(next));
        old.retire();
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(cfg);
        self.record(HistoryEntry {
            version,
            applied_at: history::now_rfc3339(),
            note: Some("static config reloaded".into()),
            who: "reload (SIGHUP)".into(),
            table: Some(kept),
        });
        Ok(())
    }
}
