//! A real origin for tests: a hyper server (HTTP/1.1 and h2c) on 127.0.0.1:0.
//!
//! Paths:
//! - `/headers`: JSON object of the request headers (values joined with ", ").
//! - `/echo`: streams the request body back (works for chunked uploads).
//! - `/count`: reads the whole body in a stream, answers its length in bytes.
//! - `/bytes/N`: streams N bytes in 64 KiB chunks, without holding them all.
//! - `/slow/MS`: answers after MS milliseconds.
//! - `/status/N`: answers status N (e.g. 503), body `status N`.
//! - `/hang`: never answers.
//! - `/trailers`: body `hello` then trailers `grpc-status: 0`, `grpc-message: ok`.
//! - `/ws`: WebSocket echo.
//! - anything else: `ok`.
//!
//! `fail_with(N)` makes every client request (not `/healthz`) answer status N until
//! `fail_with(0)`: an origin that is up, passes its health checks and serves errors.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub struct Origin {
    pub addr: SocketAddr,
    /// Client requests received so far (health probes at `/healthz` not counted).
    pub hits: Arc<AtomicUsize>,
    /// Requests being answered right now (probes not counted).
    pub active: Arc<AtomicUsize>,
    /// The most requests ever answered at once.
    pub peak: Arc<AtomicUsize>,
    /// When not 0, the status every client request gets (see `fail_with`).
    fail: Arc<AtomicU16>,
    /// Percent of client requests that get `fail` (100 unless `fail_share` says less).
    fail_percent: Arc<AtomicU16>,
    /// The accept loop and every connection task, so that `kill` can end them all.
    tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

/// Starts an origin that serves until the test ends (or `kill`).
pub async fn start() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("addr");
    let o = Origin {
        addr,
        hits: Arc::new(AtomicUsize::new(0)),
        active: Arc::new(AtomicUsize::new(0)),
        peak: Arc::new(AtomicUsize::new(0)),
        fail: Arc::new(AtomicU16::new(0)),
        fail_percent: Arc::new(AtomicU16::new(100)),
        tasks: Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new())),
    };
    o.serve(listener);
    o
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Origin {
    fn serve(&self, listener: TcpListener) {
        let (hits, active, peak, tasks) =
            (self.hits.clone(), self.active.clone(), self.peak.clone(), self.tasks.clone());
        let (fail, percent) = (self.fail.clone(), self.fail_percent.clone());
        let tasks2 = tasks.clone();
        tasks.lock().expect("tasks").spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (hits, active, peak, fail, percent) =
                    (hits.clone(), active.clone(), peak.clone(), fail.clone(), percent.clone());
                tasks2.lock().expect("tasks").spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        // The proxy's health probes are not client requests.
                        let probe = req.uri().path() == "/healthz";
                        let mut failing = if probe { 0 } else { fail.load(Ordering::SeqCst) };
                        let guard = (!probe).then(|| {
                            // Spread evenly: request n fails when n mod 100 is under the share.
                            let n = hits.fetch_add(1, Ordering::SeqCst);
                            if (n % 100) as u16 >= percent.load(Ordering::SeqCst) {
                                failing = 0;
                            }
                            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            ActiveGuard(active.clone())
                        });
                        async move {
                            let r = match StatusCode::from_u16(failing) {
                                Ok(status) if failing != 0 => {
                                    let mut r = Response::new(full(format!("injected {failing}")));
                                    *r.status_mut() = status;
                                    Ok(r)
                                }
                                _ => handle(req).await,
                            };
                            drop(guard);
                            r
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }

    /// From now on every client request (health probes excepted) is answered with
    /// `status`; 0 goes back to normal.
    pub fn fail_with(&self, status: u16) {
        self.fail_percent.store(100, Ordering::SeqCst);
        self.fail.store(status, Ordering::SeqCst);
    }

    /// From now on `percent` of client requests (evenly spread) get `status`, the rest
    /// are served; health probes pass. `fail_with(0)` ends it.
    pub fn fail_share(&self, status: u16, percent: u16) {
        self.fail_percent.store(percent.min(100), Ordering::SeqCst);
        self.fail.store(status, Ordering::SeqCst);
    }

    /// Stops listening and drops every open connection: to its clients the origin is gone.
    pub fn kill(&self) {
        self.tasks.lock().expect("tasks").abort_all();
    }

    /// Listens again on the same address after `kill`.
    pub async fn revive(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind origin");
        self.serve(listener);
    }
}

/// An address where nothing listens: connections to it are refused.
pub async fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into()).map_err(|e| match e {}).boxed()
}

pub fn headers_json(h: &HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for name in h.keys() {
        let joined: Vec<String> =
            h.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
        map.insert(name.to_string(), joined.join(", ").into());
    }
    map.into()
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = if path == "/headers" {
        Response::new(full(headers_json(req.headers()).to_string()))
    } else if path == "/echo" {
        let body =
            req.into_body().map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>).boxed();
        Response::new(body)
    } else if path == "/count" {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
                Err(_) => break,
            }
        }
        Response::new(full(n.to_string()))
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let total: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(chunk.len() as u64);
                Some((
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(chunk.slice(..n as usize))),
                    left - n,
                ))
            }
        });
        let mut r = Response::new(BoxBody::new(StreamBody::new(stream)));
        r.headers_mut().insert("content-length", HeaderValue::from(total));
        r
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        // An origin that answers late, by as much as the path asks: the delay is the test's.
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        Response::new(full("slow ok"))
    } else if let Some(code) = path.strip_prefix("/status/") {
        let status = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::OK);
        let mut r = Response::new(full(format!("status {}", status.as_u16())));
        *r.status_mut() = status;
        r
    } else if path == "/hang" {
        std::future::pending::<()>().await;
        Response::new(full(""))
    } else if path == "/trailers" {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("ok"));
        let frames = vec![
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut r = Response::new(BoxBody::new(StreamBody::new(futures_util::stream::iter(frames))));
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
        r
    } else if path == "/ws" {
        let key = req.headers().get("sec-websocket-key").cloned();
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                let (mut tx, mut rx) = ws.split();
                while let Some(Ok(msg)) = rx.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if tx.send(msg).await.is_err() {
                            break;
                        }
                    } else if msg.is_close() {
                        break;
                    }
                }
            }
        });
        let accept = key
            .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()))
            .unwrap_or_default();
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", HeaderValue::from_static("websocket"));
        r.headers_mut().insert("connection", HeaderValue::from_static("upgrade"));
        r.headers_mut().insert("sec-websocket-accept", HeaderValue::from_str(&accept).expect("accept key"));
        r
    } else {
        Response::new(full("ok"))
    };
    Ok(resp)
}
