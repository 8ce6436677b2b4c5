//! The fleet's state in etcd, for fleets that outgrow pushes: one linearizable record of
//! the table in force, an operation lock that cannot be split, and the autopilots'
//! leader.
//!
//! Keys, under `[store] prefix`:
//! - `PREFIX/table`: the table in force, as the JSON a push carries (signed when the fleet
//!   signs). Writers compare its `mod_revision` with the one they planned from, so of two
//!   concurrent writers exactly one wins; proxies watch it.
//! - `PREFIX/lock`: the running operation ([`crate::table::Operation`] as JSON), attached
//!   to its runner's lease. Taken only when absent; every table the run writes also
//!   compares that the lock is still on its lease, so a run whose lease lapsed cannot
//!   write even if it has not noticed yet.
//! - `PREFIX/autopilot/leader`: the acting autopilot's name, on its lease.
//!
//! The etcd client needs `protoc` to build, so it is behind the `etcd` cargo feature;
//! without it [`Store::connect`] says so and the types cannot be built.

#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
pub(crate) use etcd::{Lease, LeaseRef, Store};

#[cfg(not(feature = "etcd"))]
mod absent;
#[cfg(not(feature = "etcd"))]
pub(crate) use absent::{Lease, LeaseRef, Store};

use crate::table::{Operation, Table};

/// The table key as read: the table and the revision that last wrote it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) table: Table,
    /// `mod_revision` of the table key: what a conditional write compares.
    pub(crate) revision: i64,
}

/// What a watch of the table key delivers.
#[derive(Debug)]
// Only the etcd backend makes these; without it the code that reads them still compiles.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub(crate) enum Change {
    /// A new table was written (it may still be refused by the proxy's checks).
    Put(Box<Stored>),
    /// A value that is not a table, or a delete: nothing to apply, said in the log.
    Unusable { revision: i64, why: String },
}

#[derive(Debug, thiserror::Error)]
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub(crate) enum StoreError {
    #[error("the store is unavailable (no member answers, or no quorum): {0}")]
    Unavailable(String),
    /// A conditional write found the table key elsewhere.
    #[error("the store moved: it holds {} (revision {revision})", describe(current.as_deref()))]
    Moved { current: Option<Box<Table>>, revision: i64 },
    #[error("another operation holds the lock: {}", .0.describe())]
    LockHeld(Box<Operation>),
    #[error("this run's lease on the operation lock is lost (it expired, or was taken over)")]
    LeaseLost,
    #[error("the store's {key} does not hold a table: {why}")]
    Invalid { key: String, why: String },
    #[error("{0}")]
    Config(String),
    #[cfg(not(feature = "etcd"))]
    #[error(
        "this flowgate was built without etcd support: build it with `cargo build --release --features etcd`"
    )]
    NotBuilt,
}

fn describe(t: Option<&Table>) -> String {
    match t {
        Some(t) => format!("version {} ({})", t.version, t.note.as_deref().unwrap_or("no note")),
        None => "no table".to_owned(),
    }
}
