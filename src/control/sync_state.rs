//! How this proxy's table stands against the fleet's: whether it has been compared with a
//! peer's ([`super::catchup`]) or the store's ([`super::follow_store`]), which gates
//! readiness at start; the peers that hold this version with other contents; and the
//! store's connection state, for status and metrics.

use std::sync::atomic::Ordering;

use super::Control;
use crate::wire::{StoreState, TableConflict};

impl Control {
    /// This proxy has compared its table with a peer's (and caught up if it was behind).
    pub(crate) fn mark_synced(&self) {
        if !self.synced.swap(true, Ordering::SeqCst) {
            tracing::info!("table compared with a peer's");
        }
        self.synced_now.notify_waiters();
    }

    /// Resolves once [`Control::mark_synced`] has been called.
    pub(crate) async fn wait_synced(&self) {
        loop {
            let notified = self.synced_now.notified();
            if self.synced.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn store_state(&self) -> StoreState {
        self.store_state.lock().map(|s| *s).unwrap_or_default()
    }

    /// Records the store's state (metric and log line on every change).
    pub(crate) fn set_store_state(&self, now: StoreState, why: Option<&str>) {
        let Ok(mut s) = self.store_state.lock() else { return };
        if *s == now {
            return;
        }
        *s = now;
        self.shared.metrics.set_store_state(now.name());
        match now {
            StoreState::Disconnected => {
                tracing::error!(
                    error = why.unwrap_or(""),
                    "store disconnected: serving the last good table, reconnecting"
                )
            }
            other => tracing::info!(store = other.name(), "store connected"),
        }
    }

    /// The store's table has been read (and applied when newer).
    pub(crate) fn mark_store_synced(&self) {
        self.store_synced.send_replace(true);
    }

    /// Resolves once [`Control::mark_store_synced`] has been called.
    pub(crate) async fn wait_store_synced(&self) {
        let mut rx = self.store_synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub(crate) fn set_conflicts(&self, conflicts: Vec<TableConflict>) {
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

    pub(crate) fn conflicts(&self) -> Vec<TableConflict> {
        self.conflicts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}
