//! Prioritized load shedding: one cap on the requests in flight across every data-plane
//! listener, and a lower one for each lower priority, so that when the proxy is over its
//! capacity the least important requests are refused first (503 `shed`, `Retry-After`)
//! and the important ones still find room. The priority comes from a request header, as
//! Zuul does it; a request without one gets the default.
//!
//! Why thresholds on in-flight requests and not a rate: in-flight is what actually costs
//! memory and upstream slots, it needs no clock, and it reacts the moment origins slow
//! down, which is when shedding matters.

use http::{HeaderMap, HeaderName};

use crate::config;
use crate::vocab::Priority;

/// The shedding policy of one proxy generation.
#[derive(Debug, Clone)]
pub struct Shedder {
    header: HeaderName,
    default: Priority,
    /// Requests in flight (this one included) above which a priority is shed, by priority.
    limits: [usize; 4],
}

impl Shedder {
    pub fn new(cfg: &config::Overload) -> Shedder {
        let at = |percent: u32| (cfg.max_inflight as u64 * percent as u64 / 100) as usize;
        Shedder {
            header: HeaderName::from_bytes(cfg.priority_header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-priority")),
            default: cfg.default_priority,
            limits: [at(cfg.shed_low_at), at(cfg.shed_normal_at), at(cfg.shed_high_at), cfg.max_inflight],
        }
    }

    /// The request's priority: its header when it names one, else the default.
    pub fn priority(&self, h: &HeaderMap) -> Priority {
        h.get(&self.header).and_then(|v| Priority::parse(v.as_bytes())).unwrap_or(self.default)
    }

    /// Whether a request of priority `p` must be refused with `inflight` requests in
    /// flight, itself included.
    pub fn shed(&self, p: Priority, inflight: usize) -> bool {
        inflight > self.limits[p as usize]
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
}
