//! The request path, in named phases: filter (what a reverse proxy refuses), route (host +
//! path → origin), then the attempts: choose a target region from the table's row, an
//! endpoint, forward, and on failure retry elsewhere when that is safe and the budget
//! allows; last, the response headers, metrics and access log.
//!
//! A `Proxy` is built once from the config and shared by every connection. It takes one
//! atomic load of the traffic table per request and holds no lock. Responses it makes
//! itself say why in `x-flowgate-error`; every response says which region made it in
//! `x-flowgate-region`.
//!
//! # Layout
//!
//! - The request: [`listener`] (where it came from), [`request_filter`], [`own_answers`]
//!   (what the proxy answers itself: TRACE, `OPTIONS *`, 414), [`headers`] (header
//!   hygiene and the fleet's field names), [`hop`] (the fleet fields between regions),
//!   [`request_body`] (kept for retries), [`body`] (the response body and its guard),
//!   [`upgrade`] (protocol switches), [`shed`] (load shedding).
//! - The attempts: [`attempt`] (the loop and its state), [`choose`] (the target region),
//!   [`retry`] (budget and safety), [`thread_random`] (their random source).
//! - Where requests go: [`targets`], [`origin`], [`peer`] (with [`bypass`] and [`subset`]),
//!   [`balance`] (an endpoint set: p2c, ejection) and [`slow_start`]; [`forward`] and
//!   [`pool`] talk to an endpoint.
//! - A generation: [`generation`] (what it is built from), and its background work:
//!   [`health`] (the health document and the probes), [`peer_upkeep`] (subsets, bypass),
//!   [`region_outlier`] (5xx outlier detection per region), [`resolve`] (endpoint names).

mod attempt;
pub(crate) mod balance;
mod body;
mod bypass;
mod choose;
pub(crate) mod client_body;
mod error;
mod forward;
mod generation;
mod h2_pool;
pub mod headers;
pub(crate) mod health;
mod hop;
mod listener;
mod origin;
mod outgoing;
mod own_answers;
pub(crate) mod peer;
mod peer_upkeep;
mod pool;
mod record;
mod region_outlier;
mod request_body;
mod request_filter;
mod resolve;
mod retry;
mod shed;
mod slow_start;
mod subset;
mod targets;
mod thread_random;
mod upgrade;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::metrics::window::TargetWindow;
use crate::table::compile::{CompiledTable, Regions};
use crate::table::store::TableStore;
use crate::table::{Known, Table};
use attempt::{Dispatch, Outcome, Plan};
pub(crate) use body::ProxyBody;
use body::RequestGuard;
use client_body::ClientBody;
use error::ProxyError;
pub use generation::{BuildError, Shared};
use headers::{ClientHop, X_FLOWGATE_REGION};
use hop::HopInfo;
pub(crate) use listener::{ConnCtx, ListenerKind};
use origin::OriginPool;
use peer::PeerRegion;
use pool::UpstreamResponse;
pub(crate) use pool::{Fields, Relayed};
use region_outlier::RegionOutliers;
pub(crate) use request_body::KEEP_BODY_TIMEOUT;
use retry::RetryPolicy;
use shed::Inflight;
use targets::Targets;
use thread_random::ThreadRandom;

/// Shared request-path state.
pub struct Proxy {
    pub(crate) region: Arc<str>,
    /// Precomputed `x-flowgate-region` value.
    region_header: HeaderValue,
    via: headers::ViaValues,
    pub(crate) regions: Regions,
    /// The same as `dispatch`'s, for status and the background work.
    pub(crate) targets: Arc<Targets>,
    pub(crate) tables: Arc<TableStore>,
    origin_names: Vec<Arc<str>>,
    config_routes: Vec<crate::config::Route>,
    max_hops: u32,
    /// `[limits] max_uri_bytes`: a longer request target is answered 414.
    pub(crate) max_uri_bytes: usize,
    /// `[limits] max_header_bytes` and `max_headers`, for the own HTTP/1.1 path's head
    /// reader (`server::h1`); hyper's builder has the same from the config it started on.
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    shedder: shed::Shedder,
    /// What load shedding counts; outlives the generation, as requests in flight do.
    inflight: Arc<Inflight>,
    /// What the attempts of every request share.
    dispatch: Dispatch,
    pub(crate) metrics: Metrics,
    /// The request metrics' children, resolved once per label combination.
    request_metrics: crate::metrics::children::RequestMetrics,
    /// Per target region, in `regions.names` order (this region first): what requests
    /// sent there got, for the per-target figures of `/v1/status` and, for this region,
    /// the figures its health answer reports.
    pub(crate) target_windows: Arc<Vec<TargetWindow>>,
    /// Per target region (same order): the share it keeps after outlier detection.
    pub(crate) outliers: Arc<RegionOutliers>,
    access_log: bool,
    /// Protocol-switched connections (WebSocket) outlive their request; drain waits for
    /// them and cuts them at the drain timeout.
    tunnels: TaskTracker,
    tunnel_cut: CancellationToken,
    /// Stops this generation's probes and resolvers.
    background: CancellationToken,
}

