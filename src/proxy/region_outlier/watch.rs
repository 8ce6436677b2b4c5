//! The loop that judges the regions once a second from what this proxy saw of them and
//! what they report, and exports each region's share.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{MIN_REQUESTS, Observed, RegionOutliers, WINDOW_SECONDS};
use crate::metrics::Metrics;
use crate::metrics::window::TargetWindow;
use crate::proxy::targets::Targets;

/// What the region outlier loop reads and writes.
pub(crate) struct OutlierInputs {
    /// Per region: what this proxy's requests there got.
    pub(crate) windows: Arc<Vec<TargetWindow>>,
    pub(crate) targets: Arc<Targets>,
    pub(crate) outliers: Arc<RegionOutliers>,
    /// Region names, this region first: the index of every per-region vector.
    pub(crate) names: Vec<Arc<str>>,
}

/// Evaluates region outlier detection once a second: this proxy's own figures per target,
/// or for a peer it sends too little to judge, what the region reports about its own
/// origins.
pub(crate) fn spawn(inputs: OutlierInputs, metrics: Metrics, stop: CancellationToken) {
    for name in &inputs.names {
        metrics.region_outlier_share.with_label_values(&[name]).set(1.0);
    }
    tokio::spawn(async move {
        let OutlierInputs { windows, targets, outliers, names } = inputs;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
            let observed: Vec<Option<Observed>> = (0..names.len())
                .map(|r| {
                    let own = windows.get(r).map(|w| w.stats(WINDOW_SECONDS));
                    let own = own.map(|s| Observed { error_ratio: s.failure_ratio, requests: s.unshed });
                    let reported =
                        r.checked_sub(1).and_then(|p| targets.peers.get(p)).and_then(|p| p.reported()).map(
                            |f| Observed {
                                error_ratio: f.error_ratio,
                                requests: (f.rps * WINDOW_SECONDS as f64) as u64,
                            },
                        );
                    match (own, reported) {
                        (Some(o), _) if o.requests >= MIN_REQUESTS => Some(o),
                        (_, Some(rep)) => Some(rep),
                        (o, None) => o,
                    }
                })
                .collect();
            for (r, kept) in outliers.evaluate(&observed) {
                let Some(name) = names.get(r) else { continue };
                metrics.region_outlier_share.with_label_values(&[name]).set(kept);
                let error_ratio = observed.get(r).copied().flatten().map(|o| o.error_ratio).unwrap_or(0.0);
                if kept < 1.0 {
                    tracing::warn!(region = %name, kept, error_ratio, "region answers far more 5xx than the others: it keeps only this share of its traffic");
                } else {
                    tracing::info!(region = %name, "region outlier detection: the region has its full share back");
                }
            }
        }
    });
}
