//! The admin listener: health, readiness, metrics and the control endpoint.
//!
//! Routes:
//! - `GET /`: the live HTML dashboard ([`dashboard`]): region, table version, rates,
//!   shares, health and bypass per target, the last table changes; rendered here so that
//!   it reads without JavaScript, kept live by its script polling the JSON routes below.
//! - `GET /healthz`, `GET /livez`: 200 while the process runs.
//! - `GET /readyz`: 200 when ready for traffic, 503 while starting or draining.
//! - `GET /metrics`: Prometheus text format.
//! - `GET /v1/table`: the table in force. `PUT /v1/table`: apply one (bearer token).
//! - `GET /v1/table/history`: the last applied tables, newest first;
//!   `GET /v1/table/history/VERSION`: one of them, whole.
//! - `GET /v1/status[?window=SECONDS]`: region, table version, readiness, rps and error
//!   ratio over the last minute (or the window asked for, 1 to 60 s), the client traffic
//!   arriving here (`source_rps`), and per target region its health, endpoints, mode and
//!   bypass.
//! - `GET /v1/dashboard/history`: the dashboard's samples of the last 15 minutes.

mod api;
pub(crate) mod auth;
mod dashboard;
mod status;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::control::Control;
use auth::Tokens;

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// Whether this proxy should get traffic; load balancers poll it through `/readyz`.
#[derive(Debug, Default)]
pub(crate) struct Readiness(AtomicU8);

impl Readiness {
    pub(crate) fn set_ready(&self) {
        let _ = self.0.compare_exchange(STARTING, READY, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub(crate) fn set_draining(&self) {
        self.0.store(DRAINING, Ordering::SeqCst);
    }

    pub(crate) fn state(&self) -> &'static str {
        match self.0.load(Ordering::SeqCst) {
            STARTING => "starting",
            READY => "ready",
            _ => "draining",
        }
    }
}

/// What the admin routes work with.
pub(crate) struct AdminState {
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) control: Arc<Control>,
    pub(crate) tokens: Tokens,
    pub(crate) started: std::time::Instant,
    /// The dashboard's samples of the last minutes (`GET /v1/dashboard/history`).
    pub(crate) dashboard: dashboard::SampleRing,
}

/// Serves the admin routes until `stop` fires.
pub(crate) async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    tokio::spawn(dashboard::sample_every_second(state.clone(), stop.clone()));
    loop {
        let (stream, remote) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (state, builder, stop) = (state.clone(), builder.clone(), stop.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(req, &state, remote).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

async fn route(
    req: Request<Incoming>,
    state: &AdminState,
    remote: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let read = req.method() == Method::GET || req.method() == Method::HEAD;
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (_, "/") if read => dashboard::response(state),
        (_, "/healthz" | "/livez") if read => text(StatusCode::OK, "ok\n"),
        (_, "/readyz") if read => match state.readiness.state() {
            "ready" => text(StatusCode::OK, "ready\n"),
            "starting" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        },
        (_, "/metrics") if read => {
            let body = state.control.shared.metrics.render();
            with_type(Response::new(Full::new(Bytes::from(body))), "text/plain; version=0.0.4; charset=utf-8")
        }
        (_, "/v1/dashboard/history") if read => dashboard::history_response(state),
        (_, "/v1/table") if read => api::get_table(state),
        (Method::PUT, "/v1/table") => api::put_table(req, state, remote).await,
        (_, "/v1/table/history") if read => {
            let history: Vec<crate::wire::HistoryEntry> =
                state.control.history().iter().map(|h| h.wire()).collect();
            api::json(StatusCode::OK, &history)
        }
        (_, "/v1/status") if read => {
            let window = status::window_param(req.uri().query());
            api::json(StatusCode::OK, &status::status(state, window))
        }
        (_, p) if read && p.starts_with("/v1/table/history/") => {
            match p["/v1/table/history/".len()..]
                .parse::<u64>()
                .ok()
                .and_then(|v| state.control.history_table(v))
            {
                Some(t) => api::json(StatusCode::OK, &*t),
                None => text(StatusCode::NOT_FOUND, "no such version in the history\n"),
            }
        }
        (
            _,
            "/"
            | "/healthz"
            | "/livez"
            | "/readyz"
            | "/metrics"
            | "/v1/table"
            | "/v1/table/history"
            | "/v1/status"
            | "/v1/dashboard/history",
        ) => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            let allow = if path == "/v1/table" { "GET, HEAD, PUT" } else { "GET, HEAD" };
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn with_type(mut r: Response<Full<Bytes>>, content_type: &'static str) -> Response<Full<Bytes>> {
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    with_type(r, "text/plain; charset=utf-8")
}
