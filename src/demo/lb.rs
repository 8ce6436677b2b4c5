//! The demo's stand-in for a region's load balancer: it spreads requests over the
//! region's proxies' peer listeners, and can be "crushed" (every answer delayed), which
//! is what makes the other regions' proxies bypass it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running demo load balancer.
pub(crate) struct DemoLb {
    pub(crate) addr: SocketAddr,
    crushed: Arc<AtomicBool>,
}

/// The delay a crushed load balancer adds to every answer.
pub(crate) const CRUSHED_DELAY: Duration = Duration::from_millis(400);

impl DemoLb {
    /// Listens now; forwards to `backends` (the region's peer listeners, h2c).
    pub(crate) async fn start(backends: Vec<SocketAddr>) -> std::io::Result<DemoLb> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let crushed = Arc::new(AtomicBool::new(false));
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).http2_only(true).build_http();
        let next = Arc::new(AtomicUsize::new(0));
        let backends = Arc::new(backends);
        let crushed2 = crushed.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (client, next, backends, crushed) =
                    (client.clone(), next.clone(), backends.clone(), crushed2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (client, next, backends, crushed) =
                            (client.clone(), next.clone(), backends.clone(), crushed.clone());
                        async move { Ok::<_, Infallible>(forward(req, &client, &next, &backends, &crushed).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(DemoLb { addr, crushed })
    }

    pub(crate) fn crush(&self, on: bool) {
        self.crushed.store(on, Ordering::Relaxed);
    }
}

async fn forward(
    mut req: Request<Incoming>,
    client: &Client<HttpConnector, Incoming>,
    next: &AtomicUsize,
    backends: &[SocketAddr],
    crushed: &AtomicBool,
) -> Response<BoxBody<Bytes, BoxError>> {
    if crushed.load(Ordering::Relaxed) {
        tokio::time::sleep(CRUSHED_DELAY).await;
    }
    let Some(backend) = backends.get(next.fetch_add(1, Ordering::Relaxed) % backends.len().max(1)) else {
        return error(StatusCode::SERVICE_UNAVAILABLE);
    };
    let pq = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let Ok(uri) = format!("http://{backend}{pq}").parse() else { return error(StatusCode::BAD_REQUEST) };
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_2;
    match client.request(req).await {
        Ok(resp) => resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()),
        Err(_) => error(StatusCode::BAD_GATEWAY),
    }
}

fn error(status: StatusCode) -> Response<BoxBody<Bytes, BoxError>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"lb error\n")).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r
}
