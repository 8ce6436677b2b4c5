//! `PREFIX/table`: the linearizable read, the conditional write (of two concurrent
//! writers exactly one wins) and the watch proxies follow.

use etcd_client::{Compare, CompareOp, EventType, Txn, TxnOp, TxnOpResponse, WatchOptions};

use super::Store;
use crate::store::{Change, StoreError, Stored};
use crate::table::Table;

fn parse(key: &str, value: &[u8], revision: i64) -> Result<Stored, StoreError> {
    Table::parse(value)
        .map(|table| Stored { table, revision })
        .map_err(|e| StoreError::Invalid { key: key.to_owned(), why: e.to_string() })
}

impl Store {
    /// The table in force in the store (a linearizable read), `None` if none was written.
    pub(crate) async fn read_table(&self) -> Result<Option<Stored>, StoreError> {
        let key = self.cfg.table_key();
        let resp = self.get("read the table", key.clone(), None).await?;
        match resp.kvs().first() {
            Some(kv) => parse(&key, kv.value(), kv.mod_revision()).map(Some),
            None => Ok(None),
        }
    }

    /// Writes `table` only if the table key is still at revision `expect` (0: absent) and,
    /// with `lock`, only while that lease holds the operation lock. Returns the new
    /// revision.
    pub(crate) async fn write_table(
        &self,
        table: &Table,
        expect: i64,
        lock: Option<i64>,
    ) -> Result<i64, StoreError> {
        let key = self.cfg.table_key();
        let lock_key = self.cfg.lock_key();
        let body = serde_json::to_vec(table).map_err(|e| StoreError::Config(e.to_string()))?;
        let mut when = vec![Compare::mod_revision(key.as_str(), CompareOp::Equal, expect)];
        if let Some(id) = lock {
            when.push(Compare::lease(lock_key.as_str(), CompareOp::Equal, id));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::put(key.as_str(), body, None)])
            .or_else([TxnOp::get(key.as_str(), None), TxnOp::get(lock_key.as_str(), None)]);
        let resp = self.txn("write the table", txn).await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(expect + 1));
        }
        let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        let (table_now, lock_now) = (gets.next(), gets.next());
        if let Some(id) = lock {
            let held = lock_now.as_ref().and_then(|g| g.kvs().first()).map(|kv| kv.lease());
            if held != Some(id) {
                return Err(StoreError::LeaseLost);
            }
        }
        let kv = table_now.as_ref().and_then(|g| g.kvs().first());
        let revision = kv.map(|kv| kv.mod_revision()).unwrap_or(0);
        let current = kv.and_then(|kv| Table::parse(kv.value()).ok()).map(Box::new);
        // A retry on another member of a write the first one applied (its answer was lost)
        // finds its own table: that is a success.
        if current.as_ref().is_some_and(|c| c.version == table.version && c.same_content(table)) {
            return Ok(revision);
        }
        Err(StoreError::Moved { current, revision })
    }

    /// Watches the table key from `from` (a revision; the first event is the first write
    /// at or after it).
    pub(crate) async fn watch_table(&self, from: i64) -> Result<TableWatch, StoreError> {
        let key = self.cfg.table_key();
        let opts = WatchOptions::new().with_start_revision(from);
        let stream = self
            .call("watch the table", |mut c| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { c.watch(key, Some(opts)).await }
            })
            .await?;
        Ok(TableWatch { stream, key, pending: Vec::new() })
    }
}

/// A watch of the table key.
pub(crate) struct TableWatch {
    stream: etcd_client::WatchStream,
    /// Named in the errors of a value that does not parse.
    key: String,
    /// Changes of a watch answer not handed out yet (one answer may carry several).
    pending: Vec<Change>,
}

impl TableWatch {
    /// The next change; an error when the watch broke (the caller re-reads and watches
    /// again).
    pub(crate) async fn next(&mut self) -> Result<Change, StoreError> {
        loop {
            if !self.pending.is_empty() {
                return Ok(self.pending.remove(0));
            }
            let resp = self
                .stream
                .message()
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
                .ok_or_else(|| StoreError::Unavailable("the watch ended".into()))?;
            if resp.canceled() {
                return Err(StoreError::Unavailable(format!(
                    "the watch was cancelled: {} (compacted to {})",
                    resp.cancel_reason(),
                    resp.compact_revision()
                )));
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let revision = kv.mod_revision();
                self.pending.push(match ev.event_type() {
                    EventType::Put => match parse(&self.key, kv.value(), revision) {
                        Ok(s) => Change::Put(Box::new(s)),
                        Err(e) => Change::Unusable { revision, why: e.to_string() },
                    },
                    EventType::Delete => {
                        Change::Unusable { revision, why: "the table key was deleted".into() }
                    }
                });
            }
        }
    }
}
