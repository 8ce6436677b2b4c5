//! The request path: route → origin → forward, with the phases named as they run.
//!
//! A `Proxy` is built once from the config and shared by every connection; it holds no
//! lock and does one routing lookup per request. Responses it makes itself say why in
//! `x-flowgate-error`; every response says which region made it in `x-flowgate-region`.

pub mod body;
pub mod error;
pub mod forward;
pub mod headers;
pub mod route;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::server::conn_watch::ConnActivity;
use body::{ProxyBody, RequestGuard};
use error::ProxyError;
use forward::OriginPool;
use headers::ClientHop;
use route::Router;

/// Which listener a connection arrived on; it decides what the proxy trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Public,
    PublicTls,
    Peer,
}

impl ListenerKind {
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Public => "public",
            ListenerKind::PublicTls => "public_tls",
            ListenerKind::Peer => "peer",
        }
    }

    /// Clients on public listeners may not steer the fleet or claim forwarding fields.
    fn untrusted(self) -> bool {
        self != ListenerKind::Peer
    }

    fn proto(self) -> &'static str {
        if self == ListenerKind::PublicTls { "https" } else { "http" }
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

/// Shared, immutable request-path state.
pub struct Proxy {
    /// This proxy's `Via` entries.
    via: headers::ViaValues,
    /// Precomputed `x-flowgate-region` value.
    region_header: HeaderValue,
    router: Router,
    origins: Vec<OriginPool>,
    access_log: bool,
    /// Protocol-switched connections (WebSocket) outlive their request; drain waits for
    /// them and cuts them at the drain timeout.
    tunnels: TaskTracker,
    tunnel_cut: CancellationToken,
}

impl Proxy {
    pub fn new(cfg: &Config) -> Result<Proxy, http::header::InvalidHeaderValue> {
        let origins: Vec<OriginPool> = cfg
            .origins
            .iter()
            .map(|(name, o)| OriginPool::new(name, o, &cfg.timeouts, &cfg.limits))
            .collect();
        let router = Router::new(&cfg.routes, |name| origins.iter().position(|o| &*o.name == name));
        Ok(Proxy {
            via: headers::ViaValues::new(&cfg.region)?,
            region_header: HeaderValue::from_str(&cfg.region)?,
            router,
            origins,
            access_log: cfg.log.access,
            tunnels: TaskTracker::new(),
            tunnel_cut: CancellationToken::new(),
        })
    }

    /// Handles one request from a client; never fails: errors become responses.
    pub async fn handle(&self, ctx: &ConnCtx, req: Request<Incoming>) -> Response<ProxyBody> {
        let mut guard = RequestGuard { active: Some(ctx.activity.begin()), permit: None };
        let started = self.access_log.then(Instant::now);
        let method = self.access_log.then(|| (req.method().clone(), req.uri().path().to_owned()));
        let mut origin_name = None;
        let result = self.forward(ctx, req, &mut guard, &mut origin_name).await;
        let mut resp = match result {
            Ok(resp) => resp.map(|b| ProxyBody::upstream(b, guard)),
            Err(e) => {
                let mut r = e.response::<bytes::Bytes>();
                let body = std::mem::take(r.body_mut());
                r.map(|_| ProxyBody::full(body, guard))
            }
        };
        resp.headers_mut().insert(&headers::X_FLOWGATE_REGION, self.region_header.clone());
        if let (Some(t0), Some((m, path))) = (started, method) {
            tracing::info!(
                target: "flowgate::access",
                listener = ctx.listener.name(),
                client = %ctx.remote,
                method = %m,
                path = %path,
                status = resp.status().as_u16(),
                origin = origin_name.unwrap_or("-"),
                error = resp.headers().get(&headers::X_FLOWGATE_ERROR).and_then(|v| v.to_str().ok()).unwrap_or("-"),
                ms = t0.elapsed().as_secs_f64() * 1000.0,
            );
        }
        resp
    }

    async fn forward<'a>(
        &'a self,
        ctx: &ConnCtx,
        mut req: Request<Incoming>,
        guard: &mut RequestGuard,
        origin_name: &mut Option<&'a str>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let id = self.router.route(route::request_host(&req), req.uri().path()).ok_or(ProxyError::NoRoute)?;
        let origin = self.origins.get(id).ok_or(ProxyError::NoRoute)?;
        *origin_name = Some(&origin.name);
        guard.permit = Some(origin.permit()?);

        let upgrade = headers::is_upgrade_request(req.version(), req.headers());
        let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
        let hop = ClientHop {
            client_ip: &ctx.client_ip,
            proto: ctx.listener.proto(),
            untrusted: ctx.listener.untrusted(),
            via: self.via.for_version(req.version()),
        };
        let h = req.headers_mut();
        if hop.untrusted {
            headers::strip_flowgate(h);
        }
        headers::strip_hop_by_hop(h, upgrade);
        headers::add_forwarding(h, &hop);

        let mut resp = origin.forward(req).await?;
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

    /// Waits for protocol-switched tunnels to end, cutting them when `cut` fires.
    pub async fn drain_tunnels(&self, cut: impl std::future::Future<Output = ()>) {
        self.tunnels.close();
        tokio::select! {
            _ = self.tunnels.wait() => {}
            _ = cut => {
                self.tunnel_cut.cancel();
                self.tunnels.wait().await;
            }
        }
    }
}
