//! GET, POST with a body and a chunked (streamed, no
//! content-length) upload round-trip through the `public` listener over HTTP/1.1, h2c
//! with prior knowledge, TLS with ALPN `h2` and TLS with ALPN `http/1.1`; response
//! trailers (as gRPC uses them) arrive over HTTP/2.

mod support;

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};
use support::{ProxyConfig, TestProxy, config_text, origin};
use tokio::net::TcpStream;
use tokio::time::timeout;

type BoxError = Box<dyn StdError + Send + Sync>;
type TestBody = BoxBody<Bytes, BoxError>;

/// Every network wait in this file is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

/// How the client reaches the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    H1,
    H2c,
    TlsH2,
    TlsH1,
}

impl Transport {
    fn version(self) -> Version {
        match self {
            Transport::H1 | Transport::TlsH1 => Version::HTTP_11,
            Transport::H2c | Transport::TlsH2 => Version::HTTP_2,
        }
    }

    fn alpn(self) -> Option<&'static [u8]> {
        match self {
            Transport::TlsH2 => Some(b"h2"),
            Transport::TlsH1 => Some(b"http/1.1"),
            _ => None,
        }
    }
}

/// One client connection to the proxy, speaking the transport's protocol.
enum Conn {
    H1(http1::SendRequest<TestBody>),
    H2(http2::SendRequest<TestBody>),
}

impl Conn {
    async fn send(&mut self, req: Request<TestBody>) -> Response<Incoming> {
        let fut = async {
            match self {
                Conn::H1(s) => {
                    s.ready().await?;
                    s.send_request(req).await
                }
                Conn::H2(s) => {
                    s.ready().await?;
                    s.send_request(req).await
                }
            }
        };
        timeout(LIMIT, fut).await.expect("response head in time").expect("response")
    }
}

/// A self-signed certificate for `localhost`, written as PEM files into `dir`.
struct TestCert {
    der: CertificateDer<'static>,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
}

fn make_cert(dir: &Path) -> TestCert {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("self-signed certificate");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, signing_key.serialize_pem()).expect("write key");
    TestCert { der: cert.der().clone(), cert_path, key_path }
}

/// The test proxy's config plus a `public_tls` listener serving `cert`.
fn tls_config_text(origin: SocketAddr, cert: &TestCert, extra: &str) -> String {
    ProxyConfig::new("us-east-1", origin)
        .listen_line("public_tls = \"127.0.0.1:0\"")
        .listen_line(&format!("tls_cert = {:?}", cert.cert_path.to_str().expect("utf-8 temp path")))
        .listen_line(&format!("tls_key = {:?}", cert.key_path.to_str().expect("utf-8 temp path")))
        .extra(extra)
        .text()
}

/// Opens a connection to the proxy over `transport`. For TLS it checks that the server
/// chose the ALPN protocol the client asked for.
async fn connect(transport: Transport, proxy: &TestProxy, cert: Option<&TestCert>) -> Conn {
    match transport {
        Transport::H1 | Transport::H2c => {
            let tcp = timeout(LIMIT, TcpStream::connect(proxy.addrs.public)).await.expect("connect in time");
            handshake(transport, TokioIo::new(tcp.expect("connect"))).await
        }
        Transport::TlsH2 | Transport::TlsH1 => {
            let cert = cert.expect("TLS needs a certificate");
            let addr = proxy.addrs.public_tls.expect("public_tls listener bound");
            let mut roots = RootCertStore::empty();
            roots.add(cert.der.clone()).expect("trust the test certificate");
            let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            let alpn = transport.alpn().expect("ALPN for a TLS transport");
            cfg.alpn_protocols = vec![alpn.to_vec()];
            let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
            let tcp =
                timeout(LIMIT, TcpStream::connect(addr)).await.expect("connect in time").expect("connect");
            let name = ServerName::try_from("localhost").expect("server name");
            let tls = timeout(LIMIT, connector.connect(name, tcp))
                .await
                .expect("TLS handshake in time")
                .expect("TLS handshake");
            assert_eq!(
                tls.get_ref().1.alpn_protocol(),
                Some(alpn),
                "the proxy must negotiate the ALPN protocol the client offered"
            );
            handshake(transport, TokioIo::new(tls)).await
        }
    }
}

async fn handshake<T>(transport: Transport, io: TokioIo<T>) -> Conn
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if transport.version() == Version::HTTP_2 {
        let (send, conn) = timeout(LIMIT, http2::handshake(TokioExecutor::new(), io))
            .await
            .expect("h2 handshake in time")
            .expect("h2 handshake");
        tokio::spawn(conn);
        Conn::H2(send)
    } else {
        let (send, conn) =
            timeout(LIMIT, http1::handshake(io)).await.expect("h1 handshake in time").expect("h1 handshake");
        tokio::spawn(conn);
        Conn::H1(send)
    }
}

/// A request in the form the transport needs: origin-form plus `Host` for HTTP/1.1,
/// absolute-form (which carries `:authority`) for HTTP/2.
fn request(transport: Transport, method: &str, path: &str, body: TestBody) -> Request<TestBody> {
    let scheme = if transport.alpn().is_some() { "https" } else { "http" };
    let b = Request::builder().method(method);
    let b = if transport.version() == Version::HTTP_2 {
        b.uri(format!("{scheme}://localhost{path}")).version(Version::HTTP_2)
    } else {
        b.uri(path).header("host", "localhost")
    };
    b.body(body).expect("request")
}

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// Reads a response: status, version, headers, the whole body and trailers.
async fn read(resp: Response<Incoming>) -> (Response<()>, Bytes, Option<http::HeaderMap>) {
    let (parts, body) = resp.into_parts();
    let collected = timeout(LIMIT, body.collect()).await.expect("body in time").expect("body");
    let trailers = collected.trailers().cloned();
    (Response::from_parts(parts, ()), collected.to_bytes(), trailers)
}

