//! The control plane: putting a pushed table in force, and reloading the static config.
//!
//! Applying a table is a typed change with explicit outcomes: the version rules of the
//! contract (greater: apply; same and identical: no-op; anything else: stale), validation
//! against what this proxy knows, the `max_shift` safety rule, then compile (off the
//! request path), persist (durably, before anyone is told it is applied), swap, record.
//! Every step before the swap can refuse, and a refusal changes nothing. Applies and
//! reloads are serialised so that they never interleave.

pub mod catchup;
pub mod follow_store;
pub mod persist;
pub mod shift;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::Config;
use crate::proxy::{BuildError, Proxy, Shared};
use crate::table::{Known, Table, TableError};

/// How many applied tables `/v1/table/history` keeps.
pub const HISTORY_LEN: usize = 50;

/// One applied table, as the history shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub version: u64,
    /// RFC 3339, UTC.
    pub applied_at: String,
    pub note: Option<String>,
    /// The token's name, or `startup` / `reload`.
    pub who: String,
    /// The table itself, served at `/v1/table/history/VERSION` (so that `restore` can
    /// find the shares in force before an evacuation).
    #[serde(skip)]
    pub table: Option<Arc<Table>>,
}

impl HistoryEntry {
    /// As `GET /v1/table/history` shows it.
    pub fn wire(&self) -> crate::wire::HistoryEntry {
        crate::wire::HistoryEntry {
            version: self.version,
            applied_at: self.applied_at.clone(),
            note: self.note.clone(),
            who: self.who.clone(),
        }
    }
}

/// How a table arrives, which decides the checks it gets beyond the version rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyMode {
    /// `If-Match`: apply only over this version.
    pub if_match: Option<u64>,
    /// A catch-up to the fleet's newer table: `max_shift` guards one operator's step, not
    /// the jump to where the fleet already is.
    pub catch_up: bool,
}

/// The outcome of a push that was not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied { version: u64, previous: u64 },
    Unchanged { version: u64 },
}

/// Why a push was refused; each maps to one HTTP status and one `reason` label.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(TableError),
    #[error("{0}")]
    Shift(TableError),
    #[error("version {offered} is not newer than the current version {current}")]
    Stale { offered: u64, current: u64 },
    /// `If-Match` named another version than the one in force.
    #[error("If-Match names version {expected} but version {current} is in force")]
    Precondition { expected: u64, current: u64 },
    #[error("cannot persist the table: {0}")]
    Persist(#[from] persist::PersistError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApplyError {
    /// The `table_rejected_total{reason}` label.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Invalid(_) => "invalid",
            ApplyError::Shift(_) => "max_shift",
            ApplyError::Stale { .. } => "stale",
            ApplyError::Precondition { .. } => "precondition",
            ApplyError::Persist(_) | ApplyError::Internal(_) => "internal",
        }
    }
}

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

/// The proxy generation in force and what changes it.
pub struct Control {
    /// The request path loads this once per request.
    pub proxy: Arc<ArcSwap<Proxy>>,
    pub shared: Shared,
    config_path: PathBuf,
    /// The config in force (for reload checks and status).
    config: Mutex<Arc<Config>>,
    history: Mutex<VecDeque<HistoryEntry>>,
    /// Serialises applies and reloads; held across the persist, never on the request path.
    change: tokio::sync::Mutex<()>,
    /// Set once this proxy has compared its table with a peer's (see [`catchup`]).
    synced: std::sync::atomic::AtomicBool,
    synced_now: tokio::sync::Notify,
    /// Peers seen on this version with another digest, as of the last catch-up round.
    conflicts: Mutex<Vec<crate::wire::TableConflict>>,
    /// The etcd store's state as the follower last saw it ([`follow_store`]).
    store_state: Mutex<crate::wire::StoreState>,
    /// Set once the store's table has been read (and applied, if newer).
    store_synced: tokio::sync::watch::Sender<bool>,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The table a starting proxy serves: the newer of the config's table and the one
/// persisted in `state_dir`. A bad config table is an error; a bad state file is moved
/// aside and logged, and the proxy starts on the config's table.
pub fn startup_table(cfg: &Config) -> Result<(Table, &'static str), BuildError> {
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

impl Control {
    /// Builds the first generation from `cfg` and the start-up table.
    pub fn start(config_path: &Path, cfg: Config) -> Result<Control, BuildError> {
        let shared = Shared::new()?;
        let (table, source) = startup_table(&cfg)?;
        tracing::info!(version = table.version, source, "traffic table at start");
        let entry = HistoryEntry {
            version: table.version,
            applied_at: now_rfc3339(),
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
            synced: Default::default(),
            synced_now: tokio::sync::Notify::new(),
            conflicts: Mutex::new(Vec::new()),
            store_state: Mutex::new(crate::wire::StoreState::None),
            store_synced: tokio::sync::watch::Sender::new(false),
        })
    }

    /// This proxy has compared its table with a peer's (and caught up if it was behind).
    pub fn mark_synced(&self) {
        if !self.synced.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tracing::info!("table compared with a peer's");
        }
        self.synced_now.notify_waiters();
    }

