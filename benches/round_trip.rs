//! Criterion bench of a whole proxied exchange, in one process over loopback:
//!
//! - `round_trip/get_1k`: a keep-alive HTTP/1.1 client sends `GET /`, flowgate (the real
//!   server: listener, watchdog, routing, table, upstream pool, header rewrite, metrics)
//!   forwards it to an origin that answers 1 KiB, and the client reads the whole answer.
//! - `round_trip/direct_1k`: the same client straight to the origin, the floor that the
//!   proxy's cost sits on.
//!
//! Everything runs on one current-thread runtime, so the figure is the CPU cost of an
//! exchange (both ends included) rather than of scheduling across cores.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use flowgate::config::Config;
use flowgate::server::Server;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("origin address");
    let body = Bytes::from(vec![b'a'; 1024]);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn proxy(origin: SocketAddr) -> SocketAddr {
    let text = format!(
        r#"
region = "bench"
[listen]
public = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[origins.origin]
endpoints = ["{origin}"]
max_concurrency = 100000
[[routes]]
origin = "origin"
[log]
level = "error"
"#
    );
    let cfg = Config::from_toml(Path::new("bench.toml"), &text).expect("bench config");
    let server = Server::bind(cfg).await.expect("bind flowgate");
    let addr = server.addrs().public;
    tokio::spawn(server.run(std::future::pending()));
    addr
}

fn bench_round_trip(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (direct, proxied) = rt.block_on(async {
        let o = origin().await;
        (o, proxy(o).await)
    });
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let rt = &rt;
    let exchange = |addr: SocketAddr| {
        let uri: http::Uri = format!("http://{addr}/").parse().expect("uri");
        let client = client.clone();
        move || {
            rt.block_on(async {
                let resp = client.get(uri.clone()).await.expect("answer");
                assert_eq!(resp.status(), 200);
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert_eq!(body.len(), 1024);
            })
        }
    };
    let mut proxied_exchange = exchange(proxied);
    // The first exchange opens the connections (client and upstream) outside the timing.
    proxied_exchange();
    c.bench_function("round_trip/get_1k", |b| b.iter(&mut proxied_exchange));
    let mut direct_exchange = exchange(direct);
    direct_exchange();
    c.bench_function("round_trip/direct_1k", |b| b.iter(&mut direct_exchange));
}

criterion_group!(benches, bench_round_trip);
criterion_main!(benches);
