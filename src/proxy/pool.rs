//! Keep-alive HTTP/1.1 connections to cleartext upstreams, one idle list per endpoint,
//! spoken to by wire code of our own.
//!
//! The common case of a proxy (HTTP/1.1 to an origin on a private network) gets its own
//! pool and its own client rather than hyper-util's: no hash map per request, no task per
//! connection and no channels between it and the request. The request is written straight
//! to the socket ([`wire`]) while the response head is read ([`exchange`], parsed strictly
//! by [`response`]), and the response body is read from the socket when the client's
//! connection polls it ([`body`], [`chunked`]), on the client connection's own task. A
//! connection goes back to its endpoint's list when its response has been read whole (its
//! [`PooledConn`] is dropped marked reusable), and is taken most recently used first; one
//! the upstream closed while idle is noticed as it is taken, and a kept request whose
//! reused connection turns out dead before any answer goes out again on a new one.

mod body;
mod chunked;
mod exchange;
mod response;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::Response;
use http::request::Parts;
use http::uri::Authority;
use tokio::net::TcpStream;

use super::error::ProxyError;
use super::hop::NextHop;
use super::request_body::UpstreamBody;
pub(crate) use body::{UpstreamResponse, WireBody};
pub(crate) use response::{Fields, Relayed};

/// TCP keep-alive on upstream connections, so a peer that vanished is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// First capacity of a connection's read buffer.
const READ_BUF: usize = 16 * 1024;

/// One upstream connection and the buffers it reuses from request to request.
#[derive(Debug)]
pub(crate) struct Conn {
    io: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

#[derive(Debug)]
struct Idle {
    conn: Box<Conn>,
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

/// What the request path asks of a send beside the client's head: the next hop's fleet
/// fields (to a peer region), and where the answer's fields go.
#[derive(Debug, Default)]
pub(crate) struct Wants<'a> {
    pub(crate) next_hop: Option<NextHop<'a>>,
    pub(crate) fields: Fields,
}

/// The pool of one upstream set.
#[derive(Debug)]
pub(crate) struct H1Pool {
    lists: Arc<Lists>,
    connect_timeout: Duration,
}

/// A connection in use; dropping it returns it to its endpoint's idle list when it was
/// marked reusable (its exchange read whole), and closes it otherwise.
#[derive(Debug)]
pub(crate) struct PooledConn {
    /// Boxed, and the box kept from lease to lease: the answer that holds this (and the
    /// futures around it) moves several times per request, a pointer rather than the
    /// connection's socket and buffers.
    conn: Option<Box<Conn>>,
    reusable: bool,
    /// Taken from the idle list rather than opened for this request.
    reused: bool,
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

    /// Sends the request `head` with `body` to endpoint `i` (in origin-form, as HTTP/1.1,
    /// with the fleet fields of `wants.next_hop` in place of any it has) and waits for the
    /// response head. The body reads from the connection, which goes
    /// back to the pool once it is read whole.
    pub(crate) async fn send(
        &self,
        i: usize,
        authority: &Authority,
        head: &Parts,
        body: UpstreamBody,
        wants: Wants<'_>,
        now: Instant,
    ) -> Result<Response<WireBody>, ProxyError> {
        let Wants { next_hop, fields } = wants;
        let method = &head.method;
        let mut conn = match self.checkout(i, now) {
            Some(c) => c,
            // Boxed: connecting is the rare path, and its future would make every send larger.
            None => Box::pin(self.connect(i, authority)).await?,
        };
        let buf = conn.conn.as_mut().map(|c| std::mem::take(&mut c.wbuf)).unwrap_or_default();
        let mut writer = wire::RequestWriter::new(buf, head, body, authority, next_hop);
        loop {
            match exchange::exchange(&mut conn, &mut writer, method, fields).await {
                Ok((mut head, rest)) => {
                    let writer = match rest {
                        exchange::Rest::Written => {
                            if let Some(c) = conn.conn.as_mut() {
                                c.wbuf = writer.into_buf();
                            }
                            None
                        }
                        exchange::Rest::Writing => Some(Box::new(writer)),
                        exchange::Rest::Abandoned => None,
                    };
                    // A request not written whole leaves the connection unfit for another.
                    let keep_alive = head.keep_alive && rest != exchange::Rest::Abandoned;
                    let (framing, relayed) = (head.framing, std::mem::take(&mut head.relayed));
                    return Ok(head.into_response(WireBody::new(conn, framing, keep_alive, writer, relayed)));
                }
                // A kept connection the upstream closed as it was taken: the request went
                // nowhere, so it goes out once more on a new connection.
                Err(f) if conn.reused && f.before_answer && writer.resendable() => {
                    tracing::debug!(endpoint = %authority, "reused upstream connection was closed; sending again");
                    writer.rewind();
                    conn = Box::pin(self.connect(i, authority)).await?;
                }
                Err(f) => {
                    tracing::debug!(endpoint = %authority, code = f.error.code(), "upstream request failed");
                    return Err(f.error);
                }
            }
        }
    }

