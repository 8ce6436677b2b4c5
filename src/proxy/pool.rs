//! Keep-alive HTTP/1.1 connections to cleartext upstreams, one idle list per endpoint.
//!
//! The common case of a proxy (HTTP/1.1 to an origin on a private network) gets its own
//! pool rather than hyper-util's general one, which keys a hash map per request, hands
//! each finished connection to a task of its own to wait until it can be reused, and so
//! cost about 9,000 instructions a request. Here a connection goes back to its endpoint's
//! list when the response has been relayed (its [`PooledConn`] is dropped), is taken most
//! recently used first, and is skipped while hyper has not yet finished the previous
//! exchange. A request that hyper gives back unsent (the connection closed as it was
//! taken) goes out on a new connection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::Request;
use http::uri::Authority;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::error::ProxyError;
use super::request_body::UpstreamBody;

/// How many idle entries a checkout looks at before it opens a new connection: a few
/// entries may still be finishing their last exchange.
const MAX_SKIPPED: usize = 4;

/// TCP keep-alive on upstream connections, so a peer that vanished is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Idle {
    tx: SendRequest<UpstreamBody>,
    since: Instant,
}

#[derive(Debug)]
struct Lists {
    /// One per endpoint, oldest first.
    idle: Vec<Mutex<VecDeque<Idle>>>,
    /// Bumped by [`H1Pool::clear`]: connections of an older generation are not kept.
    generation: AtomicU64,
    idle_timeout: Duration,
    max_idle: usize,
}

/// The pool of one upstream set.
#[derive(Debug)]
pub(crate) struct H1Pool {
    lists: Arc<Lists>,
    connect_timeout: Duration,
}

/// A connection in use; dropping it returns it to its endpoint's idle list.
#[derive(Debug)]
pub(crate) struct PooledConn {
    tx: Option<SendRequest<UpstreamBody>>,
    lists: Arc<Lists>,
    endpoint: usize,
    generation: u64,
}

impl H1Pool {
    pub(crate) fn new(
        endpoints: usize,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> H1Pool {
        let idle = (0..endpoints).map(|_| Mutex::new(VecDeque::new())).collect();
        H1Pool {
            lists: Arc::new(Lists { idle, generation: AtomicU64::new(0), idle_timeout, max_idle }),
            connect_timeout,
        }
    }

    /// Closes every idle connection; connections in use are closed when done.
    pub(crate) fn clear(&self) {
        self.lists.generation.fetch_add(1, Ordering::Relaxed);
        for list in &self.lists.idle {
            list.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) to endpoint `i` and waits for the response
    /// head. The connection comes back with the response and must be held until the body
    /// has been relayed.
    pub(crate) async fn send(
        &self,
        i: usize,
        authority: &Authority,
        mut req: Request<UpstreamBody>,
    ) -> Result<(http::Response<Incoming>, PooledConn), ProxyError> {
        // Bounded: each pass either sends or takes one idle entry out of the list.
        for _ in 0..=MAX_SKIPPED + 1 {
            let mut conn = match self.checkout(i) {
                Some(c) => c,
                // Boxed: connecting is the rare path, and its future would make every send larger.
                None => Box::pin(self.connect(i, authority)).await?,
            };
            let Some(tx) = conn.tx.as_mut() else { return Err(ProxyError::UpstreamReset) };
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok((resp, conn)),
                Err(mut e) => match e.take_message() {
                    // Never written: safe to send again, on another connection.
                    Some(back) => {
                        conn.tx = None;
                        req = back;
                    }
                    None => {
                        let e = e.into_error();
                        let err = ProxyError::from_source(&e);
                        tracing::debug!(error = %e, endpoint = %authority, code = err.code(), "upstream request failed");
                        return Err(err);
                    }
                },
            }
        }
        Err(ProxyError::UpstreamReset)
    }

    /// The most recently used idle connection of endpoint `i` that can take a request.
    fn checkout(&self, i: usize) -> Option<PooledConn> {
        let list = self.lists.idle.get(i)?;
        let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
        let mut skipped = 0;
        let mut pos = list.len();
        while pos > 0 && skipped < MAX_SKIPPED {
            pos -= 1;
            let entry = &list[pos];
            if entry.tx.is_closed() || entry.since.elapsed() > self.lists.idle_timeout {
                list.remove(pos);
            } else if entry.tx.is_ready() {
                let idle = list.remove(pos)?;
                return Some(self.lease(i, idle.tx));
            } else {
                skipped += 1;
            }
        }
        None
    }

    fn lease(&self, endpoint: usize, tx: SendRequest<UpstreamBody>) -> PooledConn {
        PooledConn {
            tx: Some(tx),
            lists: self.lists.clone(),
            endpoint,
            generation: self.lists.generation.load(Ordering::Relaxed),
        }
    }

    async fn connect(&self, i: usize, authority: &Authority) -> Result<PooledConn, ProxyError> {
        let stream =
            tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(authority.as_str()))
                .await
                .map_err(|_| ProxyError::ConnectTimeout)?
                .map_err(|e| {
                    tracing::debug!(error = %e, endpoint = %authority, "upstream connect failed");
                    ProxyError::ConnectFailed
                })?;
        // Both only tune the socket: a failure leaves a working, if slower, connection.
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let (tx, conn) = http1::Builder::new().handshake(TokioIo::new(stream)).await.map_err(|e| {
            tracing::debug!(error = %e, endpoint = %authority, "upstream handshake failed");
            ProxyError::ConnectFailed
        })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(self.lease(i, tx))
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let lists = &self.lists;
        if tx.is_closed() || lists.generation.load(Ordering::Relaxed) != self.generation {
            return;
        }
        let Some(list) = lists.idle.get(self.endpoint) else { return };
        let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
        // One expired entry swept per return keeps the list free of connections that
        // the upstream has long closed, without a sweeper task.
        if list.front().is_some_and(|e| e.since.elapsed() > lists.idle_timeout) {
            list.pop_front();
        }
        if list.len() >= lists.max_idle {
            list.pop_front();
        }
        if lists.max_idle > 0 {
            list.push_back(Idle { tx, since: Instant::now() });
        }
    }
}
