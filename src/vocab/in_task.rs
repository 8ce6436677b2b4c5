//! HTTP/2 streams run inside their connection's task rather than one task each, on both
//! sides: client connections' streams (the listeners') and peer links' (the HTTP/2 pool).
//!
//! hyper hands every HTTP/2 stream to an executor (a server's request, a client's wait for
//! its response). With tokio's, each stream is a task of its own: spawned, scheduled, and
//! woken across tasks every time it and its connection hand each other a frame, which
//! `bench/instructions.sh PROTO=h2` showed as a large share of an HTTP/2 request.
//! [`InTask`] is an executor that gives the stream to the connection polling at that
//! moment (hyper starts streams only from within its connection's poll), and [`Streams`]
//! polls them beside the connection, in its task. Nothing changes for the streams
//! themselves; what changes is that a connection's task lives until its last stream is
//! done, so the drain (which tracks connection tasks) waits for in-flight HTTP/2 requests
//! too, and the hard cut ends them with it.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    /// The streams started by the connection being polled on this thread, if any.
    static ADOPTING: RefCell<Option<Vec<Stream>>> = const { RefCell::new(None) };
}

/// hyper's executor: hands a stream to the connection polling it, or
/// (never expected: hyper starts streams only while its connection is polled) spawns it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InTask;

impl<F> hyper::rt::Executor<F> for InTask
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let orphan = ADOPTING.with(|slot| match slot.borrow_mut().as_mut() {
            Some(started) => {
                started.push(Box::pin(fut));
                None
            }
            None => Some(fut),
        });
        if let Some(fut) = orphan {
            tokio::spawn(fut);
        }
    }
}

/// The streams of one connection, polled in its task.
#[derive(Default)]
pub(crate) struct Streams {
    running: FuturesUnordered<Stream>,
    /// Kept between polls so that adopting streams allocates only when the set grows.
    started: Vec<Stream>,
}

impl Streams {
    /// Drives `conn` and its streams; ready with the connection's result once the
    /// connection is over and its last stream done.
    pub(crate) fn drive<'a, C>(&'a mut self, mut conn: Pin<&'a mut C>) -> impl Future<Output = C::Output> + 'a
    where
        C: Future,
    {
        let mut done: Option<C::Output> = None;
        poll_fn(move |cx| {
            if done.is_none()
                && let Poll::Ready(out) = self.poll_conn(conn.as_mut(), cx)
            {
                done = Some(out);
            }
            self.poll_streams(cx);
            match done.take() {
                Some(out) if self.running.is_empty() => Poll::Ready(out),
                other => {
                    done = other;
                    Poll::Pending
                }
            }
        })
    }

    /// Polls the connection with this set as the home of the streams it starts.
    fn poll_conn<C: Future>(&mut self, conn: Pin<&mut C>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let spare = std::mem::take(&mut self.started);
        let mut adopting = Adopting { outer: Some(ADOPTING.with(|slot| slot.replace(Some(spare)))) };
        let out = conn.poll(cx);
        self.started = adopting.end();
        self.running.extend(self.started.drain(..));
        out
    }

    /// Polls the streams that are ready; each one's waker wakes this task.
    fn poll_streams(&mut self, cx: &mut Context<'_>) {
        // `FuturesUnordered` returns pending after a bounded number of polls (and wakes the
        // task again), so a busy connection cannot starve the others on the thread.
        while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {}
    }
}

/// The window in which a connection's poll adopts the streams it starts; closed again
/// even if that poll panics, so that a later spawn on this thread is not kept for nobody.
struct Adopting {
    /// The window this one opened inside of (none but for a nested poll); `None` once
    /// closed.
    outer: Option<Option<Vec<Stream>>>,
}

impl Adopting {
    /// Closes the window, returning the streams started in it.
    fn end(&mut self) -> Vec<Stream> {
        let outer = self.outer.take().unwrap_or_default();
        ADOPTING.with(|slot| slot.replace(outer)).unwrap_or_default()
    }
}

impl Drop for Adopting {
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            let _ = ADOPTING.try_with(|slot| slot.replace(outer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A stand-in connection: starts `n` streams on its first poll, then finishes.
    struct Starter {
        n: usize,
        ran: Arc<AtomicUsize>,
        polled: bool,
    }

    impl Future for Starter {
        type Output = &'static str;
        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<&'static str> {
            if !self.polled {
                self.polled = true;
                for _ in 0..self.n {
                    let ran = self.ran.clone();
                    InTask.execute(async move {
                        tokio::task::yield_now().await;
                        ran.fetch_add(1, Ordering::SeqCst);
                    });
                }
            }
            Poll::Ready("closed")
        }
    }

    #[tokio::test]
    async fn the_connection_ends_only_after_its_streams_and_runs_them_in_its_task() {
        let ran = Arc::new(AtomicUsize::new(0));
        let conn = Starter { n: 3, ran: ran.clone(), polled: false };
        tokio::pin!(conn);
        let mut streams = Streams::default();
        let out = streams.drive(conn.as_mut()).await;
        assert_eq!(out, "closed");
        assert_eq!(
            ran.load(Ordering::SeqCst),
            3,
            "every stream ran to its end before the connection's result"
        );
        assert!(streams.running.is_empty());
    }

    #[tokio::test]
    async fn a_stream_started_outside_a_connection_poll_still_runs() {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        InTask.execute(async move {
            r.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        });
        rx.await.expect("the spawned stream ran");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
