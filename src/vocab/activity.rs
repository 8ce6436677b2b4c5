//! Per-connection timers: the request-header deadline (slowloris) and the idle timeout.
//!
//! hyper's own HTTP/1 header timer also runs while a keep-alive connection waits for its
//! next request, so an idle timeout longer than the header timeout would be impossible
//! with it: a load balancer keeping connections warm would see them closed under it, and
//! answer its clients 502. So the proxy keeps its own books: the socket wrapper notes the
//! first byte that arrives while no request is in flight, requests note when they start
//! and end, and one watchdog per connection sleeps until the nearest deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// No timestamp recorded.
const NONE: u64 = u64::MAX;

/// What a connection's requests and socket report to its watchdog.
#[derive(Debug)]
pub struct ConnActivity {
    start: Instant,
    /// Requests whose response has not finished.
    inflight: AtomicU32,
    /// Milliseconds since `start` when the connection last became idle.
    idle_since: AtomicU64,
    /// Milliseconds since `start` of the first byte received while idle; `NONE` if none.
    first_byte: AtomicU64,
    /// HTTP/2 sends frames (SETTINGS, PING) between requests; only the idle timer applies.
    h2: AtomicBool,
    /// Wakes the watchdog when a request head begins on an idle connection: it is then
    /// asleep until the idle deadline, and the header deadline is usually much sooner.
    head_started: Notify,
    /// When the watchdog will next look (milliseconds since `start`; `NONE` before its
    /// first sleep). A head whose deadline falls after it needs no wake-up: under load,
    /// waking the watchdog for every request cost more than the rest of this module.
    wake_at: AtomicU64,
    /// The header timeout in milliseconds, once the watchdog runs; `NONE` before.
    header_ms: AtomicU64,
}

/// Why the watchdog ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request head did not arrive in time: the connection is closed at once.
    HeaderTimeout,
    /// No request for the idle timeout: the connection is closed politely.
    Idle,
}

