//! The request path, in named phases: route (host + path → origin), choose a target region
//! from the table's row, choose an endpoint, forward, and on failure retry elsewhere when
//! that is safe and the budget allows.
//!
//! A `Proxy` is built once from the config and shared by every connection. It takes one
//! atomic load of the traffic table per request and holds no lock. Responses it makes
//! itself say why in `x-flowgate-error`; every response says which region made it in
//! `x-flowgate-region`.

pub mod balance;
pub mod body;
pub mod bypass;
pub mod error;
pub mod forward;
pub mod headers;
pub mod health;
pub mod origin;
pub mod peer;
pub mod pool;
pub mod region_outlier;
pub mod retry;
pub mod shed;
mod subset;
mod target;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::table::compile::{CompiledTable, Regions, Target};
use crate::table::store::TableStore;
use crate::table::{Known, Table, TableError};
use crate::vocab::activity::ConnActivity;
use body::{ProxyBody, RequestGuard};
use error::ProxyError;
use headers::ClientHop;
use origin::OriginPool;
use peer::PeerRegion;
use retry::RetryPolicy;

/// Which listener a connection arrived on; it decides what the proxy trusts.
/// The discriminant is the listener's index in the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Public = 0,
    PublicTls = 1,
    Peer = 2,
    /// The peer listener over mutual TLS.
    PeerTls = 3,
}

impl ListenerKind {
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Public => "public",
            ListenerKind::PublicTls => "public_tls",
            ListenerKind::Peer => "peer",
            ListenerKind::PeerTls => "peer_tls",
        }
    }

    /// Clients on public listeners may not steer the fleet or claim forwarding fields.
    fn untrusted(self) -> bool {
        !self.is_peer()
    }

    /// Traffic from other regions' proxies (in the clear or over mutual TLS).
    pub fn is_peer(self) -> bool {
        matches!(self, ListenerKind::Peer | ListenerKind::PeerTls)
    }

    fn proto(self) -> &'static str {
        if matches!(self, ListenerKind::PublicTls | ListenerKind::PeerTls) { "https" } else { "http" }
    }
}

/// What the proxy knows about one client connection.
#[derive(Debug)]
pub struct ConnCtx {
    pub listener: ListenerKind,
    pub remote: SocketAddr,
    /// `remote`'s IP as a header value, made once for all the connection's requests.
    pub client_ip: HeaderValue,
    pub activity: Arc<ConnActivity>,
}

impl ConnCtx {
    pub fn new(listener: ListenerKind, remote: SocketAddr, activity: Arc<ConnActivity>) -> ConnCtx {
        ConnCtx { listener, remote, client_ip: headers::ip_header(remote.ip()), activity }
    }
}

/// Where requests can go: this region's origins (by `OriginId`) and the peer regions (by
/// peer index, the order of `Regions`).
#[derive(Debug)]
pub struct Targets {
    pub origins: Vec<OriginPool>,
    pub peers: Vec<PeerRegion>,
}

/// Names one upstream set of `Targets`, for tasks that outlive a borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamRef {
    Origin(usize),
    Lb(usize),
    Proxies(usize),
}

impl Targets {
    pub fn upstream(&self, which: UpstreamRef) -> Option<&forward::Upstream> {
        match which {
            UpstreamRef::Origin(i) => self.origins.get(i).map(|o| &o.upstream),
            UpstreamRef::Lb(i) => self.peers.get(i).map(|p| &p.lb),
            UpstreamRef::Proxies(i) => self.peers.get(i).map(|p| &p.proxies),
        }
    }

    /// Every upstream set: origins first, then each peer's load balancer and proxies.
    pub fn upstream_refs(&self) -> Vec<UpstreamRef> {
        let origins = (0..self.origins.len()).map(UpstreamRef::Origin);
        let peers = (0..self.peers.len()).flat_map(|i| [UpstreamRef::Lb(i), UpstreamRef::Proxies(i)]);
        origins.chain(peers).collect()
    }
}

/// Why a proxy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("region: {0}")]
    Region(#[from] http::header::InvalidHeaderValue),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("table {}: {source}", path.display())]
    Table { path: std::path::PathBuf, source: TableError },
    #[error("the table in force does not fit this config: {0}")]
    Unfit(TableError),
    #[error("peers.{0}: {1}")]
    PeerTls(String, Box<crate::vocab::tls::TlsError>),
    #[error("table {}: {source}", path.display())]
    TableRead { path: std::path::PathBuf, source: std::io::Error },
}

