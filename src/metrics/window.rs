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
pub(crate) struct Window {
    buckets: Vec<Bucket>,
}

/// What a window holds over a span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Stats {
    pub(crate) total: u32,
    pub(crate) failed: u32,
    pub(crate) mean_latency: Duration,
}

impl Stats {
    pub(crate) fn failure_ratio(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.failed as f64 / self.total as f64 }
    }
}

impl Window {
    pub(crate) fn new() -> Window {
        Window { buckets: (0..BUCKETS).map(|_| Bucket::default()).collect() }
    }

    pub(crate) fn record(&self, second: u64, failed: bool, latency: Duration) {
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

    pub(crate) fn stats(&self, now_second: u64, span_seconds: u64) -> Stats {
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
pub(crate) struct RateWindow {
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
        self.second_at(Instant::now())
    }

    fn second_at(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() + 1
    }

    /// One answered request; `error` for a 5xx.
    pub(crate) fn record(&self, error: bool) {
        self.record_at(Instant::now(), error);
    }

    /// [`record`](Self::record) at `now`, for a caller recording into several windows
    /// with one clock read.
    pub(crate) fn record_at(&self, now: Instant, error: bool) {
        self.window.record(self.second_at(now), error, Duration::ZERO);
    }

    /// Requests per second and the share that were errors, over the last `span` seconds
    /// (or since start, when that is shorter). The current second is not complete, so it
    /// is left out of the rate.
    pub(crate) fn rate(&self, span: u64) -> (f64, f64) {
        let now = self.second();
        let complete = now.saturating_sub(1);
        let span = span.min(complete).max(1);
        let s = self.window.stats(complete, span);
        (s.total as f64 / span as f64, s.failure_ratio())
    }
}

/// Upper bounds (milliseconds) of the latency bins a [`TargetWindow`] keeps; the last bin
/// is open-ended.
const LATENCY_BINS_MS: [f64; 14] =
    [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0];

#[derive(Debug, Default)]
struct LatencyBucket {
    second: AtomicU64,
    total: AtomicU32,
    failed: AtomicU32,
    /// Of `failed`, the 503s a proxy made itself to shed load: capacity, not failure.
    shed: AtomicU32,
    bins: [AtomicU32; LATENCY_BINS_MS.len() + 1],
}

/// Requests sent to one target region, per second: rate, 5xx share and a coarse latency
/// histogram, for the per-target figures of `/v1/status` and the figures a region
/// reports about itself in its health answer. A sample costs three atomic adds.
#[derive(Debug)]
pub(crate) struct TargetWindow {
    epoch: Instant,
    buckets: Vec<LatencyBucket>,
}

/// What a [`TargetWindow`] holds over a span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct TargetStats {
    pub(crate) rps: f64,
    pub(crate) error_ratio: f64,
    pub(crate) latency_ms_p50: f64,
    /// Requests in the span (the figures mean little over a handful).
    pub(crate) requests: u64,
    /// The 5xx share leaving out load shed by a proxy (`x-flowgate-error: shed`): what
    /// region outlier detection judges, since capacity has its own spill and shedding.
    pub(crate) failure_ratio: f64,
    /// Requests in the span that were not shed.
    pub(crate) unshed: u64,
}

impl Default for TargetWindow {
    fn default() -> Self {
        TargetWindow {
            epoch: Instant::now(),
            buckets: (0..BUCKETS).map(|_| LatencyBucket::default()).collect(),
        }
    }
}

impl TargetWindow {
    fn second(&self) -> u64 {
        self.second_at(Instant::now())
    }

    fn second_at(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() + 1
    }

    /// One answered request; `error` for a 5xx.
    pub(crate) fn record(&self, error: bool, latency: Duration) {
        self.record_answer_at(Instant::now(), error, false, latency);
    }