impl Proxy {
    /// Builds the request-path state for `cfg`, starting on `initial` (checked here too:
    /// a table that does not fit this config is refused).
    pub(crate) fn new(cfg: &Config, shared: Shared, initial: Table) -> Result<Proxy, BuildError> {
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
        shared.metrics.set_regions(&cfg.region, cfg.peers.keys());
        let request_metrics = crate::metrics::children::RequestMetrics::new(
            shared.metrics.clone(),
            &ListenerKind::ALL.map(ListenerKind::name),
            &origin_names.iter().map(|n| &**n).collect::<Vec<_>>(),
            &regions.names.iter().map(|n| &**n).collect::<Vec<_>>(),
        );
        let compiled = CompiledTable::compile(initial, &regions, &origin_names, &cfg.routes);
        shared.metrics.set_table_digest(&compiled.digest);
        let regions_len = regions.names.len();
        let targets = Arc::new(Targets { origins, peers });
        let target_windows: Arc<Vec<TargetWindow>> =
            Arc::new((0..regions_len).map(|_| Default::default()).collect());
        let outliers = Arc::new(RegionOutliers::new(regions_len));
        let dispatch = Dispatch {
            targets: targets.clone(),
            windows: target_windows.clone(),
            outliers: outliers.clone(),
            retry: RetryPolicy::new(&cfg.retry),
            metrics: shared.metrics.clone(),
        };
        Ok(Proxy {
            region: cfg.region.as_str().into(),
            region_header: HeaderValue::from_str(&cfg.region)?,
            via: headers::ViaValues::new(&cfg.region)?,
            regions,
            targets,
            tables: Arc::new(TableStore::new(compiled)),
            origin_names,
            config_routes: cfg.routes.clone(),
            max_hops: cfg.forwarding.max_hops,
            max_uri_bytes: cfg.limits.max_uri_bytes,
            max_header_bytes: cfg.limits.max_header_bytes,
            max_headers: cfg.limits.max_headers,
            shedder: shed::Shedder::new(&cfg.overload),
            inflight: shared.inflight,
            dispatch,
            request_metrics,
            target_windows,
            outliers,
            metrics: shared.metrics,
            access_log: cfg.log.access,
            tunnels: shared.tunnels,
            tunnel_cut: shared.tunnel_cut,
            background: CancellationToken::new(),
        })
    }

    /// Starts the probes and resolvers of this generation; `retire` stops them.
    pub(crate) fn start_background(&self, cfg: &Config) {
        let stop = &self.background;
        let probes = health::probe::ProbeCtx::new(&cfg.health, self.metrics.clone(), stop.clone());
        health::probe::spawn(self.targets.clone(), self.region.clone(), probes);
        peer_upkeep::spawn(self.targets.clone(), self.tables.clone(), self.metrics.clone(), stop.clone());
        let outliers = region_outlier::watch::OutlierInputs {
            windows: self.target_windows.clone(),
            targets: self.targets.clone(),
            outliers: self.outliers.clone(),
            names: self.regions.names.clone(),
        };
        region_outlier::watch::spawn(outliers, self.metrics.clone(), stop.clone());
        resolve::spawn(&self.targets, cfg.forwarding.resolve_interval, stop);
    }

    /// Stops this generation's background work (after a reload replaced it, or at exit).
    pub(crate) fn retire(&self) {
        self.background.cancel();
    }

    /// The longest request body the attempts keep whole for retries (`[retry]
    /// max_body_bytes`): the own HTTP/1.1 path reads up to this much before calling
    /// [`Proxy::handle`], and leaves longer bodies to hyper's stream.
    pub(crate) fn keep_body_max(&self) -> usize {
        self.dispatch.retry.max_body_bytes
    }

