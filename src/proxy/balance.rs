//! A set of endpoints and how to choose one: power of two choices on outstanding
//! requests, skipping endpoints that active health checks or outlier detection took out,
//! with slow start for returning endpoints and a panic threshold.
//!
//! Why p2c on outstanding requests: it needs no global view, costs two random draws, and
//! steers away from a slow endpoint as soon as its queue grows, where round-robin keeps
//! feeding it. Why a panic threshold: when most of a set looks unhealthy, the checks are
//! more likely wrong than the endpoints, and crushing the few survivors turns a partial
//! outage into a full one (Envoy's `healthy_panic_threshold`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::uri::Authority;
use rand::{Rng, RngExt};
use tokio::sync::Notify;

use super::slow_start::SlowStart;
use crate::config;

/// The knobs of one set, taken from `[health]`, `[outlier]` and `[balance]`.
#[derive(Debug, Clone)]
pub(crate) struct SetPolicy {
    pub(crate) healthy_threshold: u32,
    pub(crate) unhealthy_threshold: u32,
    pub(crate) consecutive_failures: u32,
    pub(crate) base_ejection: Duration,
    pub(crate) max_ejection: Duration,
    pub(crate) max_ejected_percent: u32,
    pub(crate) panic_threshold_percent: u32,
    pub(crate) slow_start: Duration,
}

impl SetPolicy {
    pub(crate) fn from_config(cfg: &config::Config) -> SetPolicy {
        SetPolicy {
            healthy_threshold: cfg.health.healthy_threshold,
            unhealthy_threshold: cfg.health.unhealthy_threshold,
            consecutive_failures: cfg.outlier.consecutive_failures,
            base_ejection: cfg.outlier.base_ejection,
            max_ejection: cfg.outlier.max_ejection,
            max_ejected_percent: cfg.outlier.max_ejected_percent,
            panic_threshold_percent: cfg.balance.panic_threshold_percent,
            slow_start: cfg.balance.slow_start,
        }
    }
}

/// One endpoint and what the proxy has seen of it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) authority: Authority,
    /// Requests sent and not yet answered (the p2c load).
    outstanding: AtomicU32,
    /// Active health: the verdict of the probes.
    healthy: AtomicBool,
    /// Outside this proxy's subset of a peer region's proxies (`subset`): neither probed
    /// nor chosen, and not counted. Always false in a set without subsetting.
    standby: AtomicBool,
    probe_ok_streak: AtomicU32,
    probe_fail_streak: AtomicU32,
    /// Passive health: consecutive failed requests.
    failures: AtomicU32,
    /// Until when the endpoint is ejected, on the set's slow-start clock (0: not).
    ejected_until: AtomicU64,
    /// Ejections so far; the next ejection lasts longer.
    ejections: AtomicU32,
    /// When it last became usable (on the set's slow-start clock).
    usable_since: AtomicU64,
    /// Signalled when real requests failed `consecutive_failures` times in a row, so that
    /// the active probe checks the endpoint now rather than at its next interval. (The
    /// ejection cap may forbid ejecting it, e.g. the only endpoint of a set; the probe
    /// verdict then still comes in a fraction of an interval.)
    suspect: Notify,
}

/// Counts a request against an endpoint's outstanding load until dropped.
#[derive(Debug)]
pub(crate) struct Outstanding<'a>(&'a Endpoint);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A set of endpoints serving the same thing (an origin's instances, a peer's proxies).
#[derive(Debug)]
pub(crate) struct EndpointSet {
    endpoints: Vec<Endpoint>,
    policy: SetPolicy,
    /// The clock of ejections and returns, and the ramp of returning endpoints.
    ramp: SlowStart,
}

impl EndpointSet {
    pub(crate) fn new(authorities: Vec<Authority>, policy: SetPolicy) -> EndpointSet {
        let endpoints = authorities
            .into_iter()
            .map(|authority| Endpoint {
                authority,
                outstanding: AtomicU32::new(0),
                // Optimistic start: a new proxy serves at once; the first probes correct it.
                healthy: AtomicBool::new(true),
                standby: AtomicBool::new(false),
                probe_ok_streak: AtomicU32::new(0),
                probe_fail_streak: AtomicU32::new(0),
                failures: AtomicU32::new(0),
                ejected_until: AtomicU64::new(0),
                ejections: AtomicU32::new(0),
                // Usable since before the epoch: no slow start at boot.
                usable_since: AtomicU64::new(0),
                suspect: Notify::new(),
            })
            .collect();
        let ramp = SlowStart::new(policy.slow_start);
        EndpointSet { endpoints, policy, ramp }
    }

    fn now_ms(&self) -> u64 {
        self.ramp.now_ms()
    }

