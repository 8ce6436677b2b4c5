//! Putting a table in force: the version rules, `If-Match`, validation, the signature and
//! `max_shift` checks, then compile and persist off the runtime's thread, swap, record. Every
//! step before the swap can refuse, and a refusal changes nothing.

use std::sync::Arc;

use super::history::{self, HistoryEntry};
use super::{Control, persist, shift};
use crate::table::{Table, TableError};

/// How a table arrives, which decides the checks it gets beyond the version rules.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApplyMode {
    /// `If-Match`: apply only over this version.
    pub(crate) if_match: Option<u64>,
    /// A catch-up to the fleet's newer table: `max_shift` guards one operator's step, not
    /// the jump to where the fleet already is.
    pub(crate) catch_up: bool,
}

/// The outcome of a push that was not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    Applied { version: u64, previous: u64 },
    Unchanged { version: u64 },
}

/// Why a push was refused; each maps to one HTTP status and one `reason` label.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
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
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            ApplyError::Invalid(_) => "invalid",
            ApplyError::Shift(_) => "max_shift",
            ApplyError::Stale { .. } => "stale",
            ApplyError::Precondition { .. } => "precondition",
            ApplyError::Persist(_) | ApplyError::Internal(_) => "internal",
        }
    }
}

impl Control {
    /// Puts `table` in force, or refuses it and changes nothing; `mode` says whether it
    /// came with `If-Match` or as a catch-up.
    pub(crate) async fn apply_with(
        &self,
        table: Table,
        who: &str,
        mode: ApplyMode,
    ) -> Result<Applied, ApplyError> {
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
        let config = self.config();
        crate::table::sign::verify(&table, &config.admin.table_keys).map_err(ApplyError::Invalid)?;
        if let Some(max) = table.max_shift.filter(|_| !mode.catch_up) {
            shift::check(cur, &table, max).map_err(ApplyError::Shift)?;
        }
        let previous = cur.version;
        let version = table.version;
        // Compiling a large table and writing it are the slow steps: neither runs on the
        // runtime's thread, and the request path keeps reading the old table until the
        // store below. The file is replaced before the answer (a process crash keeps it);
        // its fsync is coalesced in the background (power loss may lose the last
        // `persist_writer::SYNC_EVERY`), so a push waits for no disk.
        let state_dir = config.admin.state_dir.clone();
        let (p2, writer) = (proxy.clone(), self.state_writer.clone());
        let compiled = tokio::task::spawn_blocking(move || -> Result<_, ApplyError> {
            if let Some(dir) = &state_dir {
                writer.save(dir, &table)?;
            }
            Ok(p2.compile(table))
        })
        .await
        .map_err(|e| ApplyError::Internal(e.to_string()))??;
        // The history keeps the very table the compiled one holds: no copy of it.
        let compiled = Arc::new(compiled);
        let kept = compiled.table.clone();
        proxy.tables.store_arc(compiled.clone());
        self.shared.metrics.set_table_digest(&compiled.digest);
        self.record(HistoryEntry {
            version,
            applied_at: history::now_rfc3339(),
            note: kept.note.clone(),
            who: who.to_owned(),
            table: Some(kept),
        });
        Ok(Applied::Applied { version, previous })
    }
}