fn assert_proxied(transport: Transport, head: &Response<()>, what: &str) {
    assert_eq!(head.status(), 200, "{transport:?} {what}: status");
    assert_eq!(head.version(), transport.version(), "{transport:?} {what}: protocol to the client");
    assert_eq!(
        head.headers().get("x-flowgate-region").map(|v| v.as_bytes()),
        Some(&b"us-east-1"[..]),
        "{transport:?} {what}: the response must come through the proxy"
    );
}

/// GET, POST with a body and a chunked upload, all on one connection over `transport`.
async fn round_trips(transport: Transport) {
    let o = origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = matches!(transport, Transport::TlsH1 | Transport::TlsH2).then(|| make_cert(dir.path()));
    let text = match &cert {
        Some(c) => tls_config_text(o.addr, c, ""),
        None => config_text(o.addr, ""),
    };
    let proxy = TestProxy::start(&text).await;
    let mut conn = connect(transport, &proxy, cert.as_ref()).await;

    // GET
    let empty = Empty::<Bytes>::new().map_err(|e| match e {}).boxed();
    let (head, body, _) = read(conn.send(request(transport, "GET", "/", empty)).await).await;
    assert_proxied(transport, &head, "GET");
    assert_eq!(&body[..], b"ok", "{transport:?} GET body");

    // POST with a known-length body; the origin echoes it.
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (head, body, _) =
        read(conn.send(request(transport, "POST", "/echo", full(payload.clone()))).await).await;
    assert_proxied(transport, &head, "POST");
    assert_eq!(body.len(), payload.len(), "{transport:?} POST echo length");
    assert!(body[..] == payload[..], "{transport:?} POST echo content");

    // Chunked upload: a body fed from a channel, so its length is unknown up front (no
    // content-length; `Transfer-Encoding: chunked` on HTTP/1.1, bare DATA frames on h2).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let body: TestBody = BodyExt::boxed(StreamBody::new(stream));
    let req = request(transport, "POST", "/echo", body);
    assert!(!req.headers().contains_key("content-length"));
    let chunks: Vec<Bytes> =
        (0..16u8).map(|i| Bytes::from(vec![b'a' + i; 8 * 1024 + usize::from(i)])).collect();
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let feeder = tokio::spawn(async move {
        for c in chunks {
            if tx.send(Ok(Frame::data(c))).await.is_err() {
                return;
            }
            // Chunks spread out in time, as a streaming upload sends them.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let (head, body, _) = read(conn.send(req).await).await;
    assert_proxied(transport, &head, "chunked upload");
    assert_eq!(body.len(), expected.len(), "{transport:?} chunked echo length");
    assert!(body[..] == expected[..], "{transport:?} chunked echo content");
    timeout(LIMIT, feeder).await.expect("feeder done").expect("feeder");

    // The origin saw all three requests: none was answered by the proxy itself.
    assert_eq!(o.hits.load(std::sync::atomic::Ordering::SeqCst), 3, "{transport:?} origin hits");
    drop(conn);
    proxy.stop().await;
}

#[tokio::test]
async fn round_trip_http1() {
    round_trips(Transport::H1).await;
}

#[tokio::test]
async fn round_trip_h2c_prior_knowledge() {
    round_trips(Transport::H2c).await;
}

#[tokio::test]
async fn round_trip_tls_alpn_h2() {
    round_trips(Transport::TlsH2).await;
}

#[tokio::test]
async fn round_trip_tls_alpn_http1() {
    round_trips(Transport::TlsH1).await;
}

/// gRPC-style trailers from an HTTP/2 origin reach an HTTP/2 client (h2c and TLS h2).
#[tokio::test]
async fn response_trailers_arrive_over_h2() {
    let o = origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = make_cert(dir.path());
    let extra = format!(
        r#"
[origins.grpc]
endpoints = ["{}"]
protocol = "h2"

[[routes]]
host = "*"
path_prefix = "/trailers"
origin = "grpc"
"#,
        o.addr
    );
    let proxy = TestProxy::start(&tls_config_text(o.addr, &cert, &extra)).await;

    for transport in [Transport::H2c, Transport::TlsH2] {
        let mut conn = connect(transport, &proxy, Some(&cert)).await;
        let empty = Empty::<Bytes>::new().map_err(|e| match e {}).boxed();
        let mut req = request(transport, "POST", "/trailers", empty);
        req.headers_mut().insert("te", http::HeaderValue::from_static("trailers"));
        req.headers_mut().insert("content-type", http::HeaderValue::from_static("application/grpc"));
        let (head, body, trailers) = read(conn.send(req).await).await;
        assert_proxied(transport, &head, "trailers");
        assert_eq!(head.headers().get("content-type").map(|v| v.as_bytes()), Some(&b"application/grpc"[..]));
        assert_eq!(&body[..], b"hello", "{transport:?} body before the trailers");
        let trailers =
            trailers.unwrap_or_else(|| panic!("{transport:?}: no trailers frame reached the client"));
        assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]), "{transport:?}");
        assert_eq!(trailers.get("grpc-message").map(|v| v.as_bytes()), Some(&b"ok"[..]), "{transport:?}");
    }
    proxy.stop().await;
}
