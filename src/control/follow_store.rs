//! A proxy with `[store]` follows the table in etcd: it reads it at start, watches its key,
//! and applies each new revision through the same validation, signature check and history
//! as a push (as a catch-up: `max_shift` guards one operator's step against a proxy's
//! table, not a proxy's jump to the fleet's record).
//!
//! The higher version wins, wherever it came from: a store table older than the one in
//! force (a direct push went ahead of the store) is left alone and logged; the same
//! version with other contents is refused and logged, as from a peer. When the store is
//! unreachable or has lost its quorum, the proxy keeps serving its last good table
//! (persisted as today), stays ready, says `store: disconnected` (status, metric, log) and
//! reconnects with a jittered backoff, reading the key again before watching it, so a
//! write it missed meanwhile is applied once the store is back.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio_util::sync::CancellationToken;

use super::{ApplyMode, Control};
use crate::config;
use crate::store::{Change, Store, StoreError, Stored};
use crate::wire::StoreState;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Runs until `stop` fires.
pub(crate) fn spawn(control: Arc<Control>, cfg: config::Store, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut read_once = false;
            let result = tokio::select! {
                r = session(&control, &cfg, &mut read_once) => r,
                _ = stop.cancelled() => return,
            };
            if let Err(e) = result {
                control.set_store_state(StoreState::Disconnected, Some(&e.to_string()));
            }
            if read_once {
                backoff = BACKOFF_MIN;
            }
            let jittered = backoff.mul_f64(rand::rng().random_range(0.5..=1.0));
            tokio::select! {
                _ = tokio::time::sleep(jittered) => {}
                _ = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
}

/// Connects, reads and applies the table, then applies every change the watch delivers;
/// returns when the store fails. A linearizable read every few seconds tells a store that
/// lost its quorum (a watch on a cut-off member can stay silent) and catches a missed
/// write.
async fn session(control: &Control, cfg: &config::Store, read_once: &mut bool) -> Result<(), StoreError> {
    let store = Store::connect(cfg).await?;
    let mut revision = read_and_apply(control, &store).await?;
    *read_once = true;
    let mut watch = store.watch_table(revision + 1).await?;
    let every = (cfg.timeout * 2).clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            change = watch.next() => match change? {
                Change::Put(stored) => {
                    revision = revision.max(stored.revision);
                    apply(control, *stored).await;
                }
                Change::Unusable { revision: r, why } => {
                    revision = revision.max(r);
                    tracing::error!(revision = r, why, "the store's table key holds no usable table; keeping the one in force");
                }
            },
            _ = tick.tick() => {
                let now = store.ping().await?;
                control.set_store_state(StoreState::Connected, None);
                if now > revision {
                    revision = read_and_apply(control, &store).await?;
                }
            }
        }
    }
}

async fn read_and_apply(control: &Control, store: &Store) -> Result<i64, StoreError> {
    // Each attempt is bounded by `[store] timeout`, member after member.
    let read = store.read_table().await;
    let revision = match read {
        Ok(Some(stored)) => {
            let r = stored.revision;
            apply(control, stored).await;
            r
        }
        Ok(None) => {
            tracing::info!(key = %store.config().table_key(), "the store holds no table yet; keeping the one in force");
            0
        }
        Err(StoreError::Invalid { key, why }) => {
            tracing::error!(%key, why, "the store's table does not parse; keeping the one in force");
            store.ping().await?
        }
        Err(e) => return Err(e),
    };
    control.set_store_state(StoreState::Connected, None);
    control.mark_store_synced();
    Ok(revision)
}

async fn apply(control: &Control, stored: Stored) {
    let current = control.proxy.load().tables.load().table.version;
    if stored.table.version < current {
        tracing::info!(
            store_version = stored.table.version,
            version = current,
            "the store holds an older table than the one in force (a direct push went ahead of it); keeping this one"
        );
        return;
    }
    let who = format!("store (etcd revision {})", stored.revision);
    // A refused table changes nothing; `apply_with` logs why.
    let _ = control.apply_with(stored.table, &who, ApplyMode { if_match: None, catch_up: true }).await;
}
