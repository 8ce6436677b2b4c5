//! Listeners and the process life cycle: bind, serve, drain.
//!
//! Drain follows what load balancers expect: on the shutdown signal `/readyz` turns 503
//! at once; the listeners keep accepting for `drain.delay` while the instance is
//! deregistered; then they close (new connections are refused), open connections are told
//! to go (`Connection: close` on HTTP/1.1, GOAWAY on HTTP/2), in-flight requests get
//! `drain.timeout` to finish, and whatever is left is cut.

mod accept;
mod addr_file;
mod h1;
mod watched;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::auth::Tokens;
use crate::admin::{self, AdminState, Readiness};
use crate::config::Config;
use crate::control::Control;
use crate::proxy::ListenerKind;
use crate::vocab::tls;
use accept::ConnShared;
pub use addr_file::BoundAddrs;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{field}: cannot listen on {addr}: {source}")]
    Bind { field: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("listen TLS files: {0}")]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Build(#[from] crate::proxy::BuildError),
    #[error(transparent)]
    Auth(#[from] crate::admin::auth::AuthError),
    #[error(
        "admin.listen: {0} is not a loopback address and no token is configured (set the variable named by \
         admin.token_env, or admin.token_file): refusing to expose the control endpoint unauthenticated"
    )]
    Insecure(SocketAddr),
    /// `serve --addr-file` could not be written.
    #[error("--addr-file: {0}")]
    AddrFile(#[source] crate::control::persist::PersistError),
}

/// One bound client or peer listener and how its connections are served.
struct Bound {
    listener: TcpListener,
    kind: ListenerKind,
    /// `None`: plain TCP.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A proxy with its sockets bound, ready to run.
pub struct Server {
    cfg: Arc<Config>,
    control: Arc<Control>,
    /// The admin bearer tokens, handed to the admin listener.
    tokens: Tokens,
    /// Client and peer listeners; the admin one is apart (it outlives the drain).
    listeners: Vec<Bound>,
    admin: TcpListener,
    addrs: BoundAddrs,
    /// `/readyz`: set once the table has been compared with the fleet's, cleared on drain.
    readiness: Arc<Readiness>,
}

/// Listeners bound by the caller before it wrote the config that names their addresses
/// (the demo binds each port once: a port released and bound again later can be taken by
/// another connection in between). Each one given is used in place of binding its field.
#[derive(Debug, Default)]
pub struct Listeners {
    pub public: Option<TcpListener>,
    pub peer: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

async fn bind(
    field: &'static str,
    addr: SocketAddr,
    bound: Option<TcpListener>,
) -> Result<TcpListener, ServeError> {
    match bound {
        Some(l) => Ok(l),
        None => TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { field, addr, source }),
    }
}

fn local(field: &'static str, l: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServeError> {
    l.local_addr().map_err(|source| ServeError::Bind { field, addr, source })
}

impl Server {
    /// Binds every configured listener; fails without serving anything if one cannot be.
    pub async fn bind(cfg: Config) -> Result<Server, ServeError> {
        Server::from_listeners(cfg, Listeners::default()).await
    }

    /// [`Server::bind`], taking the listeners already bound in `bound` as they are.
    pub async fn from_listeners(cfg: Config, bound: Listeners) -> Result<Server, ServeError> {
        let tokens = Tokens::load(&cfg.admin.token_env, cfg.admin.token_file.as_deref())?;
        if tokens.is_empty() && !cfg.admin.listen.ip().is_loopback() {
            return Err(ServeError::Insecure(cfg.admin.listen));
        }
        if tokens.is_empty() {
            tracing::warn!(token_env = %cfg.admin.token_env, "no admin token configured: table pushes will be refused");
        }
        let control = Arc::new(Control::start(&cfg.file, cfg.clone())?);
        let mut listeners = Vec::new();
        let l = bind("listen.public", cfg.listen.public, bound.public).await?;
        let public = local("listen.public", &l, cfg.listen.public)?;
        listeners.push(Bound { listener: l, kind: ListenerKind::Public, tls: None });
        let mut public_tls = None;
        if let (Some(addr), Some(cert), Some(key)) =
            (cfg.listen.public_tls, &cfg.listen.tls_cert, &cfg.listen.tls_key)
        {
            let acceptor = tls::acceptor(cert, key)?;
            let l = bind("listen.public_tls", addr, None).await?;
            public_tls = Some(local("listen.public_tls", &l, addr)?);
            listeners.push(Bound { listener: l, kind: ListenerKind::PublicTls, tls: Some(acceptor) });
        }
        let mut peer = None;
        if let Some(addr) = cfg.listen.peer {
            let l = bind("listen.peer", addr, bound.peer).await?;
            peer = Some(local("listen.peer", &l, addr)?);
            listeners.push(Bound { listener: l, kind: ListenerKind::Peer, tls: None });
        }
        let mut peer_tls = None;
        if let (Some(addr), Some(cert), Some(key), Some(ca)) = (
            cfg.listen.peer_tls,
            &cfg.listen.peer_tls_cert,
            &cfg.listen.peer_tls_key,
            &cfg.listen.peer_tls_ca,
        ) {
            let acceptor = tls::mtls_acceptor(cert, key, ca)?;
            let l = bind("listen.peer_tls", addr, None).await?;
            peer_tls = Some(local("listen.peer_tls", &l, addr)?);
            listeners.push(Bound { listener: l, kind: ListenerKind::PeerTls, tls: Some(acceptor) });
        }
        let admin = bind("admin.listen", cfg.admin.listen, bound.admin).await?;
        let admin_addr = local("admin.listen", &admin, cfg.admin.listen)?;
        Ok(Server {
            cfg: Arc::new(cfg),
            control,
            tokens,
            listeners,
            admin,
            addrs: BoundAddrs { public, public_tls, peer, peer_tls, admin: admin_addr },
            readiness: Arc::new(Readiness::default()),
        })
    }

