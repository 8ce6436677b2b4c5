//! Talking to one set of upstream endpoints over pooled keep-alive connections.
//!
//! Each `Upstream` owns a hyper-util pooled client, so its connect timeout and protocol
//! (HTTP/1.1, or h2c with one multiplexed connection per endpoint) are its own and one
//! set's slow endpoints never hold another's connections. Endpoint names are resolved on
//! every new connection, so DNS changes are followed without a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::balance::{EndpointSet, SetPolicy};
use super::error::ProxyError;
use super::h2_pool::{H2Pool, PeerTls};
use super::headers::X_FLOWGATE_REGION;
pub(crate) use super::outgoing::Outgoing;
use super::pool::{H1Pool, UpstreamResponse, Wants};
use super::request_body::UpstreamBody;
use crate::config::Protocol;

/// Plain TCP for origins and plain peer links; TLS (with a client certificate) for peer
/// links that ask for it. One connector type for both keeps one client type.
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type PooledClient = Client<Connector, UpstreamBody>;

/// How an upstream set is reached.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamSettings {
    pub(crate) protocol: Protocol,
    pub(crate) connect_timeout: Duration,
    /// From sending the request to the response head.
    pub(crate) request_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle: usize,
    /// Mutual TLS to this set (peer links): the client configuration, and the name the
    /// endpoints' certificates carry when it is not their host.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) server_name: Option<String>,
}

/// An endpoint set and the pooled client that reaches it.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) set: EndpointSet,
    /// Swapped for a fresh pool when an endpoint name resolves to new addresses, so that
    /// long-lived (HTTP/2) connections do not outlive the addresses they were opened to.
    client: ArcSwap<PooledClient>,
    /// HTTP/1.1 in the clear (origins, plain peer links) goes through this pool instead.
    h1: Option<H1Pool>,
    /// HTTP/2 (h2c or mutual TLS) goes through this one, but for protocol switches.
    h2: Option<H2Pool>,
    settings: UpstreamSettings,
    protocol: Protocol,
    /// `https` for mutual-TLS peer links, else `http`.
    scheme: Scheme,
    request_timeout: Duration,
}

/// A response and what it took.
pub(crate) struct Answer {
    /// Its body holds the pooled connection it streams on, until it is relayed.
    pub(crate) response: Response<UpstreamResponse>,
    pub(crate) latency: Duration,
    /// When the head arrived (the clock read `latency` came from), on tokio's clock: the
    /// request's record and the target's window take it rather than reading the clock.
    pub(crate) at: tokio::time::Instant,
}

impl Upstream {
    pub(crate) fn new(endpoints: &[String], policy: SetPolicy, s: &UpstreamSettings) -> Upstream {
        // Validated at config load: every endpoint is a host:port authority.
        let authorities: Vec<Authority> = endpoints.iter().filter_map(|e| e.parse().ok()).collect();
        let h1 = (s.protocol == Protocol::Http1 && s.tls.is_none())
            .then(|| H1Pool::new(authorities.len(), s.connect_timeout, s.pool_idle_timeout, s.pool_max_idle));
        let h2 = (s.protocol == Protocol::Http2).then(|| {
            let tls = s.tls.as_deref().map(|cfg| PeerTls::new(cfg, s.server_name.as_deref()));
            H2Pool::new(authorities.len(), s.connect_timeout, tls)
        });
        Upstream {
            h1,
            h2,
            set: EndpointSet::new(authorities, policy),
            client: ArcSwap::from_pointee(build_client(s)),
            settings: s.clone(),
            protocol: s.protocol,
            scheme: if s.tls.is_some() { Scheme::HTTPS } else { Scheme::HTTP },
            request_timeout: s.request_timeout,
        }
    }

    /// Replaces the connection pool: new requests open new connections (resolving names
    /// again); requests under way finish on the old ones, which close when done.
    pub(crate) fn refresh_pool(&self) {
        self.client.store(Arc::new(build_client(&self.settings)));
        if let Some(h1) = &self.h1 {
            h1.clear();
        }
        if let Some(h2) = &self.h2 {
            h2.clear();
        }
    }

    fn client(&self) -> Arc<PooledClient> {
        self.client.load_full()
    }
}

