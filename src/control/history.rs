//! The applied tables, as `/v1/table/history` shows them and `restore` searches them: the
//! last [`HISTORY_LEN`] changes, with when and from whom.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::Control;
use crate::table::Table;

/// How many applied tables `/v1/table/history` keeps.
pub(crate) const HISTORY_LEN: usize = 50;

/// One applied table, as the history shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HistoryEntry {
    pub(crate) version: u64,
    /// RFC 3339, UTC.
    pub(crate) applied_at: String,
    pub(crate) note: Option<String>,
    /// The token's name, or `startup` / `reload`.
    pub(crate) who: String,
    /// The table itself, served at `/v1/table/history/VERSION` (so that `restore` can
    /// find the shares in force before an evacuation).
    #[serde(skip)]
    pub(crate) table: Option<Arc<Table>>,
}

impl HistoryEntry {
    /// As `GET /v1/table/history` shows it.
    pub(crate) fn wire(&self) -> crate::wire::HistoryEntry {
        crate::wire::HistoryEntry {
            version: self.version,
            applied_at: self.applied_at.clone(),
            note: self.note.clone(),
            who: self.who.clone(),
        }
    }
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Control {
    /// Newest first.
    pub(crate) fn history(&self) -> Vec<HistoryEntry> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.iter().rev().cloned().collect()
    }

    /// The table of an applied version still in the history.
    pub(crate) fn history_table(&self, version: u64) -> Option<Arc<Table>> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.iter().rev().find(|e| e.version == version).and_then(|e| e.table.clone())
    }

    pub(super) fn record(&self, entry: HistoryEntry) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.push_back(entry);
        while h.len() > HISTORY_LEN {
            h.pop_front();
        }
    }
}
