//! HTTP/2 peer links (h2c or mutual TLS): one multiplexed connection per endpoint, opened
//! on first use and shared by every request to it.
//!
//! hyper-util's legacy client checks a pool out per request under a hash-map key, runs
//! its own machinery around each request and retries through it; a peer link needs none
//! of that. Here a request clones the endpoint's `SendRequest` out of a slot (one short
//! lock) and sends on it. A connection that closed or broke is noticed as it is taken (or
//! when it gives the request back unsent) and replaced; [`H2Pool::clear`] empties the
//! slots so that a name resolved again gets new connections, while requests under way
//! finish on the old ones, which close when their last stream ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::vocab::in_task::{InTask, Streams};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use super::error::ProxyError;
use super::request_body::UpstreamBody;

/// TCP keep-alive on peer connections, as hyper-util's connector had it.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// HTTP/2 pings on an idle link, so a peer that vanished is noticed before a request is.
const PING_INTERVAL: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A live connection and the generation of the pool it was opened in.
#[derive(Debug, Clone)]
struct Live {
    sender: SendRequest<UpstreamBody>,
    /// Told apart from a connection that replaced it meanwhile, so that a request that
    /// found its connection dead does not drop the new one.
    id: u64,
}

#[derive(Debug, Default)]
struct Slot {
    live: Mutex<Option<Live>>,
    /// Held while connecting, so that the first requests to an endpoint open one
    /// connection between them rather than one each.
    connecting: tokio::sync::Mutex<()>,
}

/// Mutual TLS on a peer link: the client configuration (ALPN `h2`) and the name the
/// endpoints' certificates carry when it is not their host.
#[derive(Clone)]
pub(crate) struct PeerTls {
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl PeerTls {
    pub(crate) fn new(cfg: &rustls::ClientConfig, server_name: Option<&str>) -> PeerTls {
        let mut cfg = cfg.clone();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        PeerTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            // Validated at config load: a name that does not parse is not set.
            server_name: server_name.and_then(|n| ServerName::try_from(n.to_owned()).ok()),
        }
    }
}

/// The HTTP/2 connections of one upstream set.
#[derive(Debug)]
pub(crate) struct H2Pool {
    slots: Vec<Slot>,
    /// Bumped by [`H2Pool::clear`]: a connection opened across it is not kept.
    generation: AtomicU64,
    next_id: AtomicU64,
    connect_timeout: Duration,
    tls: Option<PeerTls>,
}

/// Whether an attempt's request may go out again on a new connection.
enum Sent {
    Done(Result<Response<Incoming>, ProxyError>),
    /// The connection gave the request back unsent (it was closing), and said why.
    Unsent(Request<UpstreamBody>, hyper::Error),
}

impl H2Pool {
    pub(crate) fn new(endpoints: usize, connect_timeout: Duration, tls: Option<PeerTls>) -> H2Pool {
        H2Pool {
            slots: (0..endpoints).map(|_| Slot::default()).collect(),
            generation: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            connect_timeout,
            tls,
        }
    }

    /// Forgets every connection: the next request to each endpoint opens a new one.
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        for slot in &self.slots {
            *lock(&slot.live) = None;
        }
    }

    /// Sends `req` (absolute URI) to endpoint `i` and waits for the response head. A
    /// request the endpoint's kept connection gives back unsent goes out once more on a
    /// new connection, as hyper-util's client did.
    pub(crate) async fn send(
        &self,
        i: usize,
        authority: &Authority,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let slot = self.slots.get(i).ok_or(ProxyError::NoEndpoint)?;
        let (live, reused) = match current(slot) {
            Some(live) => (live, true),
            // Boxed: connecting is the rare path, and its future would make every send larger.
            None => (Box::pin(self.connect(slot, authority)).await?, false),
        };
        match send_on(live.clone(), req).await {
            Sent::Done(r) => r,
            Sent::Unsent(req, e) => {
                forget(slot, live.id);
                if !reused {
                    return Err(failed(&e));
                }
                tracing::debug!(endpoint = %authority, "peer connection was closing; sending again");
                let live = Box::pin(self.connect(slot, authority)).await?;
                match send_on(live, req).await {
                    Sent::Done(r) => r,
                    Sent::Unsent(_, e) => Err(failed(&e)),
                }
            }
        }
    }

    /// The endpoint's connection, opened now unless another request opened it meanwhile.
    async fn connect(&self, slot: &Slot, authority: &Authority) -> Result<Live, ProxyError> {
        let _one = slot.connecting.lock().await;
        if let Some(live) = current(slot) {
            return Ok(live);
        }
        let generation = self.generation.load(Ordering::Relaxed);
        let sender = self.open(authority).await?;
        let live = Live { sender, id: self.next_id.fetch_add(1, Ordering::Relaxed) };
        if self.generation.load(Ordering::Relaxed) == generation {
            *lock(&slot.live) = Some(live.clone());
        }
        Ok(live)
    }

    /// TCP within the connect timeout, TLS when the link asks for it, the HTTP/2 handshake,
    /// and the connection's own task.
    async fn open(&self, authority: &Authority) -> Result<SendRequest<UpstreamBody>, ProxyError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(authority.as_str()))
            .await
            .map_err(|_| ProxyError::ConnectTimeout)?
            .map_err(|e| {
                tracing::debug!(error = %e, endpoint = %authority, "peer connect failed");
                ProxyError::ConnectFailed
            })?;
        // Both only tune the socket: a failure leaves a working, if slower, connection.
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        match &self.tls {
            None => handshake(tcp, authority).await,
            Some(tls) => {
                let name = match &tls.server_name {
                    Some(n) => n.clone(),
                    None => host_name(authority)?,
                };
                let stream = tls.connector.connect(name, tcp).await.map_err(|e| {
                    tracing::debug!(error = %e, endpoint = %authority, "peer TLS handshake failed");
                    ProxyError::ConnectFailed
                })?;
                handshake(stream, authority).await
            }
        }
    }
}