fn build_client(s: &UpstreamSettings) -> PooledClient {
    {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(s.connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(30)));
        // The TLS layer below decides the scheme; the TCP layer must accept https URIs.
        connector.enforce_http(false);
        let connector = match &s.tls {
            Some(cfg) => {
                let b =
                    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config((**cfg).clone()).https_only();
                // Validated at config load: a name that does not parse is not set.
                let fixed = s
                    .server_name
                    .as_ref()
                    .and_then(|n| rustls_pki_types::ServerName::try_from(n.clone()).ok())
                    .map(hyper_rustls::FixedServerNameResolver::new);
                let b = match fixed {
                    Some(resolver) => b.with_server_name_resolver(resolver),
                    None => b,
                };
                b.enable_all_versions().wrap_connector(connector)
            }
            None => {
                // Never used for TLS (every URI is http), but the type wants a config.
                let empty = rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(empty)
                    .https_or_http()
                    .enable_all_versions()
                    .wrap_connector(connector)
            }
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(s.pool_idle_timeout)
            .pool_max_idle_per_host(s.pool_max_idle);
        if s.protocol == Protocol::Http2 {
            builder
                .http2_only(true)
                .http2_keep_alive_interval(Duration::from_secs(20))
                .http2_keep_alive_timeout(Duration::from_secs(10))
                .http2_keep_alive_while_idle(true)
                .http2_adaptive_window(true);
        }
        builder.build(connector)
    }
}

impl Upstream {
    /// The longest this set waits for an answer, within `deadline` when there is one.
    pub(crate) fn budget(&self, deadline: Option<tokio::time::Instant>) -> Duration {
        match deadline {
            Some(d) => self.request_timeout.min(d.saturating_duration_since(tokio::time::Instant::now())),
            None => self.request_timeout,
        }
    }

    /// Sends the request to endpoint `i` and waits for the response head, at most the
    /// request timeout and never past `deadline` (the time the client left us, when a
    /// peer region said so).
    pub(crate) async fn send(
        &self,
        i: usize,
        req: Outgoing<'_>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Answer, ProxyError> {
        let endpoint = self.set.get(i).ok_or(ProxyError::NoEndpoint)?.authority.clone();
        let budget = self.budget(deadline);
        if budget.is_zero() {
            return Err(ProxyError::Timeout);
        }
        let _load = self.set.start(i);
        // One clock read starts the attempt, its deadline and the pool's idle check.
        let t0 = tokio::time::Instant::now();
        // Built in the call: a future held in a local first is moved (copied) once more.
        let result = match tokio::time::timeout_at(
            t0 + budget,
            self.exchange(endpoint, i, req, t0.into_std()),
        )
        .await
        {
            Ok(Ok(response)) => {
                let at = tokio::time::Instant::now();
                Ok(Answer { response, latency: at.saturating_duration_since(t0), at })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ProxyError::Timeout),
        };
        let ok = match &result {
            Ok(a) => !a.response.status().is_server_error(),
            Err(_) => false,
        };
        self.set.record(i, ok);
        result
    }
}

impl Upstream {
    /// One request and its response head, over this set's pool. A protocol switch goes
    /// through hyper-util's client even in the clear: the tunnel needs hyper's upgrade.
    async fn exchange(
        &self,
        endpoint: Authority,
        i: usize,
        out: Outgoing<'_>,
        now: Instant,
    ) -> Result<Response<UpstreamResponse>, ProxyError> {
        let upgrade = out.is_upgrade();
        if let Some(pool) = self.h1.as_ref().filter(|_| !upgrade) {
            // The pool writes the head as `retarget` would leave it: origin-form, HTTP/1.1,
            // and the client's authority as `Host` when it sent none.
            let sent = match out {
                Outgoing::Head { head, body, next_hop, fields, .. } => {
                    pool.send(i, &endpoint, head, body, Wants { next_hop, fields }, now).await
                }
                Outgoing::Made(req) => {
                    let (head, body) = (*req).into_parts();
                    pool.send(i, &endpoint, &head, body, Wants::default(), now).await
                }
            };
            return sent.map(|r| r.map(UpstreamResponse::Wire));
        }
        let mut req = out.into_request();
        retarget(&mut req, &endpoint, self.protocol, &self.scheme)?;
        if let Some(pool) = self.h2.as_ref().filter(|_| !upgrade) {
            return pool.send(i, &endpoint, req).await.map(|r| r.map(UpstreamResponse::Hyper));
        }
        // Boxed: hyper-util's future is large, and would make every send larger.
        Box::pin(self.client().request(req)).await.map(|r| r.map(UpstreamResponse::Hyper)).map_err(|e| {
            let err = ProxyError::from_client(&e);
            tracing::debug!(error = ?e, code = err.code(), "upstream request failed");
            err
        })
    }
}