/// Shared request-path state.
pub struct Proxy {
    pub region: Arc<str>,
    /// Precomputed `x-flowgate-region` value.
    region_header: HeaderValue,
    via: headers::ViaValues,
    pub regions: Regions,
    pub targets: Arc<Targets>,
    pub tables: Arc<TableStore>,
    origin_names: Vec<Arc<str>>,
    config_routes: Vec<crate::config::Route>,
    max_hops: u32,
    shedder: shed::Shedder,
    retry: RetryPolicy,
    pub metrics: Metrics,
    /// The request metrics' children, resolved once per label combination.
    request_metrics: crate::metrics::children::RequestMetrics,
    /// Per target region, in `regions.names` order (this region first): what requests
    /// sent there got, for the per-target figures of `/v1/status` and, for this region,
    /// the figures its health answer reports.
    pub target_windows: Arc<Vec<crate::metrics::window::TargetWindow>>,
    /// Per target region (same order): the share it keeps after outlier detection.
    pub outliers: Arc<region_outlier::RegionOutliers>,
    access_log: bool,
    /// Protocol-switched connections (WebSocket) outlive their request; drain waits for
    /// them and cuts them at the drain timeout.
    tunnels: TaskTracker,
    tunnel_cut: CancellationToken,
    /// Stops this generation's probes and resolvers.
    background: CancellationToken,
}

/// What outlives one generation of the proxy (a SIGHUP builds a new one): the metrics,
/// and the tunnels that drain must wait for.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Metrics,
    pub tunnels: TaskTracker,
    pub tunnel_cut: CancellationToken,
}

impl Shared {
    pub fn new() -> Result<Shared, BuildError> {
        Ok(Shared {
            metrics: Metrics::new()?,
            tunnels: TaskTracker::new(),
            tunnel_cut: CancellationToken::new(),
        })
    }
}

impl Proxy {
    /// Builds the request-path state for `cfg`, starting on `initial` (checked here too:
    /// a table that does not fit this config is refused).
    pub fn new(cfg: &Config, shared: Shared, initial: Table) -> Result<Proxy, BuildError> {
        let origins: Vec<OriginPool> =
            cfg.origins.iter().map(|(name, o)| OriginPool::new(name, o, cfg)).collect();
        let peers: Vec<PeerRegion> = cfg
            .peers
            .iter()
            .map(|(name, p)| {
                PeerRegion::new(name, p, cfg).map_err(|e| BuildError::PeerTls(name.clone(), Box::new(e)))
            })
            .collect::<Result<_, _>>()?;
        let regions = Regions {
            names: std::iter::once(cfg.region.as_str())
                .chain(cfg.peers.keys().map(String::as_str))
                .map(Arc::from)
                .collect(),
        };
        let origin_names: Vec<Arc<str>> = origins.iter().map(|o| o.name.clone()).collect();
        if initial.version > 0 {
            initial.validate(&known(&regions, &origin_names)).map_err(BuildError::Unfit)?;
        }
        shared.metrics.table_version.set(initial.version as i64);
        let request_metrics = crate::metrics::children::RequestMetrics::new(
            shared.metrics.clone(),
            &[
                ListenerKind::Public.name(),
                ListenerKind::PublicTls.name(),
                ListenerKind::Peer.name(),
                ListenerKind::PeerTls.name(),
            ],
            &origin_names.iter().map(|n| &**n).collect::<Vec<_>>(),
            &regions.names.iter().map(|n| &**n).collect::<Vec<_>>(),
        );
        let compiled = CompiledTable::compile(initial, &regions, &origin_names, &cfg.routes);
        shared.metrics.set_table_digest(&compiled.digest);
        let regions_len = regions.names.len();
        Ok(Proxy {
            region: cfg.region.as_str().into(),
            region_header: HeaderValue::from_str(&cfg.region)?,
            via: headers::ViaValues::new(&cfg.region)?,
            regions,
            targets: Arc::new(Targets { origins, peers }),
            tables: Arc::new(TableStore::new(compiled)),
            origin_names,
            config_routes: cfg.routes.clone(),
            max_hops: cfg.forwarding.max_hops,
            shedder: shed::Shedder::new(&cfg.overload),
            retry: RetryPolicy::new(&cfg.retry),
            request_metrics,
            target_windows: Arc::new((0..regions_len).map(|_| Default::default()).collect()),
            outliers: Arc::new(region_outlier::RegionOutliers::new(regions_len)),
            metrics: shared.metrics,
            access_log: cfg.log.access,
            tunnels: shared.tunnels,
            tunnel_cut: shared.tunnel_cut,
            background: CancellationToken::new(),
        })
    }

