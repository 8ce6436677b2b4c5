//! A purpose-built HTTP/1.1 server path for plain-TCP client connections, beside hyper's.
//!
//! hyper's HTTP/1 server (its dispatch state machine, body channel and encoder) was a
//! large part of a proxied request's instructions. This path reads into the connection's
//! own buffer, parses the head with httparse, and serves the common, strict subset
//! ([`head::decide`]) itself: it builds the `http::Request` once, reads a small
//! `Content-Length` body whole, calls the same [`Proxy::handle`] as hyper's path does, and
//! writes the answer with [`encode`] from one reused buffer. The first head outside that
//! subset hands the whole rest of the connection to hyper, replaying the bytes already
//! read ([`rewind`]), so that every answer to odd or hostile input stays hyper's.
//!
//! TLS connections stay on hyper for now (as does HTTP/2 and anything after a fallback).
//! Request bodies that are not kept whole for retries (longer than `[retry]
//! max_body_bytes`, chunked, `Expect: 100-continue`) go to hyper too.

mod encode;
mod gate;
mod head;
pub(crate) mod rewind;

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::proxy::client_body::ClientBody;
use crate::proxy::{ConnCtx, Fields, KEEP_BODY_TIMEOUT, Proxy, ProxyBody};
use crate::vocab::activity::Expired;
use gate::Gated;
use head::{Accepted, Decision, Limits};
use rewind::Rewind;

/// The read buffer's first size, and the room kept free before each read.
const READ_CHUNK: usize = 8 * 1024;
/// A data frame up to this size is copied behind the head or its chunk line, for one
/// write; a larger one is written from its own buffer.
const COPY_MAX: usize = 8 * 1024;
/// The write buffer an idle connection keeps (a small answer's head and body).
const WBUF_KEEP: usize = 4 * 1024;
/// Queued bytes past which the write buffer is written out before the next frame.
const FLUSH_AT: usize = 64 * 1024;

/// What a connection needs from its server (the accept loop's shared state).
pub(crate) struct Env<'a> {
    pub(crate) proxy: &'a arc_swap::ArcSwap<Proxy>,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) graceful: &'a CancellationToken,
    pub(crate) cut: &'a CancellationToken,
}

/// How the own path left the connection.
pub(crate) enum End<I> {
    /// Served and closed.
    Done,
    /// Hand it to hyper: the socket, with what was read and not yet served in front.
    Fallback(Rewind<I>),
}

struct Conn<I> {
    io: I,
    /// What was read and not yet served.
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    accepted: Accepted,
    /// No request served yet (an HTTP/2 preface can only come first).
    first: bool,
}

enum Step {
    Close,
    Fallback,
}