    /// Resolves once [`Control::mark_synced`] has been called.
    pub async fn wait_synced(&self) {
        loop {
            let notified = self.synced_now.notified();
            if self.synced.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    pub fn store_state(&self) -> crate::wire::StoreState {
        self.store_state.lock().map(|s| *s).unwrap_or_default()
    }

    /// Records the store's state (metric and log line on every change).
    pub fn set_store_state(&self, now: crate::wire::StoreState, why: Option<&str>) {
        let Ok(mut s) = self.store_state.lock() else { return };
        if *s == now {
            return;
        }
        *s = now;
        self.shared.metrics.store_connected.set((now == crate::wire::StoreState::Connected) as i64);
        match now {
            crate::wire::StoreState::Disconnected => {
                tracing::error!(
                    error = why.unwrap_or(""),
                    "store disconnected: serving the last good table, reconnecting"
                )
            }
            other => tracing::info!(store = other.name(), "store connected"),
        }
    }

    /// The store's table has been read (and applied when newer).
    pub fn mark_store_synced(&self) {
        self.store_synced.send_replace(true);
    }

    /// Resolves once [`Control::mark_store_synced`] has been called.
    pub async fn wait_store_synced(&self) {
        let mut rx = self.store_synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn set_conflicts(&self, conflicts: Vec<crate::wire::TableConflict>) {
        self.shared.metrics.table_conflicts.set(conflicts.len() as i64);
        if let Ok(mut c) = self.conflicts.lock() {
            if *c != conflicts && !conflicts.is_empty() {
                tracing::error!(
                    ?conflicts,
                    "peers have this table version with other contents: the fleet is split"
                );
            }
            *c = conflicts;
        }
    }

    pub fn conflicts(&self) -> Vec<crate::wire::TableConflict> {
        self.conflicts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.lock().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Newest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.iter().rev().cloned().collect()
    }

    /// The table of an applied version still in the history.
    pub fn history_table(&self, version: u64) -> Option<Arc<Table>> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.iter().rev().find(|e| e.version == version).and_then(|e| e.table.clone())
    }

    fn record(&self, entry: HistoryEntry) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.push_back(entry);
        while h.len() > HISTORY_LEN {
            h.pop_front();
        }
    }

    /// Puts `table` in force, or refuses it and changes nothing.
    pub async fn apply(&self, table: Table, who: &str) -> Result<Applied, ApplyError> {
        self.apply_with(table, who, ApplyMode::default()).await
    }

    /// [`Control::apply`] with `If-Match` or as a catch-up.
    pub async fn apply_with(&self, table: Table, who: &str, mode: ApplyMode) -> Result<Applied, ApplyError> {
        let metrics = &self.shared.metrics;
        let result = self.apply_inner(table, who, mode).await;
        match &result {
            Ok(Applied::Applied { version, previous }) => {
                metrics.table_applied_total.inc();
                metrics.table_version.set(*version as i64);
                tracing::info!(version, previous, who, "traffic table applied");
            }
            Ok(Applied::Unchanged { version }) => tracing::info!(version, who, "traffic table unchanged"),
            Err(e) => {
                metrics.table_rejected_total.with_label_values(&[e.reason()]).inc();
                tracing::warn!(who, error = %e, reason = e.reason(), "traffic table refused");
            }
        }
        result
    }

    async fn apply_inner(&self, table: Table, who: &str, mode: ApplyMode) -> Result<Applied, ApplyError> {
        let _one_at_a_time = self.change.lock().await;
        let proxy = self.proxy.load_full();
        let current = proxy.tables.load();
        let cur = &*current.table;
        // Never a valid version: a 400 naming it, not a 409 against the one in force.
        if table.version == 0 {
            return Err(ApplyError::Invalid(TableError {
                field: "version".into(),
                message: "must be a positive integer".into(),
            }));
        }
        // Already in force (from the store's watch or a peer, before this push arrived):
        // done, whatever `If-Match` says, so a conditional push is idempotent.
        if table.version == cur.version && table.same_content(cur) {
            return Ok(Applied::Unchanged { version: cur.version });
        }
        if let Some(expected) = mode.if_match
            && expected != cur.version
        {
            return Err(ApplyError::Precondition { expected, current: cur.version });
        }
        if table.version <= cur.version {
            return Err(ApplyError::Stale { offered: table.version, current: cur.version });
        }
        table.validate(&proxy.known()).map_err(ApplyError::Invalid)?;
        crate::table::sign::verify(&table, &self.config().admin.table_keys).map_err(ApplyError::Invalid)?;
        if let Some(max) = table.max_shift.filter(|_| !mode.catch_up) {
            shift::check(cur, &table, max).map_err(ApplyError::Shift)?;
        }
        let previous = cur.version;
        let version = table.version;
        let note = table.note.clone();
        let kept = Arc::new(table.clone());
        // Compiling a large table and writing it are the slow steps: neither touches the
        // request path, which keeps reading the old table until the store below.
        let state_dir = self.config().admin.state_dir.clone();
        let p2 = proxy.clone();
        let compiled = tokio::task::spawn_blocking(move || -> Result<_, ApplyError> {
            if let Some(dir) = &state_dir {
                persist::save(dir, &table)?;
            }
            Ok(p2.compile(table))
        })
        .await
        .map_err(|e| ApplyError::Internal(e.to_string()))??;
        let digest = compiled.digest.clone();
        proxy.tables.store(compiled);
        self.shared.metrics.set_table_digest(&digest);
        self.record(HistoryEntry {
            version,
            applied_at: now_rfc3339(),
            note,
            who: who.to_owned(),
            table: Some(kept),
        });
        Ok(Applied::Applied { version, previous })
    }

    /// Waits for protocol-switched tunnels (of every generation) to end, cutting them
    /// when `cut` fires.
    pub async fn drain_tunnels(&self, cut: impl std::future::Future<Output = ()>) {
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
            applied_at: now_rfc3339(),
            note: Some("static config reloaded".into()),
            who: "reload (SIGHUP)".into(),
            table: Some(kept),
        });
        Ok(())
    }
}