    /// Now, for a read that only compares stamps against it (not one that stamps). While
    /// no endpoint has been ejected or come back (the steady state), every stamp is 0 and
    /// any now gives the same answer: the epoch's stands in, and choosing a target and an
    /// endpoint reads no clock (it read three per proxied request). A stamp set while
    /// this looks is in the future or the present, which the epoch judges alike.
    fn read_now_ms(&self) -> u64 {
        let stamped = self.endpoints.iter().any(|e| {
            e.ejected_until.load(Ordering::Relaxed) != 0 || e.usable_since.load(Ordering::Relaxed) != 0
        });
        if stamped { self.now_ms() } else { self.ramp.epoch_ms() }
    }

    pub(crate) fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Endpoint> {
        self.endpoints.get(i)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter()
    }

    fn usable_at(&self, e: &Endpoint, now: u64) -> bool {
        e.healthy.load(Ordering::Relaxed)
            && !e.standby.load(Ordering::Relaxed)
            && e.ejected_until.load(Ordering::Relaxed) <= now
    }

    fn active(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(|e| !e.standby.load(Ordering::Relaxed))
    }

    /// Endpoints not on standby: the ones probed and chosen.
    pub(crate) fn active_count(&self) -> usize {
        self.active().count()
    }

    pub(crate) fn is_standby(&self, i: usize) -> bool {
        self.endpoints.get(i).is_some_and(|e| e.standby.load(Ordering::Relaxed))
    }

    /// Takes endpoint `i` out of use (`true`) or back in. One that comes back is
    /// unproven: what was known of it is stale, and it takes traffic only once
    /// `healthy_threshold` probes passed (its first goes out at once). Optimism here would
    /// let stand-ins for dead members keep a dead region looking alive for another round
    /// of probes. Returns whether anything changed.
    pub(crate) fn set_standby(&self, i: usize, standby: bool) -> bool {
        let Some(e) = self.endpoints.get(i) else { return false };
        if e.standby.swap(standby, Ordering::Relaxed) == standby {
            return false;
        }
        if !standby {
            e.healthy.store(false, Ordering::Relaxed);
            e.probe_ok_streak.store(0, Ordering::Relaxed);
            e.probe_fail_streak.store(0, Ordering::Relaxed);
            e.failures.store(0, Ordering::Relaxed);
            e.ejected_until.store(0, Ordering::Relaxed);
        }
        true
    }

    /// Endpoints that probes call healthy and outlier detection has not ejected.
    pub(crate) fn usable_count(&self) -> usize {
        let now = self.read_now_ms();
        self.endpoints.iter().filter(|e| self.usable_at(e, now)).count()
    }

    pub(crate) fn healthy_count(&self) -> usize {
        self.active().filter(|e| e.healthy.load(Ordering::Relaxed)).count()
    }

    /// Whether the set can take traffic at all.
    pub(crate) fn any_usable(&self) -> bool {
        let now = self.read_now_ms();
        self.endpoints.iter().any(|e| self.usable_at(e, now))
    }

    /// Slow-start factor of the set as a whole, in (0, 1]: the mean over usable endpoints.
    pub(crate) fn warmth(&self) -> f64 {
        let now = self.read_now_ms();
        let (mut sum, mut n) = (0.0, 0u32);
        for e in &self.endpoints {
            if self.usable_at(e, now) {
                sum += self.factor(e, now);
                n += 1;
            }
        }
        if n == 0 { 0.0 } else { sum / n as f64 }
    }

    fn factor(&self, e: &Endpoint, now: u64) -> f64 {
        self.ramp.factor(e.usable_since.load(Ordering::Relaxed), now)
    }

