//! Without the `etcd` feature: the same names, none of which can be built, so that the
//! code using the store compiles unchanged and a `[store]` config is refused up front.

use super::{Change, StoreError, Stored};
use crate::config;
use crate::table::{Operation, Table};

/// Uninhabited: [`Store::connect`] always fails.
#[derive(Debug, Clone)]
pub(crate) enum Store {}

/// Uninhabited.
#[derive(Debug, Clone)]
pub(crate) enum Lease {}

/// Uninhabited.
pub(crate) enum TableWatch {}

/// Uninhabited (the same as [`Lease`]).
pub(crate) type LeaseRef = Lease;

impl Store {
    pub(crate) async fn connect(_cfg: &config::Store) -> Result<Store, StoreError> {
        Err(StoreError::NotBuilt)
    }
    pub(crate) fn config(&self) -> &config::Store {
        match *self {}
    }
    pub(crate) async fn read_table(&self) -> Result<Option<Stored>, StoreError> {
        match *self {}
    }
    pub(crate) async fn write_table(
        &self,
        _t: &Table,
        _expect: i64,
        _lock: Option<i64>,
    ) -> Result<i64, StoreError> {
        match *self {}
    }
    pub(crate) async fn watch_table(&self, _from: i64) -> Result<TableWatch, StoreError> {
        match *self {}
    }
    pub(crate) async fn lock(&self, _op: &Operation, _force: bool) -> Result<Lease, StoreError> {
        match *self {}
    }
    pub(crate) async fn lock_on(&self, _op: &Operation, _lease: &LeaseRef) -> Result<(), StoreError> {
        match *self {}
    }
    pub(crate) async fn unlock_on(&self, _lease: &LeaseRef) -> Result<(), StoreError> {
        match *self {}
    }
    pub(crate) async fn campaign(&self, _name: &str) -> Result<Option<Lease>, StoreError> {
        match *self {}
    }
    pub(crate) async fn leader_gone(&self, _limit: std::time::Duration) {
        match *self {}
    }
    pub(crate) async fn leader(&self) -> Result<Option<String>, StoreError> {
        match *self {}
    }
    pub(crate) async fn ping(&self) -> Result<i64, StoreError> {
        match *self {}
    }
}

impl TableWatch {
    pub(crate) async fn next(&mut self) -> Result<Change, StoreError> {
        match *self {}
    }
}

impl Lease {
    pub(crate) fn id(&self) -> i64 {
        match *self {}
    }
    pub(crate) fn is_lost(&self) -> bool {
        match *self {}
    }
    pub(crate) async fn lost(&self) {
        match *self {}
    }
    pub(crate) fn share(&self) -> LeaseRef {
        match *self {}
    }
    pub(crate) async fn release(self) {
        match self {}
    }
}
