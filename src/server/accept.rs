//! Accept loops and the life of one client connection: TLS handshake, HTTP/1.1 or HTTP/2
//! on the same socket, the watchdog, graceful close on drain and the hard cut after it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::h1;
use super::watched::Watched;
use crate::config::Config;
use crate::proxy::client_body::ClientBody;
use crate::proxy::{ConnCtx, Fields, ListenerKind, Proxy};
use crate::vocab::activity::{ConnActivity, Expired};
use crate::vocab::in_task::{InTask, Streams};

/// Everything a connection task needs, shared by all of them.
pub(super) struct ConnShared {
    /// The proxy generation in force; a reload swaps it, connections load it per request.
    pub(super) proxy: Arc<arc_swap::ArcSwap<Proxy>>,
    pub(super) http: auto::Builder<InTask>,
    pub(super) header_timeout: Duration,
    pub(super) idle_timeout: Duration,
    /// Fires when connections must be told to go (drain).
    pub(super) graceful: CancellationToken,
    /// Fires when the drain timeout is over and whatever is left is cut.
    pub(super) cut: CancellationToken,
    pub(super) tracker: TaskTracker,
    /// Caps open client connections across listeners.
    pub(super) slots: Arc<Semaphore>,
}

pub(super) fn http_builder(cfg: &Config) -> auto::Builder<InTask> {
    // HTTP/2 streams run in their connection's task (see `in_task`).
    let mut b = auto::Builder::new(InTask);
    b.http1()
        .timer(TokioTimer::new())
        // Our watchdog owns the header deadline; see `vocab::activity` for why. The read buffer
        // cap is what bounds the request head: a longer one is answered 431, or 414 when it
        // is one request line (see `watched`).
        .header_read_timeout(None)
        .max_buf_size(cfg.limits.max_header_bytes)
        .max_headers(cfg.limits.max_headers)
        // A client may shut its sending side (TCP half-close) once its requests are out
        // and still wait for the answers. Without this, hyper takes that EOF for a client
        // gone and drops the request in flight with its answer, and every pipelined one
        // after it; with it, the connection closes once it is idle and has read the EOF.
        // The cost: a client that leaves mid-request is found out when its answer cannot
        // be written, not before (`[timeouts] request` still bounds the wait), as with
        // HAProxy's default (no `abortonclose`).
        .half_close(true)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.limits.max_concurrent_streams)
        .max_header_list_size(cfg.limits.max_header_bytes as u32)
        // Rapid reset (CVE-2023-44487): a client that opens and cancels streams faster
        // than they can be served is cut off rather than served for free.
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(cfg.timeouts.h2_ping_interval))
        .keep_alive_timeout(cfg.timeouts.h2_ping_timeout);
    b
}

/// Accepts until `stop` fires; the listener is dropped on return, so the kernel refuses
/// new connections from then on.
pub(super) async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    tls: Option<TlsAcceptor>,
    shared: Arc<ConnShared>,
    stop: CancellationToken,
) {
    loop {
        // Waiting for a free slot before accepting leaves excess connections in the
        // kernel's backlog instead of accepting and dropping them. The slot is not held
        // while waiting: a listener idle in accept must not count against the cap.
        tokio::select! {
            _ = stop.cancelled() => return,
            p = shared.slots.acquire() => match p {
                Ok(p) => drop(p),
                Err(_) => return,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = kind.name(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Another listener may have taken the last slot meanwhile: this connection then
        // waits for one, as it would have in the backlog.
        let permit = match shared.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return,
            Err(tokio::sync::TryAcquireError::NoPermits) => tokio::select! {
                _ = stop.cancelled() => return,
                p = shared.slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            },
        };
        let _ = stream.set_nodelay(true);
        let shared2 = shared.clone();
        let tls = tls.clone();
        shared.tracker.spawn(async move {
            let _permit = permit;
            let activity = ConnActivity::new();
            let ctx = Arc::new(ConnCtx::new(kind, remote, activity.clone()));
            let max_uri = shared2.proxy.load().max_uri_bytes;
            match tls {
                // Plain TCP: the own HTTP/1.1 path first, which hands hyper the connection
                // (and the bytes it read) at the first head it does not serve. TLS stays on
                // hyper for now.
                None => {
                    let io = Watched::new(stream, activity, Some(max_uri));
                    let env = h1::Env {
                        proxy: &shared2.proxy,
                        header_timeout: shared2.header_timeout,
                        idle_timeout: shared2.idle_timeout,
                        graceful: &shared2.graceful,
                        cut: &shared2.cut,
                    };
                    if let h1::End::Fallback(io) = h1::serve(io, &ctx, &env).await {
                        serve(io, ctx, &shared2).await;
                    }
                }
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(shared2.header_timeout, acceptor.accept(stream));
                    let stream = tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%remote, "TLS handshake timed out");
                                return;
                            }
                        },
                        _ = shared2.graceful.cancelled() => return,
                    };
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    if h2 {
                        activity.set_h2();
                    }
                    let max_uri = (!h2).then_some(max_uri);
                    serve(Watched::new(stream, activity, max_uri), ctx, &shared2).await
                }
            }
        });
    }
}

async fn serve<I>(io: I, ctx: Arc<ConnCtx>, shared: &ConnShared)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let proxy = shared.proxy.clone();
    let ctx2 = ctx.clone();
    let svc = service_fn(move |req| {
        let proxy = proxy.load_full();
        let ctx = ctx2.clone();
        // Boxed: the request future is large, and hyper moves the service future into a
        // task per HTTP/2 stream; a box moves a pointer (about 6 % of an h2 request's
        // instructions, measured with `bench/instructions.sh PROTO=h2`).
        async move {
            Ok::<_, Infallible>(Box::pin(proxy.handle(&ctx, req.map(ClientBody::from), Fields::Map)).await)
        }
    });
    let conn = shared.http.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut streams = Streams::default();
    let expired = ctx.activity.expired(shared.header_timeout, shared.idle_timeout);
    tokio::pin!(expired);
    tokio::select! {
        res = streams.drive(conn.as_mut()) => {
            if let Err(e) = res {
                tracing::debug!(remote = %ctx.remote, error = %e, "connection ended with an error");
            }
            return;
        }
        why = &mut expired => {
            if why == Expired::HeaderTimeout {
                tracing::debug!(remote = %ctx.remote, "request head not received in time; closing");
                return;
            }
            tracing::trace!(remote = %ctx.remote, "idle connection closed");
        }
        _ = shared.graceful.cancelled() => {}
    }
    // HTTP/1.1: the next response says `Connection: close` (an idle connection closes
    // now); HTTP/2: GOAWAY, and streams under way finish.
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = streams.drive(conn.as_mut()) => {}
        _ = shared.cut.cancelled() => {}
    }
}
