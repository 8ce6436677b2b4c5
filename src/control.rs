//! The control plane: putting a pushed table in force, and reloading the static config.
//!
//! Applying a table is a typed change with explicit outcomes: the version rules of the
//! contract (greater: apply; same and identical: no-op; anything else: stale), validation
//! against what this proxy knows, the `max_shift` safety rule, then compile (off the
//! request path), persist (durably, before anyone is told it is applied), swap, record.
//! Every step before the swap can refuse, and a refusal changes nothing. Applies and
//! reloads are serialised so that they never interleave.
//!
//! # Layout
//!
//! - [`apply`]: a pushed table's checks and swap; [`reload`]: the static config's.
//! - [`startup`]: the table a starting proxy serves; [`persist`]: the one kept on disk.
//! - [`history`]: what was applied, when, by whom.
//! - [`sync_state`]: whether this proxy has compared its table with the fleet's (peers,
//!   store), fed by [`catchup`] and [`follow_store`].
//! - [`shift`]: the `max_shift` rule, pure.

pub(crate) mod apply;
pub(crate) mod catchup;
pub(crate) mod follow_store;
pub(crate) mod history;
pub(crate) mod persist;
pub(crate) mod persist_writer;
pub(crate) mod reload;
pub(crate) mod shift;
pub(crate) mod startup;
pub(crate) mod sync_state;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::proxy::{BuildError, Proxy, Shared};
pub(crate) use apply::{Applied, ApplyError, ApplyMode};
pub(crate) use history::HistoryEntry;
pub use reload::ReloadError;

/// The proxy generation in force and what changes it.
pub struct Control {
    /// The request path loads this once per request.
    pub(crate) proxy: Arc<ArcSwap<Proxy>>,
    /// What every generation shares (metrics, tunnels), so a reload keeps them.
    pub(crate) shared: Shared,
    /// The file SIGHUP re-reads.
    config_path: PathBuf,
    /// The config in force (for reload checks and status).
    config: Mutex<Arc<Config>>,
    /// Oldest first, at most [`history::HISTORY_LEN`].
    history: Mutex<VecDeque<HistoryEntry>>,
    /// Serialises applies and reloads; held across the persist, never on the request path.
    change: tokio::sync::Mutex<()>,
    /// Replaces the state file on each push and syncs it in the background.
    state_writer: Arc<persist_writer::PersistWriter>,
    /// Set once this proxy has compared its table with a peer's (see [`catchup`]).
    synced: std::sync::atomic::AtomicBool,
    /// Wakes whoever waits for `synced`.
    synced_now: tokio::sync::Notify,
    /// Peers seen on this version with another digest, as of the last catch-up round.
    conflicts: Mutex<Vec<crate::wire::TableConflict>>,
    /// The etcd store's state as the follower last saw it ([`follow_store`]).
    store_state: Mutex<crate::wire::StoreState>,
    /// Set once the store's table has been read (and applied, if newer).
    store_synced: tokio::sync::watch::Sender<bool>,
}

impl Control {
    /// Builds the first generation from `cfg` and the start-up table.
    pub(crate) fn start(config_path: &Path, cfg: Config) -> Result<Control, BuildError> {
        let shared = Shared::new()?;
        let (table, source) = startup::startup_table(&cfg)?;
        tracing::info!(version = table.version, source, "traffic table at start");
        let entry = HistoryEntry {
            version: table.version,
            applied_at: history::now_rfc3339(),
            note: table.note.clone(),
            who: format!("startup ({source})"),
            table: Some(Arc::new(table.clone())),
        };
        let proxy = Proxy::new(&cfg, shared.clone(), table)?;
        Ok(Control {
            proxy: Arc::new(ArcSwap::from_pointee(proxy)),
            shared,
            config_path: config_path.to_owned(),
            config: Mutex::new(Arc::new(cfg)),
            history: Mutex::new(VecDeque::from([entry])),
            change: tokio::sync::Mutex::new(()),
            state_writer: Arc::new(persist_writer::PersistWriter::start()),
            synced: Default::default(),
            synced_now: tokio::sync::Notify::new(),
            conflicts: Mutex::new(Vec::new()),
            store_state: Mutex::new(crate::wire::StoreState::None),
            store_synced: tokio::sync::watch::Sender::new(false),
        })
    }

    pub(crate) fn config(&self) -> Arc<Config> {
        self.config.lock().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Waits for protocol-switched tunnels (of every generation) to end, cutting them
    /// when `cut` fires.
    pub(crate) async fn drain_tunnels(&self, cut: impl std::future::Future<Output = ()>) {
        let tunnels = &self.shared.tunnels;
        tunnels.close();
        tokio::select! {
            _ = tunnels.wait() => {}
            _ = cut => {
                self.shared.tunnel_cut.cancel();
                tunnels.wait().await;
            }
        }
    }
}
