//! The admin API as tests use it: reads (`/v1/status`, `/v1/table`, `/metrics`, ...),
//! table pushes, and Prometheus text sums. One version of each, for in-process proxies and
//! processes alike (both are reached by their admin address).
//!
//! The panicking helpers are for proxies that must answer; the `try_` ones return `None`
//! when a proxy does not answer in time (stopped, killed, cut off), for polling.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;

use super::h1_client;
use super::wait::{POLL, wait_for_every};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long an admin call may take before a helper gives up on it.
const ANSWER_IN: Duration = Duration::from_secs(10);
/// How long a `try_` read waits for its answer.
const TRY_IN: Duration = Duration::from_secs(2);

/// Sends `req` on a fresh client: status, headers and the whole body.
pub async fn request(req: Request<Full<Bytes>>) -> (u16, HeaderMap, Bytes) {
    let what = format!("{} {}", req.method(), req.uri());
    let resp = tokio::time::timeout(ANSWER_IN, h1_client().request(req))
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER_IN:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap_or_else(|e| panic!("{what}: body: {e}")).to_bytes();
    (status, headers, body)
}

/// `GET url`: status and body as text (whatever the status).
pub async fn get_text(url: &str) -> (u16, String) {
    let req = Request::get(url).body(Full::new(Bytes::new())).expect("request");
    let (status, _, body) = request(req).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `GET path` of an admin listener, which must answer 200 with JSON.
pub async fn get_json(admin: SocketAddr, path: &str) -> Value {
    let (status, text) = get_text(&format!("http://{admin}{path}")).await;
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
}

/// `GET /v1/status`.
pub async fn status(admin: SocketAddr) -> Value {
    get_json(admin, "/v1/status").await
}

/// `GET /v1/table`.
pub async fn table(admin: SocketAddr) -> Value {
    get_json(admin, "/v1/table").await
}

/// The version of the table in force (`GET /v1/table`).
pub async fn version(admin: SocketAddr) -> u64 {
    table(admin).await["version"].as_u64().unwrap_or(0)
}

/// `GET /metrics`, which must answer 200.
pub async fn metrics(admin: SocketAddr) -> String {
    let (status, text) = get_text(&format!("http://{admin}/metrics")).await;
    assert_eq!(status, 200, "GET /metrics: {text}");
    text
}

/// One metric of `/metrics`, summed as `metric_sum` does.
pub async fn metric(admin: SocketAddr, name: &str, parts: &[&str]) -> f64 {
    metric_sum(&metrics(admin).await, name, parts)
}

/// `GET url` as JSON, or `None` when nothing answers within 2 s or the answer is not JSON.
pub async fn try_get_json(url: &str) -> Option<Value> {
    try_get_json_with(&h1_client(), url).await
}

/// `try_get_json` on a client of the caller's (to ask many proxies at once).
pub async fn try_get_json_with(client: &HttpClient, url: &str) -> Option<Value> {
    let resp = tokio::time::timeout(TRY_IN, client.get(url.parse().ok()?)).await.ok()?.ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

/// `GET /readyz`: its status, 0 when nothing answers within 2 s.
pub async fn readyz(admin: SocketAddr) -> u16 {
    let url = format!("http://{admin}/readyz");
    match tokio::time::timeout(TRY_IN, h1_client().get(url.parse().expect("url"))).await {
        Ok(Ok(r)) => r.status().as_u16(),
        _ => 0,
    }
}

/// Whether a `/v1/status` shows the proxy ready and every target healthy.
pub fn ready_and_healthy(status: &Value) -> bool {
    status["ready"] == true
        && status["targets"].as_object().is_some_and(|t| t.values().all(|v| v["healthy"] == true))
}

/// Waits until every proxy of `admins` has sent each endpoint it probes at least two more
/// probes (so one answered after the whole fleet was listening) and shows itself ready
/// with every target healthy: the first verdicts are in. At most `limit`.
pub async fn wait_probed_and_healthy(admins: &[SocketAddr], limit: Duration) {
    let probes = |m: &str| metric_sum(m, "flowgate_probes_total", &[]);
    let mut base = Vec::new();
    for a in admins {
        base.push(probes(&metrics(*a).await));
    }
    let base = &base;
    wait_for_every(
        "every proxy to probe its peers again and see every target healthy",
        limit,
        POLL * 5,
        || async move {
            for (a, before) in admins.iter().zip(base) {
                let m = metrics(*a).await;
                let endpoints = m.lines().filter(|l| l.starts_with("flowgate_endpoint_healthy{")).count();
                let sent = probes(&m) - before;
                if sent < 2.0 * endpoints as f64 {
                    return Err(format!("{a}: {sent} probes since the start for {endpoints} endpoints"));
                }
                let st = status(*a).await;
                if !ready_and_healthy(&st) {
                    return Err(format!("{a}: {st}"));
                }
            }
            Ok(())
        },
    )
    .await
}

/// A `PUT /v1/table`, built up: a bearer token, a content type (JSON unless told), an
/// `If-Match`.
pub struct Push {
    admin: SocketAddr,
    token: Option<String>,
    content_type: Option<String>,
    if_match: Option<String>,
}

/// A push to `admin`, as JSON and with no token yet.
pub fn push(admin: SocketAddr) -> Push {
    Push { admin, token: None, content_type: Some("application/json".to_owned()), if_match: None }
}

impl Push {
    pub fn token(mut self, token: &str) -> Push {
        self.token = Some(token.to_owned());
        self
    }

    /// The token when there is one (`None`: no `Authorization` header).
    pub fn token_opt(mut self, token: Option<&str>) -> Push {
        self.token = token.map(str::to_owned);
        self
    }

    /// `None`: no `Content-Type` header at all.
    pub fn content_type(mut self, content_type: Option<&str>) -> Push {
        self.content_type = content_type.map(str::to_owned);
        self
    }

    pub fn if_match(mut self, if_match: Option<&str>) -> Push {
        self.if_match = if_match.map(str::to_owned);
        self
    }

    /// Sends `body`: the status, the answer as JSON (`Value::Null` when it is not JSON)
    /// and the headers.
    pub async fn send(self, body: impl Into<Bytes>) -> (u16, Value, HeaderMap) {
        let mut req = Request::put(format!("http://{}/v1/table", self.admin));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = &self.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(m) = &self.if_match {
            req = req.header("if-match", m);
        }
        let (status, headers, body) = request(req.body(Full::new(body.into())).expect("request")).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null), headers)
    }
}

/// Pushes `table` as JSON with `token`: status and answer.
pub async fn put(admin: SocketAddr, token: &str, table: &Value) -> (u16, Value) {
    put_str(admin, token, &table.to_string()).await
}

/// Pushes a table given as text (which may be invalid on purpose).
pub async fn put_str(admin: SocketAddr, token: &str, table: &str) -> (u16, Value) {
    let (status, answer, _) = push(admin).token(token).send(table.to_owned()).await;
    (status, answer)
}

/// The value of a metric line in Prometheus text (`name{labels} value`), summed over
/// every line whose name and labels contain all of `parts`.
pub fn metric_sum(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}