    /// Picks an endpoint: p2c on outstanding requests among usable ones (all of them in
    /// panic mode), never `exclude` unless it is the only one.
    pub(crate) fn pick<R: Rng + ?Sized>(&self, rng: &mut R, exclude: Option<usize>) -> Option<usize> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let now = self.read_now_ms();
        let usable = self.endpoints.iter().filter(|e| self.usable_at(e, now)).count();
        let panic = (usable * 100) < self.active_count() * self.policy.panic_threshold_percent as usize;
        let eligible_at = |i: usize| -> bool {
            self.endpoints.get(i).is_some_and(|e| {
                if panic { !e.standby.load(Ordering::Relaxed) } else { self.usable_at(e, now) }
            })
        };
        let eligible = |i: usize| -> bool { Some(i) != exclude && eligible_at(i) };
        let count = (0..n).filter(|&i| eligible(i)).count();
        if count == 0 {
            return exclude.filter(|&i| eligible_at(i));
        }
        let nth = |k: usize| (0..n).filter(|&i| eligible(i)).nth(k);
        let a = nth(rng.random_range(0..count))?;
        if count == 1 {
            return Some(a);
        }
        let mut k = rng.random_range(0..count - 1);
        let b = loop {
            let b = nth(k)?;
            if b != a {
                break b;
            }
            k += 1;
        };
        let load = |i: usize| -> f64 {
            let e = &self.endpoints[i];
            (e.outstanding.load(Ordering::Relaxed) as f64 + 1.0) / self.factor(e, now)
        };
        Some(if load(b) < load(a) { b } else { a })
    }

    /// Counts a request against endpoint `i` until the guard drops.
    pub(crate) fn start(&self, i: usize) -> Option<Outstanding<'_>> {
        let e = self.endpoints.get(i)?;
        e.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(Outstanding(e))
    }

    /// Passive health: the outcome of one real request. Enough consecutive failures eject
    /// the endpoint for a time that doubles with each ejection, unless that would take out
    /// more than `max_ejected_percent` of the set.
    pub(crate) fn record(&self, i: usize, ok: bool) {
        let Some(e) = self.endpoints.get(i) else { return };
        if ok {
            e.failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = e.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < self.policy.consecutive_failures {
            return;
        }
        e.suspect.notify_one();
        let now = self.now_ms();
        let ejected = self.endpoints.iter().filter(|x| x.ejected_until.load(Ordering::Relaxed) > now).count();
        if (ejected + 1) * 100 > self.active_count() * self.policy.max_ejected_percent as usize {
            return;
        }
        let times = e.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let backoff = self.policy.base_ejection.saturating_mul(1 << times).min(self.policy.max_ejection);
        let until = now + backoff.as_millis() as u64;
        e.ejected_until.store(until, Ordering::Relaxed);
        e.usable_since.store(until, Ordering::Relaxed);
        e.failures.store(0, Ordering::Relaxed);
        tracing::warn!(endpoint = %e.authority, ?backoff, "endpoint ejected after consecutive failures");
    }

    /// Active health: the outcome of one probe, with thresholds in both directions.
    /// Returns the new verdict when it changed.
    pub(crate) fn probe_result(&self, i: usize, ok: bool) -> Option<bool> {
        let e = self.endpoints.get(i)?;
        if ok {
            e.probe_fail_streak.store(0, Ordering::Relaxed);
            let streak = e.probe_ok_streak.fetch_add(1, Ordering::Relaxed) + 1;
            if streak >= self.policy.healthy_threshold && !e.healthy.swap(true, Ordering::Relaxed) {
                e.usable_since.store(self.now_ms(), Ordering::Relaxed);
                // A healthy probe also forgives past ejections.
                e.ejections.store(0, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            e.probe_ok_streak.store(0, Ordering::Relaxed);
            let streak = e.probe_fail_streak.fetch_add(1, Ordering::Relaxed) + 1;
            if streak >= self.policy.unhealthy_threshold && e.healthy.swap(false, Ordering::Relaxed) {
                return Some(false);
            }
        }
        None
    }

    /// Completes when real requests to endpoint `i` have failed `consecutive_failures`
    /// times in a row since the last call (never, for an unknown endpoint).
    pub(crate) async fn suspected(&self, i: usize) {
        match self.endpoints.get(i) {
            Some(e) => e.suspect.notified().await,
            None => std::future::pending().await,
        }
    }

    /// A connection to endpoint `i` was refused: nothing listens there (a crashed origin).
    /// It is out of use at once, as if its probes had failed, rather than after the next
    /// probe; its probe is woken to confirm, and only `healthy_threshold` good probes bring
    /// it back. Unlike outlier ejection this ignores `max_ejected_percent`: a refused
    /// connection is a fact, not a statistic (the panic threshold still applies to
    /// choosing). Returns whether the verdict changed.
    pub(crate) fn mark_down(&self, i: usize) -> bool {
        let Some(e) = self.endpoints.get(i) else { return false };
        e.probe_ok_streak.store(0, Ordering::Relaxed);
        e.probe_fail_streak.store(self.policy.unhealthy_threshold, Ordering::Relaxed);
        let was = e.healthy.swap(false, Ordering::Relaxed);
        e.suspect.notify_one();
        if was {
            tracing::warn!(endpoint = %e.authority, "endpoint refused a connection: out of use until its probes pass");
        }
        was
    }

    /// Whether an endpoint other than `i` can take a request now.
    pub(crate) fn usable_besides(&self, i: usize) -> bool {
        let now = self.read_now_ms();
        self.endpoints.iter().enumerate().any(|(j, e)| j != i && self.usable_at(e, now))
    }

    /// Not healthy, but not failed either: back from standby with no probe answered yet
    /// (or only good ones, short of the threshold).
    pub(crate) fn is_unproven(&self, i: usize) -> bool {
        self.endpoints.get(i).is_some_and(|e| {
            !e.healthy.load(Ordering::Relaxed) && e.probe_fail_streak.load(Ordering::Relaxed) == 0
        })
    }

    pub(crate) fn is_healthy(&self, i: usize) -> bool {
        self.endpoints.get(i).is_some_and(|e| e.healthy.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests;
