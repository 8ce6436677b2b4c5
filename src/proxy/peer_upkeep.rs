//! A peer region's upkeep, every 250 ms: which of its proxies this proxy's subset holds,
//! whether its load balancer is bypassed, and the `bypass_active` gauge that says so.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::proxy::targets::Targets;
use crate::table::store::TableStore;

/// How often the subset and the bypass are judged again.
const EVERY: Duration = Duration::from_millis(250);

/// Starts the upkeep loop of every peer region; they end when `stop` fires.
pub(crate) fn spawn(
    targets: Arc<Targets>,
    tables: Arc<TableStore>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    for pid in 0..targets.peers.len() {
        let (targets, tables, metrics, stop) =
            (targets.clone(), tables.clone(), metrics.clone(), stop.clone());
        tokio::spawn(async move {
            let Some(peer) = targets.peers.get(pid) else { return };
            let gauge = metrics.bypass_active.with_label_values(&[&peer.name]);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(EVERY) => {}
                    _ = stop.cancelled() => return,
                }
                peer.subset.refresh(&peer.proxies.set);
                let direct_usable = peer.proxies.set.any_usable();
                peer.bypass.evaluate(direct_usable);
                let mode = tables.load().peer_modes.get(pid).copied().unwrap_or_default();
                gauge.set(peer.bypassing(mode) as i64);
            }
        });
    }
}
