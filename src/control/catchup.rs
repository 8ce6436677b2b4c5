//! Catch-up through peers: a proxy converges to the fleet's table by itself (a new pod
//! with an empty state folder, one that was stopped during a push, one cut off for a
//! while), with no extra service.
//!
//! Every health answer of a peer carries its table version and digest ([`Advert`]).
//! Once a health interval this loop looks at what the peers advertised lately: a higher
//! version is fetched from the peer listener that advertised it (`GET /.flowgate/table`)
//! and applied through the same validation as a push (and the same signature check),
//! whole: `max_shift` guards one operator's step, not the jump to where the fleet already
//! is. It is recorded in the history as coming from that peer. Two digests for one version
//! are a split fleet: shown (status, metric), never resolved here by picking a side.
//!
//! The first time a peer's table has been compared with this one (and caught up to, if it
//! was newer) the proxy counts as synced, which is when a starting proxy with peers
//! reports ready (or after `[fleet] sync_timeout`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ApplyMode, Control};
use crate::proxy::health::TABLE_PATH;
use crate::proxy::peer::Advert;
use crate::table::Table;
use crate::wire::TableConflict;

/// Largest table fetched from a peer (the admin listener's push limit is the same order).
const MAX_TABLE_BYTES: usize = 16 * 1024 * 1024;

/// Runs until `stop` fires, looking once per `interval`.
pub(crate) fn spawn(control: Arc<Control>, interval: Duration, timeout: Duration, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            round(&control, interval, timeout).await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}

/// One look at the peers' adverts; catches up when one is newer.
async fn round(control: &Control, interval: Duration, timeout: Duration) {
    let proxy = control.proxy.load_full();
    if proxy.targets.peers.is_empty() {
        control.mark_synced();
        return;
    }
    let (version, digest) = {
        let cur = proxy.tables.load();
        (cur.table.version, cur.digest.clone())
    };
    // Adverts a few intervals old still count: probes are jittered.
    let fresh = (interval * 5).max(Duration::from_secs(2));
    let mut compared = false;
    let mut conflicts = Vec::new();
    // Newer versions: version → digest → where it was seen.
    let mut newer: BTreeMap<u64, BTreeMap<String, (usize, Advert)>> = BTreeMap::new();
    for (pi, peer) in proxy.targets.peers.iter().enumerate() {
        for ad in peer.adverts(fresh) {
            compared = true;
            let (Some(v), Some(d)) = (ad.version, ad.digest.clone()) else { continue };
            if v == version && d != digest {
                conflicts.push(TableConflict { region: peer.name.to_string(), version: v, digest: d });
            } else if v > version {
                newer.entry(v).or_default().entry(d).or_insert((pi, ad));
            }
        }
    }
    conflicts.sort_by(|a, b| (&a.region, &a.digest).cmp(&(&b.region, &b.digest)));
    conflicts.dedup();
    control.set_conflicts(conflicts);
    let Some((target, digests)) = newer.into_iter().next_back() else {
        if compared {
            control.mark_synced();
        }
        return;
    };
    if digests.len() > 1 {
        tracing::error!(
            version = target,
            digests = ?digests.keys().collect::<Vec<_>>(),
            "peers advertise one table version with different contents: not catching up to either"
        );
        if compared {
            control.mark_synced();
        }
        return;
    }
    let Some((want, (pi, ad))) = digests.into_iter().next() else { return };
    let Some(peer) = proxy.targets.peers.get(pi) else { return };
    let upstream = if ad.direct { &peer.proxies } else { &peer.lb };
    let endpoint = upstream.set.get(ad.endpoint).map(|e| e.authority.to_string()).unwrap_or_default();
    let answer = match upstream
        .fetch(ad.endpoint, TABLE_PATH, timeout.max(Duration::from_secs(2)), MAX_TABLE_BYTES)
        .await
    {
        Ok(a) if a.status.is_success() && a.from_flowgate => a,
        Ok(a) => {
            tracing::warn!(region = %peer.name, %endpoint, status = %a.status, "catch-up: the peer did not serve its table");
            return;
        }
        Err(e) => {
            tracing::warn!(region = %peer.name, %endpoint, error = %e, "catch-up: cannot fetch the peer's table");
            return;
        }
    };
    let table = match Table::parse(&answer.body) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(region = %peer.name, %endpoint, error = %e, "catch-up: the peer's table does not parse");
            return;
        }
    };
    // The peer may have moved on since its answer: newer is fine, the same version must
    // be the content it advertised.
    if table.version < target || (table.version == target && table.digest() != want) {
        tracing::warn!(region = %peer.name, %endpoint, "catch-up: the peer's table changed under the fetch; next round");
        return;
    }
    let who = format!("catch-up from peer {} ({endpoint})", peer.name);
    // A refused table changes nothing; the log line of `apply` says why.
    if control.apply_with(table, &who, ApplyMode { if_match: None, catch_up: true }).await.is_ok() {
        control.mark_synced();
    }
}