    /// What a pushed table is checked against.
    pub(crate) fn known(&self) -> Known<'_> {
        known(&self.regions, &self.origin_names)
    }

    /// Compiles a validated table for this proxy (off the request path).
    pub(crate) fn compile(&self, table: Table) -> CompiledTable {
        CompiledTable::compile(table, &self.regions, &self.origin_names, &self.config_routes)
    }

    /// Handles one request from a client; never fails: errors become responses. The
    /// phases: the proxy's own answers and the filter, route, choose and attempt (in
    /// `forward` and the attempts' `Plan`), then respond and record (in [`record`]), which
    /// every answer goes through whoever made it. `fields` says where an origin's answer
    /// may keep its ordinary fields ([`ProxyBody::relayed`] with [`Fields::Bytes`]).
    pub(crate) async fn handle(
        &self,
        ctx: &ConnCtx,
        mut req: Request<ClientBody>,
        fields: Fields,
    ) -> Response<ProxyBody> {
        let mut guard = RequestGuard::new(ctx.activity.begin(), &self.inflight);
        let started = tokio::time::Instant::now();
        let access = self.access_log.then(|| record::Access::of(&req));
        let mut outcome = Outcome::default();
        let mut resp = match own_answers::answer(&mut req, self.max_uri_bytes) {
            Some(own) => own.map(|b| ProxyBody::full(b, guard)),
            None => {
                if ctx.listener.is_peer() && req.uri().path() == health::HEALTH_PATH {
                    return self.answerer(&self.tables.load()).health(guard);
                }
                if ctx.listener.is_peer() && req.uri().path() == health::TABLE_PATH {
                    return self.answerer(&self.tables.load()).table(guard);
                }
                let priority = self.shedder.priority(req.headers());
                if self.shedder.shed(priority, self.inflight.get()) {
                    self.metrics.shed_total.with_label_values(&[shed::reason(priority)]).inc();
                    let mut resp = error_response(ProxyError::OriginBusy, guard);
                    resp.headers_mut().insert(&X_FLOWGATE_REGION, self.region_header.clone());
                    self.metrics.rate.record(true);
                    return resp;
                }
                match self.forward(ctx, req, fields, &mut guard, &mut outcome).await {
                    Ok(resp) => resp.map(|b| ProxyBody::upstream(b, guard)),
                    Err(e) => {
                        if e == ProxyError::OriginBusy {
                            self.metrics.shed_total.with_label_values(&["origin-concurrency"]).inc();
                        }
                        error_response(e, guard)
                    }
                }
            }
        };
        self.respond(&mut resp, &outcome);
        self.record(ctx, &resp, &outcome, started, access);
        resp
    }

    /// What the peer listener answers for this region, under `table`.
    fn answerer<'a>(&'a self, table: &'a CompiledTable) -> health::Answerer<'a> {
        health::Answerer {
            region: &self.region,
            region_header: &self.region_header,
            targets: &self.targets,
            windows: &self.target_windows,
            table,
        }
    }

    /// From the filter to the answer to relay: route, prepare the headers, run the
    /// attempts, and set up a protocol switch the origin agreed to.
    async fn forward(
        &self,
        ctx: &ConnCtx,
        mut req: Request<ClientBody>,
        fields: Fields,
        guard: &mut RequestGuard,
        outcome: &mut Outcome,
    ) -> Result<Response<UpstreamResponse>, ProxyError> {
        request_filter::check(&mut req)?;
        let table = self.tables.load();
        let oid = table
            .router
            .route(crate::table::route::request_host(&req), req.uri().path())
            .ok_or(ProxyError::NoRoute)?;
        outcome.origin = Some(oid);
        let hop = HopInfo::read(ctx.listener, req.headers(), &self.region_header, self.max_hops);

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

        let plan = Plan {
            dispatch: &self.dispatch,
            table: &table,
            origin: oid,
            hop: &hop,
            // A protocol switch cannot ride an HTTP/2 link to a peer: serve it here.
            local_only: hop.local_only || upgrade,
            upgrade,
            fields,
        };
        let mut resp = plan.run(req, guard, outcome, &mut ThreadRandom).await?;
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

/// The response the proxy makes for `e`, holding the request's guard.
fn error_response(e: ProxyError, guard: RequestGuard) -> Response<ProxyBody> {
    let mut r = e.response::<Bytes>();
    let body = std::mem::take(r.body_mut());
    r.map(|_| ProxyBody::full(body, guard))
}

fn known<'a>(regions: &'a Regions, origins: &'a [Arc<str>]) -> Known<'a> {
    Known {
        regions: regions.names.iter().map(|n| &**n).collect(),
        origins: origins.iter().map(|n| &**n).collect(),
    }
}
