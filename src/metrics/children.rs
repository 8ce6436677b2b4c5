//! Per-request metric updates without label lookups.
//!
//! `with_label_values` hashes every label and takes a lock on each call: paid twice per
//! request, it was one of the costs a profile shows. The label space of the request
//! metrics is small and known (listener × origin × target region, and a status code), so
//! each combination's children are resolved once, on first use, and kept in a flat table
//! indexed by position.

use std::sync::OnceLock;

use prometheus::{Histogram, IntCounter};

use super::Metrics;

/// Status codes 100 to 599 get a slot each.
const CODES: usize = 500;

struct Cell {
    duration: OnceLock<Histogram>,
    codes: Vec<OnceLock<IntCounter>>,
}

/// The request-metric children of one proxy generation.
pub(crate) struct RequestMetrics {
    metrics: Metrics,
    listeners: Vec<&'static str>,
    origins: Vec<String>,
    targets: Vec<String>,
    cells: Vec<Cell>,
}

impl RequestMetrics {
    /// `origins` and `targets` in the proxy's own index order; an index past the end
    /// stands for "none" (`-`).
    pub(crate) fn new(
        metrics: Metrics,
        listeners: &[&'static str],
        origins: &[&str],
        targets: &[&str],
    ) -> RequestMetrics {
        let with_none = |v: &[&str]| -> Vec<String> {
            v.iter().map(|s| s.to_string()).chain(["-".to_string()]).collect()
        };
        let (origins, targets) = (with_none(origins), with_none(targets));
        let n = listeners.len() * origins.len() * targets.len();
        let cells = (0..n)
            .map(|_| Cell { duration: OnceLock::new(), codes: (0..CODES).map(|_| OnceLock::new()).collect() })
            .collect();
        let r = RequestMetrics { metrics, listeners: listeners.to_vec(), origins, targets, cells };
        r.preset();
        r
    }

    /// Makes, at 0, the series every known origin and target region has from the start:
    /// its duration histogram, and its 200 count on the clients' listener (the first), so
    /// that both families are in the first scrape. Other codes appear at first use.
    fn preset(&self) {
        let named = |v: &[String]| v.len() - 1;
        for o in 0..named(&self.origins) {
            for t in 0..named(&self.targets) {
                let (origin, target) = (self.origins[o].as_str(), self.targets[t].as_str());
                let Some(cell) = self.cells.get(o * self.targets.len() + t) else { continue };
                cell.duration.get_or_init(|| {
                    self.metrics.request_duration_seconds.with_label_values(&[origin, target])
                });
                if let (Some(listener), Some(slot)) = (self.listeners.first(), cell.codes.get(100)) {
                    slot.get_or_init(|| {
                        self.metrics.requests_total.with_label_values(&[listener, origin, target, "200"])
                    });
                }
            }
        }
    }

    /// Counts one answered request and its duration.
    pub(crate) fn observe(
        &self,
        listener: usize,
        origin: Option<usize>,
        target: Option<usize>,
        status: u16,
        seconds: f64,
    ) {
        let o = origin.unwrap_or(self.origins.len() - 1).min(self.origins.len() - 1);
        let t = target.unwrap_or(self.targets.len() - 1).min(self.targets.len() - 1);
        let l = listener.min(self.listeners.len() - 1);
        let Some(cell) = self.cells.get((l * self.origins.len() + o) * self.targets.len() + t) else {
            return;
        };
        let (origin, target) = (&self.origins[o], &self.targets[t]);
        cell.duration
            .get_or_init(|| {
                self.metrics.request_duration_seconds.with_label_values(&[origin.as_str(), target.as_str()])
            })
            .observe(seconds);
        let counter = |code: u16| {
            let code = code.to_string();
            self.metrics.requests_total.with_label_values(&[
                self.listeners[l],
                origin.as_str(),
                target.as_str(),
                &code,
            ])
        };
        match (status as usize).checked_sub(100).and_then(|i| cell.codes.get(i)) {
            Some(slot) => slot.get_or_init(|| counter(status)).inc(),
            None => counter(status).inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_on_the_right_labels() {
        let m = Metrics::new().unwrap();
        let r = RequestMetrics::new(m.clone(), &["public", "peer"], &["api"], &["a", "b"]);
        r.observe(0, Some(0), Some(1), 200, 0.01);
        r.observe(0, Some(0), Some(1), 200, 0.01);
        r.observe(1, None, None, 404, 0.001);
        assert_eq!(m.requests_total.with_label_values(&["public", "api", "b", "200"]).get(), 2);
        assert_eq!(m.requests_total.with_label_values(&["peer", "-", "-", "404"]).get(), 1);
        assert_eq!(m.request_duration_seconds.with_label_values(&["api", "b"]).get_sample_count(), 2);
    }

    #[test]
    fn every_known_origin_and_target_is_there_from_the_start() {
        let m = Metrics::new().unwrap();
        let _r = RequestMetrics::new(m.clone(), &["public", "peer"], &["api"], &["a", "b"]);
        let text = String::from_utf8(m.render()).unwrap();
        for t in ["a", "b"] {
            for line in [
                format!(
                    "flowgate_requests_total{{code=\"200\",listener=\"public\",origin=\"api\",target_region=\"{t}\"}} 0"
                ),
                format!("flowgate_request_duration_seconds_count{{origin=\"api\",target_region=\"{t}\"}} 0"),
            ] {
                assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
            }
        }
    }
}
