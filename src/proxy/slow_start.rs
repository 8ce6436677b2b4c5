//! Slow start: an endpoint or a region that comes back gets its share of traffic back over
//! a window, not at once (its caches and connection pools are cold, and a full share at
//! once is how a recovering member is knocked over again).
//!
//! Times are milliseconds on a clock of the ramp's own, on which 0 lies before any window
//! could have begun: "usable since 0" is how boot starts, warm, with no ramp.

use std::time::Duration;

use tokio::time::Instant;

/// The slow-start ramp of one endpoint set or peer region.
#[derive(Debug)]
pub(crate) struct SlowStart {
    epoch: Instant,
    /// The ramp's length; 0 turns slow start off.
    window_ms: u64,
}

impl SlowStart {
    pub(crate) fn new(window: Duration) -> SlowStart {
        SlowStart { epoch: Instant::now(), window_ms: window.as_millis() as u64 }
    }

    /// Now, on this ramp's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        // Offset so that 0 always means "long ago", before any window.
        self.epoch.elapsed().as_millis() as u64 + self.epoch_ms()
    }

    /// What [`now_ms`](Self::now_ms) read at the epoch: no later than any now, and past
    /// the window of anything usable since 0, so it stands in for now when only such
    /// things are compared (and the clock need not be read).
    pub(crate) fn epoch_ms(&self) -> u64 {
        self.window_ms + 1
    }

    /// The share taken at `now` by what became usable at `since`, in [0.05, 1].
    pub(crate) fn factor(&self, since: u64, now: u64) -> f64 {
        if self.window_ms == 0 || now >= since + self.window_ms {
            return 1.0;
        }
        // Never zero, so a lone returning endpoint or region still gets a trickle of
        // requests that proves it. `since` can lie ahead of `now` (an ejected endpoint
        // whose comeback is set for later, read in panic mode): that is the start of the
        // ramp, not a huge factor.
        (now.saturating_sub(since) as f64 / self.window_ms as f64).max(0.05)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_ramp_is_linear_from_a_trickle_to_full() {
        let ramp = SlowStart::new(Duration::from_secs(10));
        assert_eq!(ramp.factor(0, ramp.now_ms()), 1.0, "usable since long ago: warm");
        let since = ramp.now_ms();
        assert_eq!(ramp.factor(since, since), 0.05);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!((ramp.factor(since, ramp.now_ms()) - 0.5).abs() < 0.01);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(ramp.factor(since, ramp.now_ms()), 1.0);
        assert_eq!(ramp.factor(ramp.now_ms() + 1_000, ramp.now_ms()), 0.05, "a start still ahead");
        assert_eq!(ramp.factor(0, ramp.epoch_ms()), 1.0, "warm at the epoch already");
        assert!(ramp.epoch_ms() <= ramp.now_ms());
        let off = SlowStart::new(Duration::ZERO);
        assert_eq!(off.factor(off.now_ms(), off.now_ms()), 1.0);
    }
}