    /// The most recently used idle connection of endpoint `i` that is still open (and
    /// idle for no longer than the timeout at `now`).
    fn checkout(&self, i: usize, now: Instant) -> Option<PooledConn> {
        let list = self.lists.idle.get(i)?;
        let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded: every pass takes one entry out of the list.
        while let Some(idle) = list.pop_back() {
            if now.saturating_duration_since(idle.since) <= self.lists.idle_timeout && still_open(&idle.conn)
            {
                drop(list);
                let mut leased = self.lease(i, idle.conn);
                leased.reused = true;
                return Some(leased);
            }
        }
        None
    }

    fn lease(&self, endpoint: usize, conn: Box<Conn>) -> PooledConn {
        PooledConn {
            conn: Some(conn),
            reusable: false,
            reused: false,
            lists: self.lists.clone(),
            endpoint,
            generation: self.lists.generation.load(Ordering::Relaxed),
        }
    }

    async fn connect(&self, i: usize, authority: &Authority) -> Result<PooledConn, ProxyError> {
        let io = tokio::time::timeout(self.connect_timeout, TcpStream::connect(authority.as_str()))
            .await
            .map_err(|_| ProxyError::ConnectTimeout)?
            .map_err(|e| {
                tracing::debug!(error = %e, endpoint = %authority, "upstream connect failed");
                ProxyError::ConnectFailed
            })?;
        // Both only tune the socket: a failure leaves a working, if slower, connection.
        let _ = io.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&io).set_tcp_keepalive(&keepalive);
        let conn = Box::new(Conn { io, rbuf: BytesMut::with_capacity(READ_BUF), wbuf: Vec::new() });
        Ok(self.lease(i, conn))
    }
}

/// An idle connection has nothing to say: readable means the upstream closed it (or sent
/// bytes no request asked for). Costs no system call unless the socket was seen readable.
fn still_open(conn: &Conn) -> bool {
    let mut probe = [0u8; 1];
    conn.rbuf.is_empty()
        && matches!(conn.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

impl Conn {
    /// Reads what the socket has into the read buffer: `Ok(0)` at end of stream.
    ///
    /// Through `AsyncRead` rather than `try_read_buf`: a read that leaves the buffer's room
    /// part empty has drained the socket, and tokio's `poll_read` then forgets the
    /// readiness, so neither the next fill nor [`still_open`] at the next checkout spends a
    /// system call to learn `EAGAIN` (measured: 3 `recvfrom` per proxied request → 2).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        self.rbuf.reserve(READ_BUF);
        tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.io), cx, &mut self.rbuf)
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let lists = &self.lists;
        if !self.reusable || lists.generation.load(Ordering::Relaxed) != self.generation {
            return;
        }
        let Some(list) = lists.idle.get(self.endpoint) else { return };
        // One clock read serves the sweep below and the returned connection's stamp.
        let now = Instant::now();
        let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
        // One expired entry swept per return keeps the list free of connections that
        // the upstream has long closed, without a sweeper task.
        if list.front().is_some_and(|e| now.saturating_duration_since(e.since) > lists.idle_timeout) {
            list.pop_front();
        }
        if list.len() >= lists.max_idle {
            list.pop_front();
        }
        if lists.max_idle > 0 {
            list.push_back(Idle { conn, since: now });
        }
    }
}
