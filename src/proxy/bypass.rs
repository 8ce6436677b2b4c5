//! Judging a peer region's load balancer, for `peer_modes = auto`.
//!
//! The proxy sees every request it sends through the load balancer, and probes both the
//! load balancer and the region's proxies. Over a sliding window it compares the load
//! balancer's failure share (connect failures, 502, 503, 429) and latency with the direct
//! path's; when the load balancer looks overloaded it switches the peer to direct, and
//! switches back only after the load balancer has looked well for `recover_after`
//! (hysteresis, so the path does not flap). The counters are lock-free buckets of one
//! second each, so recording a sample costs a few atomic adds.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config;

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
    fn new() -> Window {
        Window { buckets: (0..BUCKETS).map(|_| Bucket::default()).collect() }
    }

    fn record(&self, second: u64, failed: bool, latency: Duration) {
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

    fn stats(&self, now_second: u64, span_seconds: u64) -> Stats {
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

/// The bypass state of one peer region.
#[derive(Debug)]
pub struct BypassJudge {
    cfg: config::Bypass,
    epoch: Instant,
    lb: Window,
    direct: Window,
    active: AtomicBool,
    /// Seconds since the epoch of the last load-balancer sample that looked bad.
    last_bad_lb: AtomicU64,
    /// When the bypass last turned on.
    since: AtomicU64,
}

impl BypassJudge {
    pub fn new(cfg: config::Bypass) -> BypassJudge {
        BypassJudge {
            cfg,
            epoch: Instant::now(),
            lb: Window::new(),
            direct: Window::new(),
            active: AtomicBool::new(false),
            last_bad_lb: AtomicU64::new(0),
            since: AtomicU64::new(0),
        }
    }

    fn now_second(&self) -> u64 {
        // +1 so that 0 means "never".
        self.epoch.elapsed().as_secs() + 1
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// A request or probe through the load balancer. `failed` is a connect failure,
    /// reset, 502, 503 or 429.
    pub fn record_lb(&self, failed: bool, latency: Duration) {
        let now = self.now_second();
        self.lb.record(now, failed, latency);
        if failed || self.too_slow(latency) {
            self.last_bad_lb.store(now, Ordering::Relaxed);
        }
    }

    /// A request or probe straight to the region's proxies.
    pub fn record_direct(&self, failed: bool, latency: Duration) {
        self.direct.record(self.now_second(), failed, latency);
    }

    fn direct_latency(&self) -> Duration {
        let span = self.cfg.window.as_secs().max(1);
        self.direct.stats(self.now_second(), span * 6).mean_latency
    }

    fn too_slow(&self, latency: Duration) -> bool {
        let direct = self.direct_latency();
        latency > self.cfg.latency_floor
            && latency.as_secs_f64() > direct.as_secs_f64() * self.cfg.latency_factor
    }

    /// Re-judges the load balancer; returns the new state when it changed. `direct_usable`
    /// says whether the region's proxies can take the traffic at all.
    pub fn evaluate(&self, direct_usable: bool) -> Option<bool> {
        let now = self.now_second();
        let span = self.cfg.window.as_secs().max(1);
        if !self.is_active() {
            let lb = self.lb.stats(now, span);
            let overloaded = lb.total >= self.cfg.min_samples
                && (lb.failure_ratio() > self.cfg.failure_ratio || self.too_slow(lb.mean_latency));
            if overloaded && direct_usable {
                self.active.store(true, Ordering::Relaxed);
                self.since.store(now, Ordering::Relaxed);
                tracing::warn!(failure_ratio = lb.failure_ratio(), latency = ?lb.mean_latency, "bypassing the peer's load balancer");
                return Some(true);
            }
        } else {
            let recover = self.cfg.recover_after.as_secs().max(1);
            let calm = now.saturating_sub(self.last_bad_lb.load(Ordering::Relaxed)) >= recover
                && now.saturating_sub(self.since.load(Ordering::Relaxed)) >= recover;
            let seen = self.lb.stats(now, recover).total > 0;
            if (calm && seen) || !direct_usable {
                self.active.store(false, Ordering::Relaxed);
                tracing::info!("the peer's load balancer looks well again; using it");
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> config::Bypass {
        config::Bypass {
            window: Duration::from_secs(5),
            min_samples: 10,
            failure_ratio: 0.2,
            latency_factor: 3.0,
            latency_floor: Duration::from_millis(100),
            recover_after: Duration::from_secs(3),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_turn_it_on_and_calm_turns_it_off() {
        let j = BypassJudge::new(cfg());
        for i in 0..20 {
            j.record_lb(i % 2 == 0, Duration::from_millis(2));
            j.record_direct(false, Duration::from_millis(1));
        }
        assert_eq!(j.evaluate(true), Some(true));
        assert!(j.is_active());
        assert_eq!(j.evaluate(true), None, "stays on while nothing new is known");
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            j.record_lb(false, Duration::from_millis(2));
        }
        assert_eq!(j.evaluate(true), Some(false));
    }

    #[tokio::test(start_paused = true)]
    async fn latency_far_above_direct_turns_it_on() {
        let j = BypassJudge::new(cfg());
        for _ in 0..20 {
            j.record_direct(false, Duration::from_millis(2));
        }
        for _ in 0..20 {
            j.record_lb(false, Duration::from_millis(500));
        }
        assert_eq!(j.evaluate(true), Some(true));
    }

    #[tokio::test(start_paused = true)]
    async fn too_few_samples_or_no_direct_path_do_not() {
        let j = BypassJudge::new(cfg());
        for _ in 0..5 {
            j.record_lb(true, Duration::from_millis(2));
        }
        assert_eq!(j.evaluate(true), None);
        for _ in 0..20 {
            j.record_lb(true, Duration::from_millis(2));
        }
        assert_eq!(j.evaluate(false), None, "no bypass when the proxies are down too");
    }
}