    /// Starts the probes and resolvers of this generation; `retire` stops them.
    pub fn start_background(&self, cfg: &Config) {
        health::spawn(
            self.targets.clone(),
            self.tables.clone(),
            self.region.clone(),
            health::ProbeCtx {
                interval: cfg.health.interval,
                timeout: cfg.health.timeout,
                jitter: cfg.health.jitter,
                metrics: self.metrics.clone(),
                stop: self.background.clone(),
            },
        );
        health::spawn_outliers(
            health::OutlierInputs {
                windows: self.target_windows.clone(),
                targets: self.targets.clone(),
                outliers: self.outliers.clone(),
                names: self.regions.names.clone(),
            },
            self.metrics.clone(),
            self.background.clone(),
        );
        for which in self.targets.upstream_refs() {
            health::spawn_resolver(
                self.targets.clone(),
                which,
                cfg.forwarding.resolve_interval,
                self.background.clone(),
            );
        }
    }

    /// Stops this generation's background work (after a reload replaced it, or at exit).
    pub fn retire(&self) {
        self.background.cancel();
    }

    pub fn origin_names(&self) -> &[Arc<str>] {
        &self.origin_names
    }

    /// What a pushed table is checked against.
    pub fn known(&self) -> Known<'_> {
        known(&self.regions, &self.origin_names)
    }

    /// Compiles a validated table for this proxy (off the request path).
    pub fn compile(&self, table: Table) -> CompiledTable {
        CompiledTable::compile(table, &self.regions, &self.origin_names, &self.config_routes)
    }

    /// Handles one request from a client; never fails: errors become responses.
    pub async fn handle(&self, ctx: &ConnCtx, req: Request<Incoming>) -> Response<ProxyBody> {
        let mut guard = RequestGuard::new(ctx.activity.begin(), &self.metrics.inflight_requests);
        if ctx.listener.is_peer() && req.uri().path() == health::HEALTH_PATH {
            return self.health_response(guard);
        }
        if ctx.listener.is_peer() && req.uri().path() == health::TABLE_PATH {
            return self.table_response(guard);
        }
        let priority = self.shedder.priority(req.headers());
        if self.shedder.shed(priority, self.metrics.inflight_requests.get().max(0) as usize) {
            self.metrics.shed_total.with_label_values(&[priority_reason(priority)]).inc();
            let mut r = ProxyError::OriginBusy.response::<Bytes>();
            let body = std::mem::take(r.body_mut());
            let mut resp = r.map(|_| ProxyBody::full(body, guard));
            resp.headers_mut().insert(&headers::X_FLOWGATE_REGION, self.region_header.clone());
            self.metrics.rate.record(true);
            return resp;
        }
        let started = Instant::now();
        let method = self.access_log.then(|| (req.method().clone(), req.uri().path().to_owned()));
        let mut outcome = target::Outcome::default();
        let result = self.forward(ctx, req, &mut guard, &mut outcome).await;
        let mut resp = match result {
            Ok(resp) => resp.map(|b| ProxyBody::upstream(b, guard)),
            Err(e) => {
                if e == ProxyError::OriginBusy {
                    self.metrics.shed_total.with_label_values(&["origin-concurrency"]).inc();
                }
                let mut r = e.response::<Bytes>();
                let body = std::mem::take(r.body_mut());
                r.map(|_| ProxyBody::full(body, guard))
            }
        };
        let target_region = outcome.target.map(|t| self.regions.name(t)).unwrap_or("-");
        let h = resp.headers_mut();
        match outcome.target {
            // A peer's answer names the region that made it; keep it.
            Some(Target::Peer(_)) if h.contains_key(&headers::X_FLOWGATE_REGION) => {}
            Some(Target::Peer(_)) => {
                if let Ok(v) = HeaderValue::from_str(target_region) {
                    h.insert(&headers::X_FLOWGATE_REGION, v);
                }
            }
            _ => {
                h.insert(&headers::X_FLOWGATE_REGION, self.region_header.clone());
            }
        }
        if outcome.attempts > 1 {
            h.insert("x-flowgate-attempts", HeaderValue::from(outcome.attempts));
        }
        let origin = outcome.origin.map(|o| &*self.origin_names[o]).unwrap_or("-");
        let status = resp.status();
        self.metrics.rate.record(status.is_server_error());
        if !ctx.listener.is_peer() {
            self.metrics.source_rate.record(status.is_server_error());
        }
        let target_index = outcome.target.map(Target::index);
        let elapsed = started.elapsed();
        self.request_metrics.observe(
            ctx.listener as usize,
            outcome.origin,
            target_index,
            status.as_u16(),
            elapsed.as_secs_f64(),
        );
        if let Some((m, path)) = method {
            tracing::info!(
                target: "flowgate::access",
                listener = ctx.listener.name(),
                client = %ctx.remote,
                method = %m,
                path = %path,
                status = status.as_u16(),
                origin,
                target_region,
                attempts = outcome.attempts,
                error = resp.headers().get(&headers::X_FLOWGATE_ERROR).and_then(|v| v.to_str().ok()).unwrap_or("-"),
                ms = started.elapsed().as_secs_f64() * 1000.0,
            );
        }
        resp
    }

    fn health_response(&self, guard: RequestGuard) -> Response<ProxyBody> {
        let served = self.target_windows.first().map(|w| {
            let s = w.stats(health::SERVED_WINDOW_SECONDS);
            crate::wire::ServedFigures { rps: s.rps, error_ratio: s.error_ratio }
        });
        let table = self.tables.load();
        let report = health::region_health(&self.region, &self.targets, served, &table);
        let body = serde_json::to_vec(&report).unwrap_or_default();
        let mut resp = Response::new(ProxyBody::full(Bytes::from(body), guard));
        if !report.healthy {
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(&headers::X_FLOWGATE_REGION, self.region_header.clone());
        resp
    }

    /// The table in force, for a peer catching up (peer listener only).
    fn table_response(&self, guard: RequestGuard) -> Response<ProxyBody> {
        let table = self.tables.load();
        let body = serde_json::to_vec(&*table.table).unwrap_or_default();
        let mut resp = Response::new(ProxyBody::full(Bytes::from(body), guard));
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(&headers::X_FLOWGATE_REGION, self.region_header.clone());
        resp
    }

    async fn forward(
        &self,
        ctx: &ConnCtx,
        mut req: Request<Incoming>,
        guard: &mut RequestGuard,
        outcome: &mut target::Outcome,
    ) -> Result<Response<Incoming>, ProxyError> {
        // CONNECT would turn the proxy into an open tunnel to anywhere: not for a reverse
        // proxy.
        if req.method() == http::Method::CONNECT {
            return Err(ProxyError::MethodNotAllowed);
        }
        // More than one Host: the origin could pick another one than routing did
        // (RFC 9112 section 3.2: answer 400).
        if req.headers().get_all(http::header::HOST).iter().nth(1).is_some() {
            return Err(ProxyError::BadRequest);
        }

        // An absolute-form target (or HTTP/2's :authority) names the host; a `Host` that
        // says otherwise must not reach the origin, or routing and origin would read the
        // request differently (RFC 9112 section 3.2.2: the target's authority wins).
        if let Some(authority) = req.uri().authority()
            && req
                .headers()
                .get(http::header::HOST)
                .is_some_and(|h| h.as_bytes() != authority.as_str().as_bytes())
        {
            let host = HeaderValue::from_str(authority.as_str()).map_err(|_| ProxyError::BadRequest)?;
            req.headers_mut().insert(http::header::HOST, host);
        }
        let table = self.tables.load();
        let oid = table
            .router
            .route(crate::table::route::request_host(&req), req.uri().path())
            .ok_or(ProxyError::NoRoute)?;
        outcome.origin = Some(oid);
        let hop = target::HopInfo::read(ctx.listener, req.headers(), &self.region_header, self.max_hops);

        let upgrade = headers::is_upgrade_request(req.version(), req.headers());
        let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
        let client_hop = ClientHop {
            client_ip: &ctx.client_ip,
            proto: ctx.listener.proto(),
            untrusted: ctx.listener.untrusted(),
            via: self.via.for_version(req.version()),
        };
        let h = req.headers_mut();
        if client_hop.untrusted {
            headers::strip_flowgate(h);
        }
        headers::strip_hop_by_hop(h, upgrade);
        headers::add_forwarding(h, &client_hop);

        let plan = target::Plan {
            proxy: self,
            table: &table,
            origin: oid,
            hop: &hop,
            // A protocol switch cannot ride an HTTP/2 link to a peer: serve it here.
            local_only: hop.local_only || upgrade,
        };
        let mut resp = plan.run(req, guard, outcome).await?;
        let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        match (switched, client_side) {
            (true, Some(client_side)) => {
                let upstream_side = hyper::upgrade::on(&mut resp);
                upgrade::spawn_tunnel(&self.tunnels, self.tunnel_cut.clone(), client_side, upstream_side);
            }
            // A 101 the client did not ask for cannot be honoured.
            (true, None) => return Err(ProxyError::UpstreamProtocol),
            _ => {}
        }
        headers::strip_hop_by_hop(resp.headers_mut(), switched);
        Ok(resp)
    }
}

fn priority_reason(p: crate::vocab::Priority) -> &'static str {
    match p {
        crate::vocab::Priority::Low => "overload-low",
        crate::vocab::Priority::Normal => "overload-normal",
        crate::vocab::Priority::High => "overload-high",
        crate::vocab::Priority::Critical => "overload-critical",
    }
}

fn known<'a>(regions: &'a Regions, origins: &'a [Arc<str>]) -> Known<'a> {
    Known {
        regions: regions.names.iter().map(|n| &**n).collect(),
        origins: origins.iter().map(|n| &**n).collect(),
    }
}
