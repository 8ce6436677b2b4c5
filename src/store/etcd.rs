//! The store on etcd's v3 API (the `etcd-client` crate, over gRPC).

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Change, StoreError, Stored};
use crate::config;
use crate::table::{Operation, Table};

/// A connection to the cluster (cheap to clone: one channel balanced over the members).
#[derive(Clone)]
pub struct Store {
    client: Client,
    cfg: config::Store,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("etcd", &self.cfg.etcd).field("prefix", &self.cfg.prefix).finish()
    }
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn parse(key: &str, value: &[u8], revision: i64) -> Result<Stored, StoreError> {
    Table::parse(value)
        .map(|table| Stored { table, revision })
        .map_err(|e| StoreError::Invalid { key: key.to_owned(), why: e.to_string() })
}

impl Store {
    /// Connects (lazily: the first request finds out whether a member answers). Every
    /// request requires a leader, so a member cut off from the quorum answers with an
    /// error rather than stale data.
    pub async fn connect(cfg: &config::Store) -> Result<Store, StoreError> {
        let mut opts = ConnectOptions::new()
            .with_timeout(cfg.timeout)
            .with_connect_timeout(cfg.timeout)
            .with_keep_alive(cfg.timeout, cfg.timeout)
            .with_require_leader(true);
        if cfg.ca.is_some() || cfg.cert.is_some() {
            let read = |p: &std::path::Path| {
                std::fs::read(p)
                    .map_err(|e| StoreError::Config(format!("store: cannot read {}: {e}", p.display())))
            };
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &cfg.ca {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) {
                tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            }
            opts = opts.with_tls(tls);
        }
        let client = tokio::time::timeout(cfg.timeout, Client::connect(&cfg.etcd, Some(opts)))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "no member of {:?} answered within {:?}",
                    cfg.etcd, cfg.timeout
                ))
            })?
            .map_err(unavailable)?;
        Ok(Store { client, cfg: cfg.clone() })
    }

    pub fn config(&self) -> &config::Store {
        &self.cfg
    }

    /// The table in force in the store (a linearizable read), `None` if none was written.
    pub async fn read_table(&self) -> Result<Option<Stored>, StoreError> {
        let key = self.cfg.table_key();
        let mut c = self.client.clone();
        let resp = c.get(key.as_str(), None).await.map_err(unavailable)?;
        match resp.kvs().first() {
            Some(kv) => parse(&key, kv.value(), kv.mod_revision()).map(Some),
            None => Ok(None),
        }
    }

    /// Writes `table` only if the table key is still at revision `expect` (0: absent) and,
    /// with `lock`, only while that lease holds the operation lock. Returns the new
    /// revision.
    pub async fn write_table(
        &self,
        table: &Table,
        expect: i64,
        lock: Option<&Lease>,
    ) -> Result<i64, StoreError> {
        let key = self.cfg.table_key();
        let lock_key = self.cfg.lock_key();
        let body = serde_json::to_vec(table).map_err(|e| StoreError::Config(e.to_string()))?;
        let mut when = vec![Compare::mod_revision(key.as_str(), CompareOp::Equal, expect)];
        if let Some(l) = lock {
            when.push(Compare::lease(lock_key.as_str(), CompareOp::Equal, l.id));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::put(key.as_str(), body, None)])
            .or_else([TxnOp::get(key.as_str(), None), TxnOp::get(lock_key.as_str(), None)]);
        let mut c = self.client.clone();
        let resp = c.txn(txn).await.map_err(unavailable)?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(expect + 1));
        }
        let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        let (table_now, lock_now) = (gets.next(), gets.next());
        if let Some(l) = lock {
            let held = lock_now.as_ref().and_then(|g| g.kvs().first()).map(|kv| kv.lease());
            if held != Some(l.id) {
                return Err(StoreError::LeaseLost);
            }
        }
        let kv = table_now.as_ref().and_then(|g| g.kvs().first());
        let revision = kv.map(|kv| kv.mod_revision()).unwrap_or(0);
        let current = kv.and_then(|kv| Table::parse(kv.value()).ok()).map(Box::new);
        Err(StoreError::Moved { current, revision })
    }

    /// Watches the table key from `from` (a revision; the first event is the first write
    /// at or after it).
    pub async fn watch_table(&self, from: i64) -> Result<TableWatch, StoreError> {
        let key = self.cfg.table_key();
        let mut c = self.client.clone();
        let opts = WatchOptions::new().with_start_revision(from);
        let stream = c.watch(key.as_str(), Some(opts)).await.map_err(unavailable)?;
        Ok(TableWatch { stream, key, pending: Vec::new() })
    }

    /// Takes the operation lock for `op` on a new lease, or names who holds it. `force`
    /// takes it over from a holder (whose next write then fails: its lease no longer
    /// holds the lock).
    pub async fn lock(&self, op: &Operation, force: bool) -> Result<Lease, StoreError> {
        let key = self.cfg.lock_key();
        let lease = Lease::grant(self, key.clone()).await?;
        let body = serde_json::to_vec(op).map_err(|e| StoreError::Config(e.to_string()))?;
        let put = TxnOp::put(key.as_str(), body, Some(PutOptions::new().with_lease(lease.id)));
        let mut c = self.client.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([put.clone()])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = match c.txn(txn).await {
            Ok(r) => r,
            Err(e) => {
                lease.release().await;
                return Err(unavailable(e));
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
                match c.txn(txn).await {
                    Ok(r) if r.succeeded() => Ok(lease),
                    Ok(_) => {
                        lease.release().await;
                        Err(StoreError::LockHeld(Box::new(held.unwrap_or_else(|| unknown_holder(op)))))
                    }
                    Err(e) => {
                        lease.release().await;
                        Err(unavailable(e))
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

    /// The operation holding the lock now, if any.
    pub async fn lock_holder(&self) -> Result<Option<Operation>, StoreError> {
        let mut c = self.client.clone();
        let resp = c.get(self.cfg.lock_key().as_str(), None).await.map_err(unavailable)?;
        Ok(resp.kvs().first().and_then(|kv| serde_json::from_slice(kv.value()).ok()))
    }

    /// One attempt to become the autopilots' leader as `name`: `Some(lease)` when this one
    /// is, `None` when another holds it.
    pub async fn campaign(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let key = self.cfg.leader_key();
        let lease = Lease::grant(self, key.clone()).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), name, Some(PutOptions::new().with_lease(lease.id)))]);
        let mut c = self.client.clone();
        match c.txn(txn).await {
            Ok(r) if r.succeeded() => Ok(Some(lease)),
            Ok(_) => {
                lease.release().await;
                Ok(None)
            }
            Err(e) => {
                lease.release().await;
                Err(unavailable(e))
            }
        }
    }

    /// Who leads the autopilots now.
    pub async fn leader(&self) -> Result<Option<String>, StoreError> {
        let mut c = self.client.clone();
        let resp = c.get(self.cfg.leader_key().as_str(), None).await.map_err(unavailable)?;
        Ok(resp.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// A cheap linearizable read: fails when the store has no quorum.
    pub async fn ping(&self) -> Result<i64, StoreError> {
        let mut c = self.client.clone();
        let resp = c
            .get(self.cfg.table_key().as_str(), Some(GetOptions::new().with_keys_only()))
            .await
            .map_err(unavailable)?;
        Ok(resp.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0))
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

/// A watch of the table key.
pub struct TableWatch {
    stream: etcd_client::WatchStream,
    key: String,
    pending: Vec<Change>,
}

impl TableWatch {
    /// The next change; an error when the watch broke (the caller re-reads and watches
    /// again).
    pub async fn next(&mut self) -> Result<Change, StoreError> {
        loop {
            if !self.pending.is_empty() {
                return Ok(self.pending.remove(0));
            }
            let resp = self
                .stream
                .message()
                .await
                .map_err(unavailable)?
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

/// A lease kept alive in the background; `lost` turns true (and stays) once it lapsed,
/// or is about to: a keep-alive not confirmed within the TTL less one request timeout.
#[derive(Debug)]
pub struct Lease {
    pub id: i64,
    lost: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    store: Store,
}

impl Lease {
    async fn grant(store: &Store, what: String) -> Result<Lease, StoreError> {
        let ttl = store.cfg.lease_ttl;
        let mut c = store.client.clone();
        let granted = c.lease_grant(ttl.as_secs() as i64, None).await.map_err(unavailable)?;
        let id = granted.id();
        let (tx, rx) = watch::channel(false);
        let keeper_store = store.clone();
        let task = tokio::spawn(async move {
            keep_alive(keeper_store, id, ttl, tx, what).await;
        });
        Ok(Lease { id, lost: rx, task, store: store.clone() })
    }

    /// Whether the lease lapsed (nothing written under it is safe any more).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Completes when the lease is lost.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// Revokes the lease: every key on it goes at once (the lock, the leadership).
    pub async fn release(self) {
        self.task.abort();
        let mut c = self.store.client.clone();
        if let Err(e) = c.lease_revoke(self.id).await {
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
        let mut c = store.client.clone();
        let attempt = async {
            let (mut keeper, mut stream) = tokio::time::timeout(timeout, c.lease_keep_alive(id))
                .await
                .map_err(|_| StoreError::Unavailable("keep-alive stream not opened in time".into()))?
                .map_err(unavailable)?;
            loop {
                keeper.keep_alive().await.map_err(unavailable)?;
                let resp = tokio::time::timeout(timeout, stream.message())
                    .await
                    .map_err(|_| StoreError::Unavailable("keep-alive unanswered".into()))?
                    .map_err(unavailable)?
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
