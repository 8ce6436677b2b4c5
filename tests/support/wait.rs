//! Bounded polling instead of fixed pauses: wait for what a test needs (a table applied, a
//! health verdict flipped, a log line), at most a limit, and say what was awaited when it
//! never comes.
//!
//! Every probe runs at once, then every `POLL` (or the interval given) until it holds or
//! the limit is reached; a last probe runs at the limit itself.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// The pace of the waits below.
pub const POLL: Duration = Duration::from_millis(20);

/// Runs `probe` until it returns `Ok`, every `every`, at most `limit`: its value, or the
/// last `Err`.
pub async fn poll<T, E, F, Fut>(limit: Duration, every: Duration, mut probe: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(last);
        }
        tokio::time::sleep(every.min(deadline - now)).await;
    }
}

/// How long `cond` took to hold, or `None` when it still did not after `limit`.
pub async fn within<F, Fut>(limit: Duration, mut cond: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let t0 = Instant::now();
    let held = poll(limit, POLL, || {
        let f = cond();
        async move { if f.await { Ok(()) } else { Err(()) } }
    })
    .await;
    held.ok().map(|()| t0.elapsed())
}

/// Waits until `cond` holds, at most `limit`; how long that took. Panics naming `what`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(limit, cond).await.unwrap_or_else(|| panic!("waited {limit:?} for {what}, in vain"))
}

/// Waits until `probe` returns `Ok`, at most `limit`, and returns its value. Panics naming
/// `what` and the last `Err` (what was seen instead).
pub async fn wait_for<T, E, F, Fut>(what: &str, limit: Duration, probe: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    wait_for_every(what, limit, POLL, probe).await
}

/// `wait_for` at another pace (for probes that cost something, e.g. many proxies asked).
pub async fn wait_for_every<T, E, F, Fut>(what: &str, limit: Duration, every: Duration, probe: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    match poll(limit, every, probe).await {
        Ok(v) => v,
        Err(last) => panic!("waited {limit:?} for {what}, in vain; last seen: {last}"),
    }
}

/// `poll` for code off the runtime (threads, blocking tests).
pub fn poll_blocking<T, E>(
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(last);
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

/// `wait_until` for code off the runtime.
pub fn wait_until_blocking(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    match poll_blocking(limit, POLL, || if cond() { Ok(()) } else { Err(()) }) {
        Ok(()) => t0.elapsed(),
        Err(_) => panic!("waited {limit:?} for {what}, in vain"),
    }
}
