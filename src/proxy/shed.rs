//! Prioritized load shedding: one cap on the requests in flight across every data-plane
//! listener, and a lower one for each lower priority, so that when the proxy is over its
//! capacity the least important requests are refused first (503 `shed`, `Retry-After`)
//! and the important ones still find room. The priority comes from a request header, as
//! Zuul does it; a request without one gets the default.
//!
//! Why thresholds on in-flight requests and not a rate: in-flight is what actually costs
//! memory and upstream slots, it needs no clock, and it reacts the moment origins slow
//! down, which is when shedding matters.
//!
//! The count is an atomic of its own ([`Inflight`]); the `inflight_requests` gauge follows
//! it for export and is never read back, so that what decides admission is not something
//! any holder of the metrics could set.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderMap, HeaderName};

use crate::config;
use crate::vocab::Priority;

/// The requests in flight across every data-plane listener and every proxy generation (a
/// request admitted before a reload still counts after it).
#[derive(Debug)]
pub(crate) struct Inflight {
    count: AtomicUsize,
    /// `inflight_requests`, moved with `count`.
    gauge: prometheus::IntGauge,
}

/// One request counted in flight until dropped.
#[derive(Debug)]
pub(crate) struct InflightSlot(Arc<Inflight>);

impl Inflight {
    pub(crate) fn new(gauge: prometheus::IntGauge) -> Arc<Inflight> {
        Arc::new(Inflight { count: AtomicUsize::new(0), gauge })
    }

    /// Counts a request in flight until the slot drops.
    pub(crate) fn enter(self: &Arc<Self>) -> InflightSlot {
        self.count.fetch_add(1, Ordering::Relaxed);
        // Moved, not set from the count: concurrent sets could land out of order and leave
        // a stale figure behind once traffic stops.
        self.gauge.inc();
        InflightSlot(self.clone())
    }

    /// Requests in flight now.
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for InflightSlot {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
        self.0.gauge.dec();
    }
}

/// The shedding policy of one proxy generation.
#[derive(Debug, Clone)]
pub(crate) struct Shedder {
    header: HeaderName,
    default: Priority,
    /// Requests in flight (this one included) above which a priority is shed, by priority.
    limits: [usize; 4],
}

impl Shedder {
    pub(crate) fn new(cfg: &config::Overload) -> Shedder {
        let at = |percent: u32| (cfg.max_inflight as u64 * percent as u64 / 100) as usize;
        Shedder {
            header: HeaderName::from_bytes(cfg.priority_header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-priority")),
            default: cfg.default_priority,
            limits: [at(cfg.shed_low_at), at(cfg.shed_normal_at), at(cfg.shed_high_at), cfg.max_inflight],
        }
    }

    /// The request's priority: its header when it names one, else the default.
    pub(crate) fn priority(&self, h: &HeaderMap) -> Priority {
        h.get(&self.header).and_then(|v| Priority::parse(v.as_bytes())).unwrap_or(self.default)
    }

    /// Whether a request of priority `p` must be refused with `inflight` requests in
    /// flight, itself included.
    pub(crate) fn shed(&self, p: Priority, inflight: usize) -> bool {
        inflight > self.limits[p as usize]
    }
}

/// The `shed_total{reason}` of a request shed at priority `p`.
pub(crate) fn reason(p: Priority) -> &'static str {
    match p {
        Priority::Low => "overload-low",
        Priority::Normal => "overload-normal",
        Priority::High => "overload-high",
        Priority::Critical => "overload-critical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_priorities_go_first() {
        let s = Shedder::new(&config::Overload { max_inflight: 100, ..Default::default() });
        let mut h = HeaderMap::new();
        assert_eq!(s.priority(&h), Priority::Normal);
        h.insert("x-priority", "low".parse().unwrap());
        assert_eq!(s.priority(&h), Priority::Low);
        h.insert("x-priority", "bogus".parse().unwrap());
        assert_eq!(s.priority(&h), Priority::Normal, "an unknown value is the default");
        assert!(s.shed(Priority::Low, 51) && !s.shed(Priority::Low, 50));
        assert!(s.shed(Priority::Normal, 81) && !s.shed(Priority::Normal, 80));
        assert!(!s.shed(Priority::High, 95) && s.shed(Priority::High, 96));
        assert!(!s.shed(Priority::Critical, 100) && s.shed(Priority::Critical, 101));
    }

    #[test]
    fn the_count_decides_and_the_gauge_follows() {
        let gauge = prometheus::IntGauge::new("inflight", "in flight").unwrap();
        let inflight = Inflight::new(gauge.clone());
        let a = inflight.enter();
        let b = inflight.enter();
        assert_eq!((inflight.get(), gauge.get()), (2, 2));
        gauge.set(0);
        assert_eq!(inflight.get(), 2, "the exported gauge is not what admission reads");
        drop((a, b));
        assert_eq!(inflight.get(), 0);
    }
}
