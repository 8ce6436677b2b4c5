//! Region-level outlier detection on 5xx: a region whose origins answer errors while its
//! health checks pass (a bad deploy, a broken dependency) loses share in proportion to how
//! far its error ratio stands above the other regions', as Envoy's outlier detection does
//! for hosts, here for regions.
//!
//! The rule, evaluated every second per region `r` from what this proxy saw over the last
//! [`WINDOW_SECONDS`]: `e_r` is the 5xx share of the requests it sent to `r` (the local
//! origin for this region) when there were at least [`MIN_REQUESTS`]; otherwise, for a peer,
//! the 5xx share the region reports about its own origins in its health answers (so a
//! proxy whose row names only its own region still knows the others). `b` is the median of
//! the other regions' ratios. When `e_r - b` exceeds [`MIN_EXCESS`], `r` keeps the share
//! `1 - (e_r - b) / (1 - b)` of the traffic the table gives it, never less than [`TRICKLE`]
//! (so its recovery is seen); the rest goes to the row's other targets, or to the other
//! healthy regions when the row names only `r`. A failure everywhere moves nothing (`b` is
//! as high as `e_r`), and with no other region to compare with nothing moves either. Too
//! few requests to judge keep the share as it was (a region already kept low is judged on
//! its trickle, or on its last ratio against the others' now); a recovering region gets its share back
//! at most doubling each second. Idempotent requests that a region kept below its full
//! share answers 500 are retried in another region, under the retry budget.

use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) mod watch;

/// The span the ratios are taken over.
pub(crate) const WINDOW_SECONDS: u64 = 10;
/// Requests over the window below which this proxy's own figure for a region is not used.
pub(crate) const MIN_REQUESTS: u64 = 20;
/// Requests over the window that still judge a region already kept below its share: its
/// trickle is all it gets, which at a low rate is a request or two (and with none, its
/// last ratio is compared with what the others do now, so a failure that spread to every
/// region, or a quiet proxy, cannot leave it stuck low).
pub(crate) const MIN_REQUESTS_KEPT: u64 = 1;
/// How far above the others a region's error ratio must stand to lose share.
pub(crate) const MIN_EXCESS: f64 = 0.1;
/// The least share a failing region keeps.
pub(crate) const TRICKLE: f64 = 0.02;

const FULL: u32 = 1_000_000;

/// Per region (in `regions.names` order: this region first), the share of its traffic
/// it keeps, in millionths; read once per request.
#[derive(Debug)]
pub(crate) struct RegionOutliers {
    kept: Vec<AtomicU32>,
    /// The ratio each region was last judged on (off the request path).
    last: std::sync::Mutex<Vec<Option<f64>>>,
}

/// One region's 5xx ratio over the window and how many requests it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Observed {
    pub(crate) error_ratio: f64,
    pub(crate) requests: u64,
}

impl RegionOutliers {
    pub(crate) fn new(regions: usize) -> RegionOutliers {
        RegionOutliers {
            kept: (0..regions).map(|_| AtomicU32::new(FULL)).collect(),
            last: std::sync::Mutex::new(vec![None; regions]),
        }
    }

    /// The share region `index` keeps now, in (0, 1].
    pub(crate) fn kept(&self, index: usize) -> f64 {
        self.kept.get(index).map(|k| k.load(Ordering::Relaxed) as f64 / FULL as f64).unwrap_or(1.0)
    }