impl ConnActivity {
    pub fn new() -> Arc<ConnActivity> {
        Arc::new(ConnActivity {
            start: Instant::now(),
            inflight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(NONE),
            h2: AtomicBool::new(false),
            head_started: Notify::new(),
            wake_at: AtomicU64::new(NONE),
            header_ms: AtomicU64::new(NONE),
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Marks a request head as fully received; the returned guard ends it.
    pub fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.first_byte.store(NONE, Ordering::Relaxed);
        ActiveRequest(self.clone())
    }

    /// Whether a request is in flight: a response written while none is was made by the
    /// HTTP layer itself (an answer to a head it could not parse).
    pub(crate) fn busy(&self) -> bool {
        self.inflight.load(Ordering::Relaxed) > 0
    }

    pub fn set_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    pub(crate) fn on_bytes(&self, data: &[u8]) {
        if self.inflight.load(Ordering::Relaxed) == 0 && self.first_byte.load(Ordering::Relaxed) == NONE {
            if data.starts_with(b"PRI * HTTP/2.0") {
                self.set_h2();
            }
            let now = self.now_ms();
            // SeqCst on `first_byte` and `wake_at`, here and in the watchdog: either this
            // sees the watchdog's new wake time, or the watchdog sees this byte.
            self.first_byte.store(now, Ordering::SeqCst);
            let header_ms = self.header_ms.load(Ordering::Relaxed);
            if header_ms == NONE || self.wake_at.load(Ordering::SeqCst) > now.saturating_add(header_ms) {
                // notify_one keeps a permit if the watchdog is not waiting yet: no lost wakeup.
                self.head_started.notify_one();
            }
        }
    }

    /// Resolves when the connection must end. Cheap while requests are in flight: it
    /// checks back at a fraction of the header timeout.
    pub async fn expired(&self, header_timeout: Duration, idle_timeout: Duration) -> Expired {
        let header_ms = header_timeout.as_millis() as u64;
        let idle_ms = idle_timeout.as_millis() as u64;
        self.header_ms.store(header_ms, Ordering::Relaxed);
        loop {
            let now = self.now_ms();
            let first = self.first_byte.load(Ordering::SeqCst);
            let wait = if self.inflight.load(Ordering::Relaxed) > 0 {
                (header_ms / 2).max(1)
            } else {
                if first != NONE && !self.h2.load(Ordering::Relaxed) {
                    let deadline = first.saturating_add(header_ms);
                    if now >= deadline {
                        return Expired::HeaderTimeout;
                    }
                    deadline - now
                } else {
                    let deadline = self.idle_since.load(Ordering::Relaxed).saturating_add(idle_ms);
                    if now >= deadline {
                        return Expired::Idle;
                    }
                    deadline - now
                }
            };
            self.wake_at.store(now.saturating_add(wait), Ordering::SeqCst);
            if self.first_byte.load(Ordering::SeqCst) != first {
                // A head began while this was deciding: decide again.
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = self.head_started.notified() => {}
            }
        }
    }
}

/// One request in flight on a connection; dropping it ends the request.
#[derive(Debug)]
pub struct ActiveRequest(Arc<ConnActivity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let c = &self.0;
        // Only the request that leaves the connection idle stamps when it did (a clock
        // read per request, not per guard: the own HTTP/1.1 path holds two): the stamp
        // goes in before the count drops to zero, so the watchdog never reads an old one.
        let mut n = c.inflight.load(Ordering::Relaxed);
        loop {
            if n == 1 {
                c.idle_since.store(c.now_ms(), Ordering::Relaxed);
            }
            match c.inflight.compare_exchange_weak(
                n,
                n.saturating_sub(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_connection_expires_after_idle_timeout() {
        let a = ConnActivity::new();
        let t0 = Instant::now();
        let why = a.expired(Duration::from_secs(1), Duration::from_secs(5)).await;
        assert_eq!(why, Expired::Idle);
        assert!(t0.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn partial_head_expires_after_header_timeout() {
        let a = ConnActivity::new();
        a.on_bytes(b"GET / HTTP/1.1\r\n");
        let t0 = Instant::now();
        assert_eq!(a.expired(Duration::from_secs(1), Duration::from_secs(5)).await, Expired::HeaderTimeout);
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn head_starting_while_the_watchdog_sleeps_expires_after_header_timeout() {
        let a = ConnActivity::new();
        let watchdog = a.expired(Duration::from_secs(1), Duration::from_secs(75));
        tokio::pin!(watchdog);
        // The watchdog settles into its idle sleep before any byte arrives.
        assert!(tokio::time::timeout(Duration::from_millis(500), watchdog.as_mut()).await.is_err());
        a.on_bytes(b"G");
        let t0 = Instant::now();
        assert_eq!(watchdog.await, Expired::HeaderTimeout);
        assert!(t0.elapsed() <= Duration::from_secs(1), "cut after {:?}", t0.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn head_after_a_request_is_cut_at_its_deadline_without_a_wake_up() {
        let a = ConnActivity::new();
        let req = a.begin();
        let watchdog = a.expired(Duration::from_secs(1), Duration::from_secs(75));
        tokio::pin!(watchdog);
        // In flight: the watchdog checks back in 500 ms.
        assert!(tokio::time::timeout(Duration::from_millis(100), watchdog.as_mut()).await.is_err());
        drop(req);
        assert!(tokio::time::timeout(Duration::from_millis(100), watchdog.as_mut()).await.is_err());
        // A head begins at 200 ms; its deadline (1.2 s) is after the watchdog's next look.
        let t0 = Instant::now();
        a.on_bytes(b"GET / HTTP/1.1\r\n");
        assert_eq!(watchdog.await, Expired::HeaderTimeout);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(999) && took <= Duration::from_millis(1010),
            "cut after {took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn h2_preface_only_idles() {
        let a = ConnActivity::new();
        a.on_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(a.expired(Duration::from_secs(1), Duration::from_secs(5)).await, Expired::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connection_never_expires() {
        let a = ConnActivity::new();
        let req = a.begin();
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            a.expired(Duration::from_secs(1), Duration::from_secs(5)),
        )
        .await;
        assert!(r.is_err(), "a connection with a request in flight must not expire");
        drop(req);
        let t0 = Instant::now();
        assert_eq!(a.expired(Duration::from_secs(1), Duration::from_secs(5)).await, Expired::Idle);
        assert!(t0.elapsed() >= Duration::from_secs(4));
    }
}
