//! The store on etcd's v3 API (the `etcd-client` crate, over gRPC): the connection and
//! its failover here; what is kept under the prefix in the submodules.

mod leader;
mod lease;
mod lock;
mod table;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use etcd_client::{Client, ConnectOptions, GetOptions, Txn};

use super::StoreError;
use crate::config;
pub(crate) use lease::{Lease, LeaseRef};

/// How long a request keeps trying while members report no leader: an election after
/// the leader's loss takes about one election timeout (etcd's default is 1 s).
const ELECTION_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
/// The pause between passes over the members while they elect a leader.
const ELECTION_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// Whether a member refused for want of a leader (an election in progress, or a member
/// cut off from the quorum; only the grace period tells them apart).
fn waits_for_leader(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let m = s.message();
            m.contains("no leader") || m.contains("leader changed")
        }
        _ => false,
    }
}

/// A connection to the cluster: one client per member, requests going to the member that
/// answered last and failing over to the next on any error. (A client balanced over all
/// the members fails a request routed to a dead one instead of trying another.)
#[derive(Clone)]
pub(crate) struct Store {
    members: Arc<Members>,
    cfg: config::Store,
}

struct Members {
    opts: ConnectOptions,
    /// One per `[store] etcd` URL, connected on first use.
    clients: tokio::sync::Mutex<Vec<Option<Client>>>,
    /// The member that answered last: the first one tried.
    current: AtomicUsize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("etcd", &self.cfg.etcd).field("prefix", &self.cfg.prefix).finish()
    }
}

impl Store {
    /// Prepares the clients (they connect on first use). Every request requires a leader,
    /// so a member cut off from the quorum answers with an error rather than stale data,
    /// and the next member is tried.
    pub(crate) async fn connect(cfg: &config::Store) -> Result<Store, StoreError> {
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
    /// answers; every attempt bounded by `[store] timeout`. When a member says it has no
    /// leader, the cluster may be electing one (about one election timeout, 1 s by etcd's
    /// default, after the leader dies): the round is tried again for up to
    /// [`ELECTION_GRACE`], so losing one member of three never fails a push. A request
    /// refused for want of a leader was never applied, so trying it again is safe.
    async fn call<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let began = tokio::time::Instant::now();
        loop {
            let (result, electing) = self.round(&mut op).await;
            match result {
                Ok(v) => return Ok(v),
                Err(errors) if !electing || began.elapsed() >= ELECTION_GRACE => {
                    return Err(StoreError::Unavailable(format!("{what}: {}", errors.join("; "))));
                }
                Err(_) => tokio::time::sleep(ELECTION_RETRY).await,
            }
        }
    }

    /// One pass over the members; says whether any of them was waiting for a leader.
    async fn round<T, F, Fut>(&self, op: &mut F) -> (Result<T, Vec<String>>, bool)
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.cfg.etcd.len();
        let start = self.members.current.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        let mut electing = false;
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
                    return (Ok(v), false);
                }
                Ok(Err(e)) => {
                    electing |= waits_for_leader(&e);
                    errors.push(format!("{url}: {e}"));
                }
                Err(_) => errors.push(format!("{url}: no answer within {:?}", self.cfg.timeout)),
            }
        }
        (Err(errors), electing)
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

    pub(crate) fn config(&self) -> &config::Store {
        &self.cfg
    }

    /// A cheap linearizable read: fails when the store has no quorum.
    pub(crate) async fn ping(&self) -> Result<i64, StoreError> {
        let resp = self.get("ping", self.cfg.table_key(), Some(GetOptions::new().with_keys_only())).await?;
        Ok(resp.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0))
    }
}
