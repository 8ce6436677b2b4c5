//! Following endpoint names: every upstream set whose endpoints are names is resolved
//! again at an interval, and its pool renewed when the addresses moved.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::targets::{Targets, UpstreamRef};

/// Starts one resolver per upstream set of `targets`; they end when `stop` fires.
pub(crate) fn spawn(targets: &Arc<Targets>, interval: Duration, stop: &CancellationToken) {
    for which in targets.upstream_refs() {
        spawn_one(targets.clone(), which, interval, stop.clone());
    }
}

/// Resolves an upstream's endpoint names every `interval`; when the addresses behind them
/// change, the upstream's pool is replaced so that new requests reach the new addresses
/// (a load balancer's addresses move; an HTTP/2 connection would otherwise stay on the
/// old ones for as long as it lives).
fn spawn_one(targets: Arc<Targets>, which: UpstreamRef, interval: Duration, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut last: Option<Vec<std::net::SocketAddr>> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.cancelled() => return,
            }
            let Some(upstream) = targets.upstream(which) else { return };
            let names: Vec<String> = upstream
                .set
                .iter()
                .filter(|e| e.authority.host().parse::<std::net::IpAddr>().is_err())
                .map(|e| e.authority.to_string())
                .collect();
            if names.is_empty() {
                return;
            }
            let mut addrs = Vec::new();
            for name in &names {
                match tokio::net::lookup_host(name.as_str()).await {
                    Ok(found) => addrs.extend(found),
                    Err(e) => tracing::warn!(endpoint = %name, error = %e, "cannot resolve endpoint name"),
                }
            }
            addrs.sort();
            addrs.dedup();
            // A failed lookup keeps the pool: better stale addresses than none.
            if addrs.is_empty() {
                continue;
            }
            if last.as_ref().is_some_and(|l| *l != addrs) {
                tracing::info!(endpoints = ?names, addresses = ?addrs, "endpoint addresses changed; renewing connections");
                upstream.refresh_pool();
            }
            last = Some(addrs);
        }
    });
}
