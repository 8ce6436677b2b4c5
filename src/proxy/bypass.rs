//! Judging a peer region's load balancer, for `peer_modes = auto`.
//!
//! The proxy sees every request it sends through the load balancer, and probes both the
//! load balancer and the region's proxies. Over a sliding window it compares the load
//! balancer's failure share (connect failures, 502, 503, 429) and latency with the direct
//! path's; when the load balancer looks overloaded it switches the peer to direct, and
//! switches back only after the load balancer has looked well for `recover_after`
//! (hysteresis, so the path does not flap). The samples go to lock-free per-second
//! windows, so recording one costs a few atomic adds.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config;
use crate::metrics::window::Window;

/// The bypass state of one peer region.
#[derive(Debug)]
pub(crate) struct BypassJudge {
    cfg: config::Bypass,
    epoch: Instant,
    lb: Window,
    direct: Window,
    active: AtomicBool,
    /// Seconds since the epoch of the last load-balancer sample that looked bad.
    last_bad_lb: AtomicU64,
    /// When the bypass last turned on.
    since: AtomicU64,
    /// Load-balancer samples in a row that looked well. The bypass lifts only after
    /// `min_samples` of them: while bypassed the load balancer sees probes only, and one
    /// or two lucky probes of one that still fails half its requests prove nothing.
    good_streak: AtomicU32,
}

impl BypassJudge {
    pub(crate) fn new(cfg: config::Bypass) -> BypassJudge {
        BypassJudge {
            cfg,
            epoch: Instant::now(),
            lb: Window::new(),
            direct: Window::new(),
            active: AtomicBool::new(false),
            last_bad_lb: AtomicU64::new(0),
            since: AtomicU64::new(0),
            good_streak: AtomicU32::new(0),
        }
    }

    fn now_second(&self) -> u64 {
        // +1 so that 0 means "never".
        self.epoch.elapsed().as_secs() + 1
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// A request or probe through the load balancer. `failed` is a connect failure,
    /// reset, 502, 503 or 429.
    pub(crate) fn record_lb(&self, failed: bool, latency: Duration) {
        let now = self.now_second();
        self.lb.record(now, failed, latency);
        if failed || self.too_slow(latency) {
            self.last_bad_lb.store(now, Ordering::Relaxed);
            self.good_streak.store(0, Ordering::Relaxed);
        } else {
            self.good_streak.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request or probe straight to the region's proxies.
    pub(crate) fn record_direct(&self, failed: bool, latency: Duration) {
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
    pub(crate) fn evaluate(&self, direct_usable: bool) -> Option<bool> {
        let now = self.now_second();
        let span = self.cfg.window.as_secs().max(1);
        if !self.is_active() {
            let lb = self.lb.stats(now, span);
            let overloaded = lb.total >= self.cfg.min_samples
                && (lb.failure_ratio() > self.cfg.failure_ratio || self.too_slow(lb.mean_latency));
            if overloaded && direct_usable {
                self.active.store(true, Ordering::Relaxed);
                self.since.store(now, Ordering::Relaxed);
                self.good_streak.store(0, Ordering::Relaxed);
                tracing::warn!(failure_ratio = lb.failure_ratio(), latency = ?lb.mean_latency, "bypassing the peer's load balancer");
                return Some(true);
            }
        } else {
            let recover = self.cfg.recover_after.as_secs().max(1);
            let calm = now.saturating_sub(self.last_bad_lb.load(Ordering::Relaxed)) >= recover
                && now.saturating_sub(self.since.load(Ordering::Relaxed)) >= recover;
            let proven = self.good_streak.load(Ordering::Relaxed) >= self.cfg.min_samples;
            if (calm && proven) || !direct_usable {
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
            j.record_lb(false, Duration::from_millis(2));
        }
        assert_eq!(j.evaluate(true), Some(false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_few_good_probes_of_a_failing_lb_do_not_turn_it_off() {
        let j = BypassJudge::new(cfg());
        for i in 0..20 {
            j.record_lb(i % 2 == 0, Duration::from_millis(2));
        }
        assert_eq!(j.evaluate(true), Some(true));
        // Bypassed, the load balancer only sees probes: a second apart, all lucky.
        for _ in 0..6 {
            tokio::time::advance(Duration::from_secs(1)).await;
            j.record_lb(false, Duration::from_millis(2));
        }
        assert_eq!(j.evaluate(true), None, "6 good samples are fewer than min_samples");
        j.record_lb(true, Duration::from_millis(2));
        for _ in 0..10 {
            j.record_lb(false, Duration::from_millis(2));
        }
        assert_eq!(j.evaluate(true), None, "not calm: a bad sample just now");
        tokio::time::advance(Duration::from_secs(3)).await;
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
