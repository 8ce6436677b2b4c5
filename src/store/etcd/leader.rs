//! `PREFIX/autopilot/leader`: the acting autopilot's name, on its lease; the others
//! watch for it to go and campaign again.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, EventType, PutOptions, Txn, TxnOp};

use super::{Lease, Store};
use crate::store::StoreError;

impl Store {
    /// One attempt to become the autopilots' leader as `name`: `Some(lease)` when this one
    /// is, `None` when another holds it.
    pub(crate) async fn campaign(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let key = self.cfg.leader_key();
        let lease = Lease::grant(self, key.clone()).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), name, Some(PutOptions::new().with_lease(lease.id())))]);
        match self.txn("campaign", txn).await {
            Ok(r) if r.succeeded() => Ok(Some(lease)),
            Ok(_) => {
                lease.release().await;
                Ok(None)
            }
            Err(e) => {
                lease.release().await;
                Err(e)
            }
        }
    }

    /// Completes when the leader key is deleted (its lease lapsed or was revoked), when
    /// the watch breaks, or after `limit`: the moment to campaign again.
    pub(crate) async fn leader_gone(&self, limit: Duration) {
        let key = self.cfg.leader_key();
        let work = async {
            let mut stream = self
                .call("watch the leader", |mut c| {
                    let key = key.clone();
                    async move { c.watch(key, None).await }
                })
                .await?;
            while let Some(resp) =
                stream.message().await.map_err(|e| StoreError::Unavailable(e.to_string()))?
            {
                if resp.canceled() || resp.events().iter().any(|e| e.event_type() == EventType::Delete) {
                    break;
                }
            }
            Ok::<(), StoreError>(())
        };
        let _ = tokio::time::timeout(limit, work).await;
    }

    /// Who leads the autopilots now.
    pub(crate) async fn leader(&self) -> Result<Option<String>, StoreError> {
        let resp = self.get("read the leader", self.cfg.leader_key(), None).await?;
        Ok(resp.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }
}