/// Points a request at an endpoint, keeping the client's host for HTTP/1.1 upstreams.
fn retarget(
    req: &mut Request<UpstreamBody>,
    endpoint: &Authority,
    protocol: Protocol,
    scheme: &Scheme,
) -> Result<(), ProxyError> {
    if protocol == Protocol::Http1
        && !req.headers().contains_key(http::header::HOST)
        && let Some(a) = req.uri().authority()
    {
        // HTTP/2 clients name the host in the URI only; an HTTP/1.1 upstream needs `Host`.
        let host = HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::BadRequest)?;
        req.headers_mut().insert(http::header::HOST, host);
    }
    let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    // hyper-util's client wants the endpoint in the URI (it writes origin-form itself), and
    // the HTTP/2 pool sends it as `:authority`; the own HTTP/1.1 pool does without this.
    parts.scheme = Some(scheme.clone());
    parts.authority = Some(endpoint.clone());
    parts.path_and_query = Some(path);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest)?;
    *req.version_mut() = match protocol {
        Protocol::Http1 => Version::HTTP_11,
        Protocol::Http2 => Version::HTTP_2,
    };
    Ok(())
}

/// What a health probe saw.
#[derive(Debug)]
pub(crate) struct ProbeAnswer {
    pub(crate) status: http::StatusCode,
    /// The answer came from a flowgate proxy (it names its region), not from whatever
    /// stands in front of it.
    pub(crate) from_flowgate: bool,
    pub(crate) body: Bytes,
    pub(crate) latency: Duration,
}

/// Largest probe answer read; health documents are small.
const MAX_PROBE_BODY: usize = 64 * 1024;

impl Upstream {
    /// `GET path` on endpoint `i` over the set's own pool, so that probes keep the
    /// connections warm that requests will use. Does not count as passive health.
    pub(crate) async fn probe(
        &self,
        i: usize,
        path: &str,
        timeout: Duration,
    ) -> Result<ProbeAnswer, ProxyError> {
        self.fetch(i, path, timeout, MAX_PROBE_BODY).await
    }

    /// GET `path` from endpoint `i`, reading at most `limit` bytes of the answer (a body
    /// cut at the limit reads as empty).
    pub(crate) async fn fetch(
        &self,
        i: usize,
        path: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<ProbeAnswer, ProxyError> {
        use http_body_util::BodyExt;
        let endpoint = self.set.get(i).ok_or(ProxyError::NoEndpoint)?.authority.clone();
        let mut req = Request::new(UpstreamBody::kept(Bytes::new()));
        *req.uri_mut() = Uri::try_from(path).map_err(|_| ProxyError::BadRequest)?;
        let host = HeaderValue::from_str(endpoint.as_str()).map_err(|_| ProxyError::BadRequest)?;
        req.headers_mut().insert(http::header::HOST, host);
        req.headers_mut().insert(http::header::USER_AGENT, HeaderValue::from_static("flowgate-health"));
        let t0 = Instant::now();
        let work = async {
            let resp = self.exchange(endpoint, i, Outgoing::Made(Box::new(req)), t0).await?;
            let status = resp.status();
            let from_flowgate = resp.headers().contains_key(&X_FLOWGATE_REGION);
            let limited = http_body_util::Limited::new(resp.into_body(), limit);
            let body = limited.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            Ok::<_, ProxyError>(ProbeAnswer { status, from_flowgate, body, latency: Duration::ZERO })
        };
        let mut answer = tokio::time::timeout(timeout, work).await.map_err(|_| ProxyError::Timeout)??;
        answer.latency = t0.elapsed();
        Ok(answer)
    }
}

/// A whole probe exchange: the head, the body and the trailers (gRPC puts its status there).
#[derive(Debug)]
pub(crate) struct ProbeExchange {
    pub(crate) status: http::StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) trailers: Option<http::HeaderMap>,
}

impl Upstream {
    /// Sends `req` (its URI a path) to endpoint `i` over the set's own pool, like `probe`,
    /// and reads the whole answer within `timeout`: at most `limit` bytes of body (more is
    /// an error), then the trailers. Does not count as passive health.
    pub(crate) async fn probe_exchange(
        &self,
        i: usize,
        req: Request<Bytes>,
        timeout: Duration,
        limit: usize,
    ) -> Result<ProbeExchange, ProxyError> {
        use http_body_util::BodyExt;
        let endpoint = self.set.get(i).ok_or(ProxyError::NoEndpoint)?.authority.clone();
        let req = req.map(UpstreamBody::kept);
        let work = async {
            let resp = self.exchange(endpoint, i, Outgoing::Made(Box::new(req)), Instant::now()).await?;
            let (head, body) = resp.into_parts();
            let collected = http_body_util::Limited::new(body, limit)
                .collect()
                .await
                .map_err(|_| ProxyError::UpstreamReset)?;
            let trailers = collected.trailers().cloned();
            Ok::<_, ProxyError>(ProbeExchange {
                status: head.status,
                headers: head.headers,
                body: collected.to_bytes(),
                trailers,
            })
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| ProxyError::Timeout)?
    }
}
