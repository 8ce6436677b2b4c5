//! The HTTP/1.1 upstream pool: connections are reused, and an origin that closes them
//! (idle timeout, `Connection: close`, a response abandoned by the client) never costs a
//! client request.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use support::wait::within;
use support::{TestProxy, config_text, h1_client};
use tokio::net::TcpListener;

use support::admin::HttpClient;

/// An HTTP/1.1 origin that counts the connections that carried client requests (health
/// probes at `/healthz` alone do not count a connection).
struct CountingOrigin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
    /// Health probes answered (their whole answer handed to the connection).
    probes_answered: Arc<AtomicUsize>,
}

/// `idle_close`: the origin closes a connection that has waited this long for a request.
/// `close_every`: it answers `Connection: close` (and closes) on every such request.
async fn counting_origin(idle_close: Duration, close_every: bool) -> CountingOrigin {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let probes = Arc::new(AtomicUsize::new(0));
    let probes_answered = Arc::new(AtomicUsize::new(0));
    let (count, probed, answered) = (accepted.clone(), probes.clone(), probes_answered.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (count, probed, answered) = (count.clone(), probed.clone(), answered.clone());
            tokio::spawn(async move {
                let counted = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let svc = service_fn(move |req: Request<Incoming>| {
                    let probe = req.uri().path() == "/healthz";
                    if probe {
                        probed.fetch_add(1, Ordering::SeqCst);
                    } else if !counted.swap(true, Ordering::SeqCst) {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    let answered = answered.clone();
                    async move {
                        let _answered = probe.then(|| Answered(answered));
                        let big = req.uri().path() == "/big";
                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let body = if big { Bytes::from(vec![b'x'; 4 << 20]) } else { body };
                        let mut resp = Response::new(Full::new(body));
                        if close_every {
                            resp.headers_mut().insert("connection", "close".parse().expect("value"));
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(idle_close)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    CountingOrigin { addr, accepted, probes, probes_answered }
}

/// Counts a probe as answered when its handler is done.
struct Answered(Arc<AtomicUsize>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A proxy in front of `origin`, once its first health probe is done: probes share the
/// pool, and one in flight when a test starts would take a connection of its own.
async fn proxy_for(origin: &CountingOrigin, extra: &str) -> TestProxy {
    let proxy =
        TestProxy::start(&config_text(origin.addr, &format!("[health]\ninterval = \"1h\"\n{extra}"))).await;
    within(Duration::from_secs(2), || async { origin.probes_answered.load(Ordering::SeqCst) > 0 }).await;
    assert!(origin.probes.load(Ordering::SeqCst) > 0, "no health probe within 2 s");
    // The proxy reads the probe's answer and puts the connection back in its pool a moment
    // after the origin's handler is done; nothing outside the proxy shows when, so a grace.
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy
}

/// `n` POSTs of `body` to `path`, one after the other, each echoed whole; `gap` between
/// them (`None`: none).
async fn posts(
    client: &HttpClient,
    proxy: &TestProxy,
    path: &str,
    body: &'static str,
    n: usize,
    gap: Option<Duration>,
) {
    for i in 0..n {
        let (status, got) = post(client, &proxy.url(path), body).await;
        assert_eq!((status, &got[..]), (StatusCode::OK, body.as_bytes()), "request {i}");
        if let Some(gap) = gap {
            // Idle between requests: the gap is the test.
            tokio::time::sleep(gap).await;
        }
    }
}

async fn post(client: &HttpClient, url: &str, body: &'static str) -> (StatusCode, Bytes) {
    let req =
        Request::builder().method(Method::POST).uri(url).body(Full::new(Bytes::from_static(body.as_bytes())));
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req.expect("request")))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = resp.status();
    (status, resp.into_body().collect().await.expect("body").to_bytes())
}

#[tokio::test]
async fn sequential_and_concurrent_requests_reuse_connections() {
    let origin = counting_origin(Duration::from_secs(60), false).await;
    let proxy = proxy_for(&origin, "").await;
    let client = h1_client();
    posts(&client, &proxy, "/x", "hello", 200, None).await;
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 1, "200 sequential requests, one connection");
    for _ in 0..10 {
        let rounds = (0..16).map(|_| {
            let (client, url) = (client.clone(), proxy.url("/y"));
            tokio::spawn(async move { post(&client, &url, "abc").await })
        });
        for r in futures_util::future::join_all(rounds).await {
            assert_eq!(r.expect("task").0, StatusCode::OK);
        }
    }
    let n = origin.accepted.load(Ordering::SeqCst);
    assert!(n <= 17, "16 concurrent clients over 10 rounds opened {n} connections");
    proxy.stop().await;
}

#[tokio::test]
async fn connections_the_origin_closed_are_not_used() {
    // The origin drops connections idle for 50 ms; requests come every 150 ms, so each
    // finds its pooled connection closed and must not fail for it, POST included.
    let origin = counting_origin(Duration::from_millis(50), false).await;
    let proxy = proxy_for(&origin, "").await;
    // Idle past the origin's 50 ms between requests.
    posts(&h1_client(), &proxy, "/p", "data", 10, Some(Duration::from_millis(150))).await;
    assert!(origin.accepted.load(Ordering::SeqCst) >= 10, "the origin closed every idle connection");
    proxy.stop().await;
}

#[tokio::test]
async fn connection_close_answers_are_followed() {
    let origin = counting_origin(Duration::from_secs(60), true).await;
    let proxy = proxy_for(&origin, "").await;
    posts(&h1_client(), &proxy, "/c", "close", 50, None).await;
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 50, "one connection per `Connection: close` answer");
    proxy.stop().await;
}

#[tokio::test]
async fn idle_connections_expire_after_upstream_idle() {
    let origin = counting_origin(Duration::from_secs(60), false).await;
    let proxy = proxy_for(&origin, "[timeouts]\nupstream_idle = \"200ms\"\n").await;
    let client = h1_client();
    post(&client, &proxy.url("/a"), "1").await;
    post(&client, &proxy.url("/a"), "2").await;
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 1);
    // Idle past `upstream_idle` (200 ms): waiting it out is the test.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = post(&client, &proxy.url("/a"), "3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 2, "an expired connection was reused");
    proxy.stop().await;
}

#[tokio::test]
async fn a_response_abandoned_by_its_client_does_not_poison_the_pool() {
    let origin = counting_origin(Duration::from_secs(60), false).await;
    let proxy = proxy_for(&origin, "").await;
    for _ in 0..5 {
        // A client reads the head of a 4 MiB answer, then goes away.
        let client = h1_client();
        let resp = client.get(proxy.url("/big").parse().expect("url")).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        drop(resp);
        drop(client);
        // Every later request is served whole.
        posts(&h1_client(), &proxy, "/after", "fine", 5, None).await;
    }
    proxy.stop().await;
}
