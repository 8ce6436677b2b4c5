//! The store on etcd's v3 API (the `etcd-client` crate, over gRPC).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// A connection to the cluster: one client per member, requests going to the member that
/// answered last and failing over to the next on any error. (A client balanced over all
/// the members fails a request routed to a dead one instead of trying another.)
#[derive(Clone)]
pub struct Store {
    members: Arc<Members>,
    cfg: config::Store,
}

struct Members {
    opts: ConnectOptions,
    clients: tokio::sync::Mutex<Vec<Option<Client>>>,
    current: AtomicUsize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("etcd", &self.cfg.etcd).field("prefix", &self.cfg.prefix).finish()
    }
}

fn parse(key: &str, value: &[u8], revision: i64) -> Result<Stored, StoreError> {
    Table::parse(value)
        .map(|table| Stored { table, revision })
        .map_err(|e| StoreError::Invalid { key: key.to_owned(), why: e.to_string() })
}

impl Store {
    /// Prepares the clients (they connect on first use). Every request requires a leader,
    /// so a member cut off from the quorum answers with an error rather than stale data,
    /// and the next member is tried.
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
        let members = Members {
            opts,
            clients: tokio::sync::Mutex::new(vec![None; cfg.etcd.len()]),
            current: AtomicUsize::new(0),
        };
        Ok(Store { members: Arc::new(members), cfg: cfg.clone() })
    }

    async fn client(&self, i: usize) -> Result<Client, String> {
        let mut clients = self.members.clients.lock().await;
        if let Some(c) = clients.get(i).and_then(Clone::clone) {
            return Ok(c);
        }
        let url = self.cfg.etcd.get(i).cloned().unwrap_or_default();
        let c =
            tokio::time::timeout(self.cfg.timeout, Client::connect([url], Some(self.members.opts.clone())))
                .await
                .map_err(|_| format!("no connection within {:?}", self.cfg.timeout))?
                .map_err(|e| e.to_string())?;
        if let Some(slot) = clients.get_mut(i) {
            *slot = Some(c.clone());
        }
        Ok(c)
    }

    /// Runs `op` on the member that answered last, then on each other one until one
    /// answers; every attempt bounded by `[store] timeout`.
    async fn call<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.cfg.etcd.len();
        let start = self.members.current.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let url = self.cfg.etcd.get(i).map(String::as_str).unwrap_or("?");
            let client = match self.client(i).await {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{url}: {e}"));
                    continue;
                }
            };
            match tokio::time::timeout(self.cfg.timeout, op(client)).await {
                Ok(Ok(v)) => {
                    self.members.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) => errors.push(format!("{url}: {e}")),
                Err(_) => errors.push(format!("{url}: no answer within {:?}", self.cfg.timeout)),
            }
        }
        Err(StoreError::Unavailable(format!("{what}: {}", errors.join("; "))))
    }

    async fn txn(&self, what: &str, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        self.call(what, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    async fn get(
        &self,
        what: &str,
        key: String,
        opts: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        self.call(what, |mut c| {
            let (key, opts) = (key.clone(), opts.clone());
            async move { c.get(key, opts).await }
        })
        .await
    }

    pub fn config(&self) -> &config::Store {
        &self.cfg
    }

    /// The table in force in the store (a linearizable read), `None` if none was written.
    pub async fn read_table(&self) -> Result<Option<Stored>, StoreError> {
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
    pub async fn write_table(
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
    pub async fn watch_table(&self, from: i64) -> Result<TableWatch, StoreError> {
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

    /// Takes the operation lock for `op` on an existing lease (the autopilot's leadership:
    /// the lock goes with the leader), or names who holds it.
    pub async fn lock_on(&self, op: &Operation, lease: &LeaseRef) -> Result<(), StoreError> {
        let key = self.cfg.lock_key();
        let body = serde_json::to_vec(op).map_err(|e| StoreError::Config(e.to_string()))?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), body, Some(PutOptions::new().with_lease(lease.id)))])
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
    pub async fn unlock_on(&self, lease: &LeaseRef) -> Result<(), StoreError> {
        let key = self.cfg.lock_key();
        let txn = Txn::new()
            .when([Compare::lease(key.as_str(), CompareOp::Equal, lease.id)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        self.txn("release the lock", txn).await?;
        Ok(())
    }

    /// Takes the operation lock for `op` on a new lease, or names who holds it. `force`
    /// takes it over from a holder (whose next write then fails: its lease no longer
    /// holds the lock).
    pub async fn lock(&self, op: &Operation, force: bool) -> Result<Lease, StoreError> {
        let key = self.cfg.lock_key();
        let lease = Lease::grant(self, key.clone()).await?;
        let body = serde_json::to_vec(op).map_err(|e| StoreError::Config(e.to_string()))?;
        let put = TxnOp::put(key.as_str(), body, Some(PutOptions::new().with_lease(lease.id)));
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

    /// The operation holding the lock now, if any.
    pub async fn lock_holder(&self) -> Result<Option<Operation>, StoreError> {
        let resp = self.get("read the lock", self.cfg.lock_key(), None).await?;
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
    pub async fn leader_gone(&self, limit: Duration) {
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
    pub async fn leader(&self) -> Result<Option<String>, StoreError> {
        let resp = self.get("read the leader", self.cfg.leader_key(), None).await?;
        Ok(resp.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// A cheap linearizable read: fails when the store has no quorum.
    pub async fn ping(&self) -> Result<i64, StoreError> {
        let resp = self.get("ping", self.cfg.table_key(), Some(GetOptions::new().with_keys_only())).await?;
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

/// A handle on someone else's [`Lease`] (the autopilot's leadership, shared with the runs
/// it starts): its id and whether it is lost, without the right to revoke it.
#[derive(Debug, Clone)]
pub struct LeaseRef {
    id: i64,
    lost: watch::Receiver<bool>,
}

impl LeaseRef {
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|lost| *lost).await;
    }
}

/// A lease kept alive in the background; `lost` turns true (and stays) once it lapsed,
/// or is about to: a keep-alive not confirmed within the TTL less one request timeout.
#[derive(Debug)]
pub struct Lease {
    id: i64,
    lost: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    store: Store,
}

impl Lease {
    async fn grant(store: &Store, what: String) -> Result<Lease, StoreError> {
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

    pub fn id(&self) -> i64 {
        self.id
    }

    /// A handle for others to write under this lease (see [`LeaseRef`]).
    pub fn share(&self) -> LeaseRef {
        LeaseRef { id: self.id, lost: self.lost.clone() }
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