/// Serves `io` until it closes or must go to hyper.
pub(crate) async fn serve<I>(io: I, ctx: &Arc<ConnCtx>, env: &Env<'_>) -> End<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let proxy = env.proxy.load();
    let limits = Limits {
        max_header_bytes: proxy.max_header_bytes,
        max_headers: proxy.max_headers,
        max_uri_bytes: proxy.max_uri_bytes,
        max_body: proxy.keep_body_max(),
    };
    drop(proxy);
    let mut conn =
        Conn { io, rbuf: Vec::new(), wbuf: Vec::new(), accepted: Accepted::default(), first: true };
    // The branches beside the connection's work are gated: polled only once they woke.
    let expired = pin!(ctx.activity.expired(env.header_timeout, env.idle_timeout));
    let mut expired = Gated::new(expired);
    let cut = pin!(env.cut.cancelled());
    let mut cut = Gated::new(cut);
    let graceful = pin!(env.graceful.cancelled());
    let mut graceful = Gated::new(graceful);
    let step = tokio::select! {
        step = conn.run(ctx, env, &limits, &mut graceful) => step,
        why = &mut expired => {
            match why {
                Expired::HeaderTimeout => {
                    tracing::debug!(remote = %ctx.remote, "request head not received in time; closing");
                }
                Expired::Idle => tracing::trace!(remote = %ctx.remote, "idle connection closed"),
            }
            return End::Done;
        }
        _ = &mut cut => return End::Done,
    };
    match step {
        Step::Close => {
            // FIN after the last answer, rather than leaving it to the drop.
            let _ = conn.io.shutdown().await;
            End::Done
        }
        Step::Fallback => End::Fallback(Rewind::new(conn.rbuf, conn.io)),
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<I> {
    async fn run<G: Future<Output = ()>>(
        &mut self,
        ctx: &Arc<ConnCtx>,
        env: &Env<'_>,
        limits: &Limits,
        graceful: &mut Gated<'_, G>,
    ) -> Step {
        loop {
            match self.next_head(limits, graceful).await {
                Ok(Decision::Fast) => {}
                Ok(_) => return Step::Fallback,
                Err(step) => return step,
            }
            let len = self.accepted.len;
            let head = Bytes::copy_from_slice(&self.rbuf[..len]);
            let Some(parts) = head::build(&head, &mut self.accepted) else { return Step::Fallback };
            self.first = false;
            // The head is in: from here the connection counts a request in flight (the
            // header timer stops), until its answer is written.
            let active = ctx.activity.begin();
            let body_len = self.accepted.body_len;
            if self.rbuf.len() < len + body_len {
                match tokio::time::timeout(KEEP_BODY_TIMEOUT, self.read_to(len + body_len)).await {
                    Ok(Ok(())) => {}
                    // The client left or stalled mid-body: nothing to answer it with.
                    _ => {
                        tracing::debug!(remote = %ctx.remote, "request body cut short; closing");
                        return Step::Close;
                    }
                }
            }
            let body = Bytes::copy_from_slice(&self.rbuf[len..len + body_len]);
            self.rbuf.drain(..len + body_len);
            let head_request = encode::is_head(&parts.method);
            let close = self.accepted.close;
            let proxy = env.proxy.load_full();
            let resp =
                proxy.handle(ctx, Request::from_parts(parts, ClientBody::bytes(body)), Fields::Bytes).await;
            let close = close || env.graceful.is_cancelled();
            let kept = match self.respond(resp, head_request, close).await {
                Ok(kept) => kept,
                Err(e) => {
                    tracing::debug!(remote = %ctx.remote, error = %e, "writing the answer failed; closing");
                    return Step::Close;
                }
            };
            drop(active);
            if !kept || env.graceful.is_cancelled() {
                return Step::Close;
            }
            // Nothing left to serve: the connection may now sit idle for long, so it keeps
            // no read buffer and no large write buffer (see `read_some`).
            if self.rbuf.is_empty() {
                self.rbuf = Vec::new();
            }
            if self.wbuf.capacity() > WBUF_KEEP {
                self.wbuf = Vec::new();
            }
        }
    }

    /// Reads until the buffer starts with a whole head the own path serves, or one it does
    /// not; `Err` when the connection ends instead.
    async fn next_head<G: Future<Output = ()>>(
        &mut self,
        limits: &Limits,
        graceful: &mut Gated<'_, G>,
    ) -> Result<Decision, Step> {
        loop {
            if !self.rbuf.is_empty() {
                match head::decide(&self.rbuf, self.first, limits, &mut self.accepted) {
                    Decision::Partial => {}
                    Decision::Fallback(why) => {
                        tracing::trace!(?why, "HTTP/1.1 head handed to hyper");
                        return Ok(Decision::Fallback(why));
                    }
                    Decision::Fast => return Ok(Decision::Fast),
                }
            }
            let read = if self.rbuf.is_empty() {
                // Idle: drain closes it at once.
                tokio::select! {
                    r = read_some(&mut self.io, &mut self.rbuf) => r,
                    _ = &mut *graceful => return Err(Step::Close),
                }
            } else {
                read_some(&mut self.io, &mut self.rbuf).await
            };
            match read {
                // A clean end between requests; a partial head is hyper's to answer.
                Ok(0) if self.rbuf.is_empty() => return Err(Step::Close),
                Ok(0) => return Err(Step::Fallback),
                Ok(_) => {}
                Err(_) => return Err(Step::Close),
            }
        }
    }

    /// Reads until the buffer holds `want` bytes.
    async fn read_to(&mut self, want: usize) -> io::Result<()> {
        while self.rbuf.len() < want {
            if read_some(&mut self.io, &mut self.rbuf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Writes `resp`; whether the connection can serve another request after it.
    async fn respond(
        &mut self,
        resp: Response<ProxyBody>,
        head_request: bool,
        close: bool,
    ) -> io::Result<bool> {
        let (parts, body) = resp.into_parts();
        self.wbuf.clear();
        let answer = encode::Answer {
            status: parts.status,
            headers: &parts.headers,
            relayed: body.relayed(),
            head_request,
            empty: body.is_end_stream(),
            exact: body.size_hint().exact(),
            close,
        };
        let mut framing = encode::head(&mut self.wbuf, &answer);
        if framing.bodiless || answer.empty {
            let whole = framing.bodiless || framing.finish(&mut self.wbuf);
            self.io.write_all(&self.wbuf).await?;
            return Ok(whole && !framing.close);
        }
        let mut body = pin!(body);
        loop {
            let frame = poll_fn(|cx| match body.as_mut().poll_frame(cx) {
                // Nothing more yet: what is queued goes out while the body waits.
                Poll::Pending if !self.wbuf.is_empty() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
                Poll::Ready(f) => Poll::Ready(Some(f)),
            })
            .await;
            let frame = match frame {
                None => {
                    self.io.write_all(&self.wbuf).await?;
                    self.wbuf.clear();
                    continue;
                }
                Some(None) => break,
                // The upstream failed mid-body: the client must see the answer cut short.
                Some(Some(Err(_))) => {
                    self.io.write_all(&self.wbuf).await?;
                    return Ok(false);
                }
                Some(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(mut data) => {
                    let n = framing.before_data(&mut self.wbuf, data.len());
                    data.truncate(n);
                    let tail = framing.after_data(n);
                    if n <= COPY_MAX {
                        self.wbuf.extend_from_slice(&data);
                        self.wbuf.extend_from_slice(tail);
                    } else {
                        write_three(&mut self.io, &self.wbuf, data, tail).await?;
                        self.wbuf.clear();
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        framing.trailers(&mut self.wbuf, &trailers);
                    }
                }
            }
            if self.wbuf.len() >= FLUSH_AT {
                self.io.write_all(&self.wbuf).await?;
                self.wbuf.clear();
            }
        }
        let whole = framing.finish(&mut self.wbuf);
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
        }
        Ok(whole && !framing.close)
    }
}

/// One read into the spare room of `buf` (grown to keep `READ_CHUNK` free). An empty
/// buffer holds no memory: an idle connection waits with none reserved (thousands of idle
/// keep-alive connections must stay cheap), and its first read lands in a stack buffer that
/// lives only while the socket is polled, then is copied into a buffer of that size.
async fn read_some<I: AsyncRead + Unpin>(io: &mut I, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.is_empty() && buf.capacity() == 0 {
        return poll_fn(|cx| {
            let mut room = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut rb = tokio::io::ReadBuf::uninit(&mut room);
            match Pin::new(&mut *io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(rb.filled());
                    Poll::Ready(Ok(rb.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
    }
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    io.read_buf(buf).await
}

/// Writes `a`, `b` and `c` in order, in as few writes as the socket takes.
async fn write_three<I: AsyncWrite + Unpin>(io: &mut I, a: &[u8], mut b: Bytes, c: &[u8]) -> io::Result<()> {
    let (mut a, mut c) = (a, c);
    while !(a.is_empty() && b.is_empty() && c.is_empty()) {
        let slices = [IoSlice::new(a), IoSlice::new(&b), IoSlice::new(c)];
        let mut n = poll_fn(|cx| Pin::new(&mut *io).poll_write_vectored(cx, &slices)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let k = a.len().min(n);
        a = &a[k..];
        n -= k;
        let k = b.len().min(n);
        b.advance(k);
        n -= k;
        c = &c[n.min(c.len())..];
    }
    Ok(())
}
