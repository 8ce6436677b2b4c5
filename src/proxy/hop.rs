//! The fleet fields a request carries from region to region: how many proxies it has
//! crossed, where it entered the fleet, and how long its sender still waits. Only a peer
//! listener reads them (a public one strips them); every forward to a peer writes them.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::headers::{X_FLOWGATE_DEADLINE_MS, X_FLOWGATE_HOPS, X_FLOWGATE_SOURCE_REGION};
use super::listener::ListenerKind;

/// The fleet fields of a request: how far it has travelled and where it entered.
#[derive(Debug)]
pub(crate) struct HopInfo {
    pub(crate) hops: u32,
    pub(crate) source: HeaderValue,
    /// `hops >= max_hops`: serve it here, never forward it again.
    pub(crate) local_only: bool,
    /// When the previous hop stops waiting (from `x-flowgate-deadline-ms`).
    pub(crate) deadline: Option<tokio::time::Instant>,
}

impl HopInfo {
    /// Reads the hop fields, which only a peer listener honours (public listeners strip
    /// them). A value that does not parse is treated as having no hops left, so a
    /// malformed header can never make a request travel further.
    pub(crate) fn read(
        listener: ListenerKind,
        h: &HeaderMap,
        own_region: &HeaderValue,
        max_hops: u32,
    ) -> HopInfo {
        let own = || own_region.clone();
        if !listener.is_peer() {
            return HopInfo { hops: 0, source: own(), local_only: false, deadline: None };
        }
        let hops = match h.get(&X_FLOWGATE_HOPS) {
            None => 0,
            Some(v) => v.to_str().ok().and_then(|s| s.trim().parse::<u32>().ok()).unwrap_or(u32::MAX),
        };
        let source = h
            .get(&X_FLOWGATE_SOURCE_REGION)
            .filter(|v| v.to_str().is_ok_and(|s| crate::config::check_name(s).is_ok()))
            .cloned()
            .unwrap_or_else(own);
        // A deadline that does not parse is ignored: our own timeouts still bound the wait.
        let deadline = h
            .get(&X_FLOWGATE_DEADLINE_MS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        HopInfo { hops, source, local_only: hops >= max_hops, deadline }
    }

    /// Writes the fields of the next hop on a request going to a peer region, which may
    /// spend `budget` on it.
    pub(crate) fn write_next(&self, h: &mut HeaderMap, budget: Duration) {
        h.insert(&X_FLOWGATE_HOPS, HeaderValue::from(self.hops.saturating_add(1)));
        h.insert(&X_FLOWGATE_SOURCE_REGION, self.source.clone());
        // New on nearly every request: kept out of the HPACK table, like the request id.
        let mut deadline = HeaderValue::from(budget.as_millis().max(1) as u64);
        deadline.set_sensitive(true);
        h.insert(&X_FLOWGATE_DEADLINE_MS, deadline);
    }
}
