//! Forwarding to an origin: endpoint choice, pooled keep-alive connections, timeouts.
//!
//! Each origin owns a pooled hyper client, so its connect timeout and protocol (HTTP/1.1
//! or h2c) are its own and one origin's slow endpoints never hold another's connections.
//! Endpoint names are resolved on every new connection (getaddrinfo in a blocking pool
//! thread), so DNS changes are followed without a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::error::ProxyError;
use crate::config::{self, Protocol};

/// The request body sent upstream: the client's own body, streamed as it arrives.
pub type UpstreamBody = Incoming;

type PooledClient = Client<HttpConnector, UpstreamBody>;

/// One origin: its endpoints, its pool and its limits.
#[derive(Debug)]
pub struct OriginPool {
    pub name: Arc<str>,
    endpoints: Vec<Authority>,
    /// Round-robin cursor over `endpoints`.
    next: AtomicUsize,
    protocol: Protocol,
    request_timeout: Duration,
    max_concurrency: usize,
    /// Requests to this origin whose response has not finished; bounded by `max_concurrency`.
    inflight: Arc<AtomicUsize>,
    client: PooledClient,
}

/// Counts one request against its origin's concurrency until dropped (when the response
/// body ends or the exchange is abandoned).
#[derive(Debug)]
pub struct OriginPermit(Arc<AtomicUsize>);

impl Drop for OriginPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl OriginPool {
    pub fn new(
        name: &str,
        cfg: &config::Origin,
        timeouts: &config::Timeouts,
        limits: &config::Limits,
    ) -> OriginPool {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.connect_timeout.unwrap_or(timeouts.connect)));
        connector.set_keepalive(Some(Duration::from_secs(30)));
        connector.enforce_http(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(timeouts.upstream_idle)
            .pool_max_idle_per_host(limits.upstream_pool_idle);
        if cfg.protocol == Protocol::Http2 {
            builder
                .http2_only(true)
                .http2_keep_alive_interval(Duration::from_secs(20))
                .http2_keep_alive_timeout(Duration::from_secs(10))
                .http2_keep_alive_while_idle(true);
        }
        OriginPool {
            name: name.into(),
            // Validated at config load: every endpoint is a host:port authority.
            endpoints: cfg.endpoints.iter().filter_map(|e| e.parse().ok()).collect(),
            next: AtomicUsize::new(0),
            protocol: cfg.protocol,
            request_timeout: cfg.request_timeout.unwrap_or(timeouts.request),
            max_concurrency: cfg.max_concurrency,
            inflight: Arc::new(AtomicUsize::new(0)),
            client: builder.build(connector),
        }
    }

    /// Takes a concurrency slot, or refuses when the origin is at its limit.
    pub fn permit(&self) -> Result<OriginPermit, ProxyError> {
        let prev = self.inflight.fetch_add(1, Ordering::Relaxed);
        let permit = OriginPermit(self.inflight.clone());
        if prev >= self.max_concurrency {
            return Err(ProxyError::OriginBusy);
        }
        Ok(permit)
    }

    fn pick(&self) -> Option<&Authority> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints.get(i)
    }

    /// Sends the request to the next endpoint and waits for the response head, at most
    /// the origin's request timeout.
    pub async fn forward(&self, mut req: Request<UpstreamBody>) -> Result<Response<Incoming>, ProxyError> {
        let endpoint = self.pick().ok_or(ProxyError::NoEndpoint)?.clone();
        retarget(&mut req, endpoint, self.protocol)?;
        match tokio::time::timeout(self.request_timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                let err = ProxyError::from_client(&e);
                tracing::debug!(origin = %self.name, error = ?e, code = err.code(), "upstream request failed");
                Err(err)
            }
            Err(_) => Err(ProxyError::Timeout),
        }
    }
}

/// Points a request at an endpoint, keeping the client's host for HTTP/1.1 origins.
fn retarget(
    req: &mut Request<UpstreamBody>,
    endpoint: Authority,
    protocol: Protocol,
) -> Result<(), ProxyError> {
    if protocol == Protocol::Http1 && !req.headers().contains_key(http::header::HOST) {
        // HTTP/2 clients name the host in the URI only; an HTTP/1.1 origin needs `Host`.
        if let Some(a) = req.uri().authority() {
            let host = HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::BadRequest)?;
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
    let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(endpoint);
    parts.path_and_query = Some(path);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest)?;
    *req.version_mut() = match protocol {
        Protocol::Http1 => Version::HTTP_11,
        Protocol::Http2 => Version::HTTP_2,
    };
    Ok(())
}
