//! The fleet commands through the store, when the fleet file has `[store]`.
//!
//! Every table a command puts in force is first written to etcd with a compare on the
//! revision it planned from (of two writers racing, exactly one wins; the other stops and
//! names the table that won), then pushed to every proxy as without a store, so proxies
//! apply it at once and the gates see each one's answer; a proxy the push misses gets it
//! from its watch. A write the store refuses is never pushed. `evacuate`, `restore`,
//! `exercise` and the autopilot hold the operation lock on a lease instead of a claim in
//! the tables; each write also compares that the lock is still on that lease, and a run
//! whose lease is lost stops at once.

use crate::config;
use crate::store::{Lease, LeaseRef, Store, StoreError};
use crate::table::{Operation, Table};

/// One command's view of the store: the table it holds and the revision that wrote it.
pub(crate) struct StoreRun {
    store: Store,
    revision: i64,
    table: Option<Table>,
    lock: Option<Held>,
}

/// The lease the operation lock is on: this run's own, or the autopilot leader's.
enum Held {
    Own(Lease),
    Shared(LeaseRef),
}

impl Held {
    fn id(&self) -> i64 {
        match self {
            Held::Own(l) => l.id(),
            Held::Shared(l) => l.id(),
        }
    }

    fn is_lost(&self) -> bool {
        match self {
            Held::Own(l) => l.is_lost(),
            Held::Shared(l) => l.is_lost(),
        }
    }
}

impl StoreRun {
    /// Connects and reads the table in force.
    pub(crate) async fn open(cfg: &config::Store) -> Result<StoreRun, StoreError> {
        let store = Store::connect(cfg).await?;
        let (table, revision) = match store.read_table().await? {
            Some(s) => (Some(s.table), s.revision),
            None => (None, 0),
        };
        Ok(StoreRun { store, revision, table, lock: None })
    }

    /// The table in force in the store when last read or written.
    pub(crate) fn table(&self) -> Option<&Table> {
        self.table.as_ref()
    }

    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    /// Writes `t` over the table last read or written (and, holding the lock, only while
    /// the lock is still this run's).
    pub(crate) async fn write(&mut self, t: &Table) -> Result<(), StoreError> {
        if self.lease_lost() {
            return Err(StoreError::LeaseLost);
        }
        let revision = self.store.write_table(t, self.revision, self.lock.as_ref().map(Held::id)).await?;
        self.revision = revision;
        self.table = Some(t.clone());
        Ok(())
    }

    /// Takes the operation lock for `op` (or names its holder): on `shared` when given
    /// (the autopilot leader's lease, so that the lock goes with the leader), else on a
    /// lease of its own.
    pub(crate) async fn lock(
        &mut self,
        op: &Operation,
        force: bool,
        shared: Option<&LeaseRef>,
    ) -> Result<(), StoreError> {
        self.lock = Some(match shared {
            Some(l) => {
                self.store.lock_on(op, l).await?;
                Held::Shared(l.clone())
            }
            None => Held::Own(self.store.lock(op, force).await?),
        });
        Ok(())
    }

    /// Whether this run held the lock and lost it.
    pub(crate) fn lease_lost(&self) -> bool {
        self.lock.as_ref().is_some_and(Held::is_lost)
    }

    /// Releases the lock.
    pub(crate) async fn unlock(&mut self) {
        match self.lock.take() {
            Some(Held::Own(l)) => l.release().await,
            Some(Held::Shared(l)) => {
                if let Err(e) = self.store.unlock_on(&l).await {
                    tracing::warn!(error = %e, "cannot release the operation lock; it goes with the leader's lease");
                }
            }
            None => {}
        }
    }
}

/// For people, after a write the store refused: who won, or why it cannot be written.
pub(crate) fn refused(e: &StoreError, what: &str) -> String {
    match e {
        StoreError::Moved { current, revision } => format!(
            "{what}: the store moved under it: it holds {} (etcd revision {revision}); nothing more pushed",
            current
                .as_ref()
                .map(|t| format!("version {} ({})", t.version, t.note.as_deref().unwrap_or("no note")))
                .unwrap_or_else(|| "no table".into())
        ),
        StoreError::LeaseLost => format!(
            "{what}: the lease on the operation lock is lost (it expired or was taken over): stopped at once, nothing more pushed"
        ),
        other => format!("{what}: {other}; nothing pushed"),
    }
}
