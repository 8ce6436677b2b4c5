//! A future that is polled again only once it has asked to be, for the branches of a
//! connection's `select!` that rarely fire (the watchdog, drain, the drain cut).
//!
//! `select!` polls every branch each time its task wakes, and a connection's task wakes
//! several times per request (the client's bytes, the upstream's answer): polling a timer,
//! a `Notify` and a cancellation token each time cost more than a tenth of a proxied
//! request's instructions. [`Gated`] gives its future a waker of its own, which notes the
//! wake-up and passes it on to the task, and skips the poll while none came.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// `fut`, polled only after its own waker was woken (and on the first poll).
pub(crate) struct Gated<'a, F> {
    fut: Pin<&'a mut F>,
    signal: Arc<Signal>,
    waker: Waker,
}

/// What the gated future's waker does: remember it was woken, and wake the task.
#[derive(Default)]
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<'a, F: Future> Gated<'a, F> {
    pub(crate) fn new(fut: Pin<&'a mut F>) -> Gated<'a, F> {
        let signal = Arc::new(Signal { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        let waker = Waker::from(signal.clone());
        Gated { fut, signal, waker }
    }
}

impl<F: Future> Future for Gated<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake-up in between still wakes the task.
        this.signal.task.register(cx.waker());
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.fut.as_mut().poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_gated_timer_still_fires() {
        let sleep = pin!(tokio::time::sleep(Duration::from_secs(5)));
        let mut gated = Gated::new(sleep);
        let t0 = tokio::time::Instant::now();
        (&mut gated).await;
        assert!(t0.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_gated_notify_wakes_the_select() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let notified = pin!(notify.notified());
        let mut gated = Gated::new(notified);
        let n = notify.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            n.notify_waiters();
        });
        tokio::select! {
            _ = &mut gated => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("the notify was lost"),
        }
    }
}
