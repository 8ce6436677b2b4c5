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
use tokio_util::sync::CancellationToken;

/// A running demo origin.
pub(crate) struct DemoOrigin {
    pub(crate) addr: SocketAddr,
    /// Client requests served (health probes not counted).
    pub(crate) served: Arc<AtomicU64>,
    /// Fired by `kill`: the listener closes and every connection drops.
    dead: CancellationToken,
}

impl DemoOrigin {
    pub(crate) async fn start(region: &str) -> std::io::Result<DemoOrigin> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let body = Bytes::from(format!("hello from {region}\n"));
        let served2 = served.clone();
        let dead = CancellationToken::new();
        let dead2 = dead.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    // The listener is dropped with this task: new connections are refused.
                    _ = dead2.cancelled() => return,
                };
                let Ok((stream, _)) = accepted else { return };
                let (served, body, dead) = (served2.clone(), body.clone(), dead2.clone());
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
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = dead.cancelled() => {}
                    }
                });
            }
        });
        Ok(DemoOrigin { addr, served, dead })
    }

    /// The origin process dies: it stops listening and drops every open connection.
    pub(crate) fn kill(&self) {
        self.dead.cancel();
    }
}