/// The name a TLS peer's certificate is checked against: its host (an IP address too).
fn host_name(authority: &Authority) -> Result<ServerName<'static>, ProxyError> {
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| ProxyError::ConnectFailed)
}

async fn handshake<T>(io: T, authority: &Authority) -> Result<SendRequest<UpstreamBody>, ProxyError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Each request's wait for its response runs in the connection's task (`in_task`),
    // not in a task hyper would spawn per request.
    let mut builder = http2::Builder::new(InTask);
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true)
        .adaptive_window(true);
    let (sender, conn) = builder.handshake(TokioIo::new(io)).await.map_err(|e| {
        tracing::debug!(error = %e, endpoint = %authority, "peer HTTP/2 handshake failed");
        ProxyError::ConnectFailed
    })?;
    let endpoint = authority.clone();
    tokio::spawn(async move {
        let mut streams = Streams::default();
        if let Err(e) = streams.drive(std::pin::pin!(conn)).await {
            tracing::debug!(error = %e, endpoint = %endpoint, "peer connection ended");
        }
    });
    Ok(sender)
}

/// The slot's connection if it is still open; a closed one is dropped.
fn current(slot: &Slot) -> Option<Live> {
    let mut live = lock(&slot.live);
    match &*live {
        Some(l) if !l.sender.is_closed() => Some(l.clone()),
        Some(_) => {
            *live = None;
            None
        }
        None => None,
    }
}

/// Drops connection `id` from the slot, unless another already replaced it.
fn forget(slot: &Slot, id: u64) {
    let mut live = lock(&slot.live);
    if live.as_ref().is_some_and(|l| l.id == id) {
        *live = None;
    }
}

async fn send_on(mut live: Live, req: Request<UpstreamBody>) -> Sent {
    match live.sender.try_send_request(req).await {
        Ok(resp) => Sent::Done(Ok(resp)),
        Err(mut e) => match e.take_message() {
            Some(req) => Sent::Unsent(req, e.into_error()),
            None => Sent::Done(Err(failed(&e.into_error()))),
        },
    }
}

fn failed(e: &hyper::Error) -> ProxyError {
    let err = ProxyError::from_source(e);
    tracing::debug!(error = ?e, code = err.code(), "peer request failed");
    err
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get() -> Request<UpstreamBody> {
        let mut req = Request::new(UpstreamBody::kept(bytes::Bytes::new()));
        *req.uri_mut() = http::Uri::from_static("http://peer.test/");
        req
    }

    #[tokio::test]
    async fn a_refused_connection_is_connect_failed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let pool = H2Pool::new(1, Duration::from_secs(1), None);
        let authority: Authority = addr.to_string().parse().expect("authority");
        let err = pool.send(0, &authority, get()).await.expect_err("refused");
        assert_eq!(err, ProxyError::ConnectFailed);
    }

    /// A listener whose accept queue is full drops the SYNs of new connections: connecting
    /// hangs, and the connect timeout ends it as hyper-util's connector did.
    #[tokio::test]
    async fn a_connect_that_hangs_is_connect_timeout() {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
        socket.listen(0).expect("listen");
        let addr = socket.local_addr().expect("addr").as_socket().expect("inet");
        let mut held = Vec::new();
        // Fill the queue: connections complete until it is full, then one hangs.
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => held.push(s),
                _ => break,
            }
        }
        let pool = H2Pool::new(1, Duration::from_millis(100), None);
        let authority: Authority = addr.to_string().parse().expect("authority");
        let err = pool.send(0, &authority, get()).await.expect_err("hangs");
        assert_eq!(err, ProxyError::ConnectTimeout);
    }
}