    /// What was bound (the ports port 0 picked); [`BoundAddrs::write_file`] publishes it.
    pub fn addrs(&self) -> BoundAddrs {
        self.addrs
    }

    /// The control plane: apply tables, reload the config (SIGHUP).
    pub fn control(&self) -> Arc<Control> {
        self.control.clone()
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let cfg = self.cfg;
        let graceful = CancellationToken::new();
        let cut = CancellationToken::new();
        let stop_accepting = CancellationToken::new();
        let shared = Arc::new(ConnShared {
            proxy: self.control.proxy.clone(),
            http: accept::http_builder(&cfg),
            header_timeout: cfg.timeouts.header_read,
            idle_timeout: cfg.timeouts.idle,
            graceful: graceful.clone(),
            cut: cut.clone(),
            tracker: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(cfg.limits.max_connections)),
        });
        let mut accepting = Vec::new();
        for b in self.listeners {
            if let Ok(addr) = b.listener.local_addr() {
                tracing::info!(listener = b.kind.name(), %addr, "listening");
            }
            accepting.push(tokio::spawn(accept::accept_loop(
                b.listener,
                b.kind,
                b.tls,
                shared.clone(),
                stop_accepting.clone(),
            )));
        }
        let admin_stop = CancellationToken::new();
        tracing::info!(listener = "admin", addr = %self.addrs.admin, "listening");
        let admin_state = Arc::new(AdminState {
            readiness: self.readiness.clone(),
            control: self.control.clone(),
            tokens: self.tokens,
            started: std::time::Instant::now(),
            dashboard: Default::default(),
        });
        let admin_task = tokio::spawn(admin::serve(self.admin, admin_state, admin_stop.clone()));
        self.control.proxy.load().start_background(&cfg);
        let catchup_stop = CancellationToken::new();
        crate::control::catchup::spawn(
            self.control.clone(),
            cfg.health.interval,
            cfg.health.timeout,
            catchup_stop.clone(),
        );
        if let Some(store) = cfg.store.clone() {
            crate::control::follow_store::spawn(self.control.clone(), store, catchup_stop.clone());
        }
        // Ready once the table has been compared with the store's, or without a store with
        // a peer's (a new pod must not take traffic on a stale table), or after `[fleet]
        // sync_timeout` whatever happened; at once with neither (nothing to compare with).
        let ready_when =
            |what: &'static str, synced: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
                let (readiness, region, sync_timeout) =
                    (self.readiness.clone(), cfg.region.clone(), cfg.fleet.sync_timeout);
                tokio::spawn(async move {
                    let synced = tokio::time::timeout(sync_timeout, synced).await.is_ok();
                    readiness.set_ready();
                    if synced {
                        tracing::info!(region = %region, "ready");
                    } else {
                        tracing::warn!(region = %region, ?sync_timeout, "{what} in time; ready on the table in force");
                    }
                });
            };
        if cfg.store.is_some() {
            let control = self.control.clone();
            ready_when(
                "the store's table could not be read",
                Box::pin(async move { control.wait_store_synced().await }),
            );
        } else if self.control.proxy.load().targets.peers.is_empty() {
            self.control.mark_synced();
            self.readiness.set_ready();
            tracing::info!(region = %cfg.region, "ready");
        } else {
            let control = self.control.clone();
            ready_when(
                "no peer's table to compare with",
                Box::pin(async move { control.wait_synced().await }),
            );
        }

        shutdown.await;
        catchup_stop.cancel();
        self.readiness.set_draining();
        tracing::info!(delay = ?cfg.drain.delay, "draining: readiness is now 503, still accepting");
        tokio::time::sleep(cfg.drain.delay).await;

        stop_accepting.cancel();
        for task in accepting {
            let _ = task.await;
        }
        tracing::info!(timeout = ?cfg.drain.timeout, "listeners closed; asking connections to finish");
        graceful.cancel();
        shared.tracker.close();
        let deadline = tokio::time::sleep(cfg.drain.timeout);
        tokio::pin!(deadline);
        let finished = tokio::select! {
            _ = async { tokio::join!(shared.tracker.wait(), self.control.drain_tunnels(std::future::pending())) } => true,
            _ = &mut deadline => false,
        };
        if !finished {
            tracing::warn!("drain timeout reached; cutting the remaining connections");
            cut.cancel();
            self.control.drain_tunnels(std::future::ready(())).await;
            shared.tracker.wait().await;
        }
        self.control.proxy.load().retire();
        admin_stop.cancel();
        let _ = admin_task.await;
        tracing::info!("drained");
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; falling back to ctrl-c");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