    /// One evaluation from what was observed per region (`None`: nothing to judge by).
    /// Returns the regions whose share changed, with the new share.
    pub(crate) fn evaluate(&self, observed: &[Option<Observed>]) -> Vec<(usize, f64)> {
        let mut changed = Vec::new();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for (r, slot) in self.kept.iter().enumerate() {
            let old = slot.load(Ordering::Relaxed) as f64 / FULL as f64;
            let min = if old < 1.0 { MIN_REQUESTS_KEPT } else { MIN_REQUESTS };
            let own = match observed.get(r).copied().flatten().filter(|o| o.requests >= min) {
                Some(o) => {
                    if let Some(l) = last.get_mut(r) {
                        *l = Some(o.error_ratio);
                    }
                    o.error_ratio
                }
                None => match last.get(r).copied().flatten() {
                    Some(ratio) if old < 1.0 => ratio,
                    _ => continue,
                },
            };
            let mut others: Vec<f64> = observed
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != r)
                .filter_map(|(_, o)| o.filter(|o| o.requests >= MIN_REQUESTS_KEPT).map(|o| o.error_ratio))
                .collect();
            let target = if others.is_empty() {
                1.0
            } else {
                others.sort_by(f64::total_cmp);
                let b = others[others.len() / 2];
                let excess = own - b;
                if excess > MIN_EXCESS && b < 1.0 {
                    (1.0 - excess / (1.0 - b)).clamp(TRICKLE, 1.0)
                } else {
                    1.0
                }
            };
            // Down at once, back gradually: a region just recovering gets its traffic back
            // over a few seconds, not all at once.
            let new = if target > old { target.min(old * 2.0) } else { target };
            let new_units = (new * FULL as f64).round() as u32;
            if slot.swap(new_units, Ordering::Relaxed) != new_units {
                changed.push((r, new));
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(error_ratio: f64, requests: u64) -> Option<Observed> {
        Some(Observed { error_ratio, requests })
    }

    #[test]
    fn a_region_answering_errors_keeps_a_trickle_and_others_keep_all() {
        let o = RegionOutliers::new(3);
        o.evaluate(&[obs(1.0, 100), obs(0.0, 100), obs(0.01, 100)]);
        assert_eq!(o.kept(0), TRICKLE);
        assert_eq!(o.kept(1), 1.0);
        assert_eq!(o.kept(2), 1.0);
    }

    #[test]
    fn the_share_lost_is_in_proportion_to_the_excess() {
        let o = RegionOutliers::new(3);
        o.evaluate(&[obs(0.3, 100), obs(0.0, 100), obs(0.0, 100)]);
        assert!((o.kept(0) - 0.7).abs() < 1e-6, "{}", o.kept(0));
        let small = RegionOutliers::new(3);
        small.evaluate(&[obs(0.05, 100), obs(0.0, 100), obs(0.0, 100)]);
        assert_eq!(small.kept(0), 1.0, "within MIN_EXCESS of the others: nothing moves");
    }

    #[test]
    fn a_region_kept_low_with_no_requests_is_released_once_the_others_fail_as_much() {
        let o = RegionOutliers::new(3);
        o.evaluate(&[obs(1.0, 100), obs(0.0, 100), obs(0.0, 100)]);
        assert_eq!(o.kept(0), TRICKLE);
        for _ in 0..8 {
            o.evaluate(&[obs(0.0, 0), obs(1.0, 100), obs(1.0, 100)]);
        }
        assert_eq!(o.kept(0), 1.0);
    }

    #[test]
    fn a_failure_everywhere_moves_nothing() {
        let o = RegionOutliers::new(3);
        o.evaluate(&[obs(1.0, 100), obs(1.0, 100), obs(0.95, 100)]);
        assert_eq!((o.kept(0), o.kept(1), o.kept(2)), (1.0, 1.0, 1.0));
        let alone = RegionOutliers::new(1);
        alone.evaluate(&[obs(1.0, 100)]);
        assert_eq!(alone.kept(0), 1.0, "nothing to compare with");
    }

    #[test]
    fn too_few_requests_hold_the_share_and_recovery_is_gradual() {
        let o = RegionOutliers::new(2);
        o.evaluate(&[obs(1.0, 100), obs(0.0, 100)]);
        assert_eq!(o.kept(0), TRICKLE);
        o.evaluate(&[obs(0.0, 0), obs(0.0, 100)]);
        assert_eq!(o.kept(0), TRICKLE, "no request: judged on its last ratio, still far above");
        o.evaluate(&[obs(0.0, 2), obs(0.0, 100)]);
        assert!((o.kept(0) - 2.0 * TRICKLE).abs() < 1e-6, "{}", o.kept(0));
        for _ in 0..8 {
            o.evaluate(&[obs(0.0, 50), obs(0.0, 100)]);
        }
        assert_eq!(o.kept(0), 1.0);
    }
}
