//! The demo's origins: a small HTTP server per region that answers with its region after a
//! little latency, and counts what it served.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// A running demo origin.
pub struct DemoOrigin {
    pub addr: SocketAddr,
    /// Client requests served (health probes not counted).
    pub served: Arc<AtomicU64>,
}

impl DemoOrigin {
    pub async fn start(region: &str) -> std::io::Result<DemoOrigin> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let body = Bytes::from(format!("hello from {region}\n"));
        let served2 = served.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (served, body) = (served2.clone(), body.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (served, body) = (served.clone(), body.clone());
                        async move {
                            if req.uri().path() != "/healthz" {
                                served.fetch_add(1, Ordering::Relaxed);
                                // A little work, so latencies look like a service's.
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(body)))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(DemoOrigin { addr, served })
    }
}