    /// One request answered at `at` (the clock read its latency came from); `error` for a
    /// 5xx, `shed` when that 5xx is a proxy shedding load.
    pub(crate) fn record_answer_at(&self, at: Instant, error: bool, shed: bool, latency: Duration) {
        let second = self.second_at(at);
        let b = &self.buckets[(second as usize) % BUCKETS];
        if b.second.swap(second, Ordering::Relaxed) != second {
            b.total.store(0, Ordering::Relaxed);
            b.failed.store(0, Ordering::Relaxed);
            b.shed.store(0, Ordering::Relaxed);
            for bin in &b.bins {
                bin.store(0, Ordering::Relaxed);
            }
        }
        b.total.fetch_add(1, Ordering::Relaxed);
        if error {
            b.failed.fetch_add(1, Ordering::Relaxed);
            if shed {
                b.shed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let ms = latency.as_secs_f64() * 1000.0;
        let bin = LATENCY_BINS_MS.iter().position(|up| ms <= *up).unwrap_or(LATENCY_BINS_MS.len());
        b.bins[bin].fetch_add(1, Ordering::Relaxed);
    }

    /// Figures over the last `span` complete seconds (or since start, when shorter).
    pub(crate) fn stats(&self, span: u64) -> TargetStats {
        let complete = self.second().saturating_sub(1);
        let span = span.min(complete).max(1);
        let (mut total, mut failed, mut shed) = (0u64, 0u64, 0u64);
        let mut bins = [0u64; LATENCY_BINS_MS.len() + 1];
        for b in &self.buckets {
            let sec = b.second.load(Ordering::Relaxed);
            if sec + span > complete && sec <= complete {
                total += b.total.load(Ordering::Relaxed) as u64;
                failed += b.failed.load(Ordering::Relaxed) as u64;
                shed += b.shed.load(Ordering::Relaxed) as u64;
                for (sum, bin) in bins.iter_mut().zip(&b.bins) {
                    *sum += bin.load(Ordering::Relaxed) as u64;
                }
            }
        }
        TargetStats {
            rps: total as f64 / span as f64,
            error_ratio: if total == 0 { 0.0 } else { failed as f64 / total as f64 },
            latency_ms_p50: median(&bins),
            requests: total,
            failure_ratio: if total > shed { (failed - shed) as f64 / (total - shed) as f64 } else { 0.0 },
            unshed: total - shed,
        }
    }
}

/// The median of a binned histogram, interpolated linearly inside its bin.
fn median(bins: &[u64; LATENCY_BINS_MS.len() + 1]) -> f64 {
    let total: u64 = bins.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let half = total as f64 / 2.0;
    let mut seen = 0u64;
    for (i, n) in bins.iter().enumerate() {
        if *n > 0 && (seen + n) as f64 >= half {
            let lo = if i == 0 { 0.0 } else { LATENCY_BINS_MS[i - 1] };
            // The open bin has no upper bound: report its lower one.
            let Some(hi) = LATENCY_BINS_MS.get(i) else { return lo };
            return lo + (hi - lo) * ((half - seen as f64) / *n as f64);
        }
        seen += n;
    }
    0.0
}

#[cfg(test)]
mod target_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn load_shed_by_a_proxy_is_not_a_failure_for_outlier_detection() {
        let w = TargetWindow::default();
        tokio::time::advance(Duration::from_millis(1500)).await;
        for i in 0..10 {
            w.record_answer_at(Instant::now(), i < 4, i < 2, Duration::from_millis(3));
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let s = w.stats(10);
        assert_eq!((s.requests, s.unshed), (10, 8));
        assert!((s.error_ratio - 0.4).abs() < 1e-9, "every 5xx counts in the figures");
        assert!((s.failure_ratio - 0.25).abs() < 1e-9, "{}", s.failure_ratio);
    }

    #[tokio::test(start_paused = true)]
    async fn target_window_reports_rate_errors_and_median() {
        let w = TargetWindow::default();
        tokio::time::advance(Duration::from_millis(1500)).await;
        for i in 0..10 {
            w.record(i < 3, Duration::from_millis(if i < 5 { 3 } else { 30 }));
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let s = w.stats(1);
        assert_eq!(s.requests, 10);
        assert!((s.rps - 10.0).abs() < 1e-9);
        assert!((s.error_ratio - 0.3).abs() < 1e-9);
        // Five samples in (2, 5] ms and five in (20, 50]: the median is the top of the first.
        assert!((s.latency_ms_p50 - 5.0).abs() < 1e-9, "{}", s.latency_ms_p50);
        // Sixty-five seconds later the samples have left the window.
        tokio::time::advance(Duration::from_secs(65)).await;
        assert_eq!(w.stats(60).requests, 0);
    }
}
