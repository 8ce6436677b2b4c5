//! Lock-free sliding windows of per-second buckets: a sample costs a few atomic adds, a
//! read sums the buckets of the span asked for. Used for the load-balancer judgement and
//! for the request rate and error ratio that `/v1/status` reports.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

const BUCKETS: usize = 64;

#[derive(Debug, Default)]
struct Bucket {
    second: AtomicU64,
    total: AtomicU32,
    failed: AtomicU32,
    latency_us: AtomicU64,
}

/// Samples of one path over the last `BUCKETS` seconds.
#[derive(Debug)]
pub struct Window {
    buckets: Vec<Bucket>,
}

/// What a window holds over a span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub total: u32,
    pub failed: u32,
    pub mean_latency: Duration,
}

impl Stats {
    pub fn failure_ratio(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.failed as f64 / self.total as f64 }
    }
}

impl Window {
    pub fn new() -> Window {
        Window { buckets: (0..BUCKETS).map(|_| Bucket::default()).collect() }
    }

    pub fn record(&self, second: u64, failed: bool, latency: Duration) {
        let b = &self.buckets[(second as usize) % BUCKETS];
        if b.second.swap(second, Ordering::Relaxed) != second {
            // A bucket from a lap ago: start it over. A racing sample may be lost; the
            // judgement is statistical and tolerates it.
            b.total.store(0, Ordering::Relaxed);
            b.failed.store(0, Ordering::Relaxed);
            b.latency_us.store(0, Ordering::Relaxed);
        }
        b.total.fetch_add(1, Ordering::Relaxed);
        if failed {
            b.failed.fetch_add(1, Ordering::Relaxed);
        }
        b.latency_us.fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn stats(&self, now_second: u64, span_seconds: u64) -> Stats {
        let mut s = Stats::default();
        let mut latency_us = 0u64;
        for b in &self.buckets {
            let sec = b.second.load(Ordering::Relaxed);
            if sec + span_seconds > now_second && sec <= now_second {
                s.total += b.total.load(Ordering::Relaxed);
                s.failed += b.failed.load(Ordering::Relaxed);
                latency_us += b.latency_us.load(Ordering::Relaxed);
            }
        }
        if s.total > 0 {
            s.mean_latency = Duration::from_micros(latency_us / s.total as u64);
        }
        s
    }
}

impl Default for Window {
    fn default() -> Self {
        Window::new()
    }
}

/// Requests answered by this proxy, per second, for `rps` and `error_ratio`.
#[derive(Debug)]
pub struct RateWindow {
    epoch: Instant,
    window: Window,
}

impl Default for RateWindow {
    fn default() -> Self {
        RateWindow { epoch: Instant::now(), window: Window::new() }
    }
}

impl RateWindow {
    fn second(&self) -> u64 {
        self.epoch.elapsed().as_secs() + 1
    }

    /// One answered request; `error` for a 5xx.
    pub fn record(&self, error: bool) {
        self.window.record(self.second(), error, Duration::ZERO);
    }

    /// Requests per second and the share that were errors, over the last `span` seconds
    /// (or since start, when that is shorter). The current second is not complete, so it
    /// is left out of the rate.
    pub fn rate(&self, span: u64) -> (f64, f64) {
        let now = self.second();
        let complete = now.saturating_sub(1);
        let span = span.min(complete).max(1);
        let s = self.window.stats(complete, span);
        (s.total as f64 / span as f64, s.failure_ratio())
    }
}
