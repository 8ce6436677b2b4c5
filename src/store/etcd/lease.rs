//! Leases kept alive in the background: what the operation lock and the autopilots'
//! leadership hang on, and how a holder learns, in time, that it has lost them.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Store;
use crate::store::StoreError;

/// A handle on someone else's [`Lease`] (the autopilot's leadership, shared with the runs
/// it starts): its id and whether it is lost, without the right to revoke it.
#[derive(Debug, Clone)]
pub(crate) struct LeaseRef {
    id: i64,
    lost: watch::Receiver<bool>,
}

impl LeaseRef {
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    pub(crate) fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }
}

/// A lease kept alive in the background; `lost` turns true (and stays) once it lapsed,
/// or is about to: a keep-alive not confirmed within the TTL less one request timeout.
#[derive(Debug)]
pub(crate) struct Lease {
    id: i64,
    lost: watch::Receiver<bool>,
    /// The keep-alive loop, stopped on release.
    task: tokio::task::JoinHandle<()>,
    /// Where to revoke it.
    store: Store,
}

impl Lease {
    /// Grants a lease of `[store] lease_ttl` and keeps it alive; `what` names the key it
    /// is for in the log.
    pub(super) async fn grant(store: &Store, what: String) -> Result<Lease, StoreError> {
        let ttl = store.cfg.lease_ttl;
        let granted = store
            .call("grant a lease", |mut c| async move { c.lease_grant(ttl.as_secs() as i64, None).await })
            .await?;
        let id = granted.id();
        let (tx, rx) = watch::channel(false);
        let keeper_store = store.clone();
        let task = tokio::spawn(async move {
            keep_alive(keeper_store, id, ttl, tx, what).await;
        });
        Ok(Lease { id, lost: rx, task, store: store.clone() })
    }

    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// A handle for others to write under this lease (see [`LeaseRef`]).
    pub(crate) fn share(&self) -> LeaseRef {
        LeaseRef { id: self.id, lost: self.lost.clone() }
    }

    /// Whether the lease lapsed (nothing written under it is safe any more).
    pub(crate) fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Completes when the lease is lost.
    pub(crate) async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// Revokes the lease: every key on it goes at once (the lock, the leadership).
    pub(crate) async fn release(self) {
        self.task.abort();
        let id = self.id;
        if let Err(e) =
            self.store.call("revoke the lease", |mut c| async move { c.lease_revoke(id).await }).await
        {
            tracing::warn!(lease = self.id, error = %e, "cannot revoke the lease; it expires by itself");
        }
    }
}

async fn keep_alive(store: Store, id: i64, ttl: Duration, lost: watch::Sender<bool>, what: String) {
    let every = ttl / 3;
    let timeout = store.cfg.timeout;
    // Confirmed alive until then; past it, another holder may already have the key.
    let alive_until = std::sync::Mutex::new(Instant::now() + ttl.saturating_sub(timeout));
    let deadline = || alive_until.lock().map(|t| *t).unwrap_or_else(|p| *p.into_inner());
    loop {
        let attempt = async {
            let (mut keeper, mut stream) = store
                .call("keep the lease alive", |mut c| async move { c.lease_keep_alive(id).await })
                .await?;
            let failed = |e: etcd_client::Error| StoreError::Unavailable(e.to_string());
            loop {
                keeper.keep_alive().await.map_err(failed)?;
                let resp = tokio::time::timeout(timeout, stream.message())
                    .await
                    .map_err(|_| StoreError::Unavailable("keep-alive unanswered".into()))?
                    .map_err(failed)?
                    .ok_or_else(|| StoreError::Unavailable("keep-alive stream ended".into()))?;
                if resp.ttl() <= 0 {
                    return Err::<(), StoreError>(StoreError::LeaseLost);
                }
                let until = Instant::now() + Duration::from_secs(resp.ttl() as u64).saturating_sub(timeout);
                if let Ok(mut t) = alive_until.lock() {
                    *t = until;
                }
                tokio::time::sleep(every).await;
            }
        };
        let why = tokio::select! {
            r = attempt => r.err(),
            // A keep-alive that hangs past the deadline loses the lease as surely as one
            // that fails.
            _ = async { loop {
                let d = deadline();
                if Instant::now() >= d { return; }
                tokio::time::sleep_until(d).await;
            } } => Some(StoreError::Unavailable("no keep-alive confirmed in time".into())),
        };
        if matches!(why, Some(StoreError::LeaseLost)) || Instant::now() >= deadline() {
            tracing::error!(lease = id, key = %what, error = ?why.map(|e| e.to_string()), "lease lost");
            let _ = lost.send(true);
            return;
        }
        tracing::warn!(lease = id, key = %what, error = ?why.map(|e| e.to_string()), "lease keep-alive failed; retrying");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
