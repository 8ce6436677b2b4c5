//! `PREFIX/lock`: the running operation, on its runner's lease, taken only when absent
//! (or taken over with `force`), so that two operations never move the fleet at once.

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::{Lease, LeaseRef, Store};
use crate::store::StoreError;
use crate::table::Operation;

impl Store {
    /// Takes the operation lock for `op` on an existing lease (the autopilot's leadership:
    /// the lock goes with the leader), or names who holds it.
    pub(crate) async fn lock_on(&self, op: &Operation, lease: &LeaseRef) -> Result<(), StoreError> {
        let key = self.cfg.lock_key();
        let body = serde_json::to_vec(op).map_err(|e| StoreError::Config(e.to_string()))?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), body, Some(PutOptions::new().with_lease(lease.id())))])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = self.txn("take the lock", txn).await?;
        if resp.succeeded() {
            return Ok(());
        }
        let held = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => {
                g.kvs().first().and_then(|kv| serde_json::from_slice::<Operation>(kv.value()).ok())
            }
            _ => None,
        });
        Err(StoreError::LockHeld(Box::new(held.unwrap_or_else(|| unknown_holder(op)))))
    }

    /// Releases a lock taken with [`Store::lock_on`]: deletes it if it is still on `lease`.
    pub(crate) async fn unlock_on(&self, lease: &LeaseRef) -> Result<(), StoreError> {
        let key = self.cfg.lock_key();
        let txn = Txn::new()
            .when([Compare::lease(key.as_str(), CompareOp::Equal, lease.id())])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        self.txn("release the lock", txn).await?;
        Ok(())
    }

    /// Takes the operation lock for `op` on a new lease, or names who holds it. `force`
    /// takes it over from a holder (whose next write then fails: its lease no longer
    /// holds the lock).
    pub(crate) async fn lock(&self, op: &Operation, force: bool) -> Result<Lease, StoreError> {
        let key = self.cfg.lock_key();
        let lease = Lease::grant(self, key.clone()).await?;
        let body = serde_json::to_vec(op).map_err(|e| StoreError::Config(e.to_string()))?;
        let put = TxnOp::put(key.as_str(), body, Some(PutOptions::new().with_lease(lease.id())));
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([put.clone()])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = match self.txn("take the lock", txn).await {
            Ok(r) => r,
            Err(e) => {
                lease.release().await;
                return Err(e);
            }
        };
        if resp.succeeded() {
            return Ok(lease);
        }
        let holder = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| (kv.mod_revision(), kv.value().to_vec())),
                _ => None,
            })
            .map(|(rev, v)| (rev, serde_json::from_slice::<Operation>(&v).ok()));
        match holder {
            Some((rev, held)) if force => {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, rev)])
                    .and_then([put]);
                match self.txn("take the lock over", txn).await {
                    Ok(r) if r.succeeded() => Ok(lease),
                    Ok(_) => {
                        lease.release().await;
                        Err(StoreError::LockHeld(Box::new(held.unwrap_or_else(|| unknown_holder(op)))))
                    }
                    Err(e) => {
                        lease.release().await;
                        Err(e)
                    }
                }
            }
            Some((_, held)) => {
                lease.release().await;
                Err(StoreError::LockHeld(Box::new(held.unwrap_or_else(|| unknown_holder(op)))))
            }
            None => {
                // Released between the compare and the get: one more try is enough.
                lease.release().await;
                Box::pin(self.lock(op, force)).await
            }
        }
    }
}

fn unknown_holder(op: &Operation) -> Operation {
    Operation {
        id: "unknown".into(),
        owner: "a holder whose record does not parse".into(),
        kind: "an operation".into(),
        expires_at: op.expires_at,
    }
}
