//! The fleet fields a request carries from region to region: how many proxies it has
//! crossed, where it entered the fleet, and how long its sender still waits. Only a peer
//! listener reads them (a public one strips them); every forward to a peer writes them.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

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
        // One pass of name comparisons over the few fields costs less than three hashed
        // look-ups of these long names (a peer proxy's request: 32.6k -> 32.3k
        // instructions); the first value of each, as `get` gives.
        let (mut hops, mut source, mut deadline) = (None, None, None);
        for (name, value) in h {
            let slot = if name == X_FLOWGATE_HOPS {
                &mut hops
            } else if name == X_FLOWGATE_SOURCE_REGION {
                &mut source
            } else if name == X_FLOWGATE_DEADLINE_MS {
                &mut deadline
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        let hops = match hops {
            None => 0,
            Some(v) => v.to_str().ok().and_then(|s| s.trim().parse::<u32>().ok()).unwrap_or(u32::MAX),
        };
        let source = source
            .filter(|v| v.to_str().is_ok_and(|s| crate::config::check_name(s).is_ok()))
            .cloned()
            .unwrap_or_else(own);
        // A deadline that does not parse is ignored: our own timeouts still bound the wait.
        let deadline = deadline
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        HopInfo { hops, source, local_only: hops >= max_hops, deadline }
    }

    /// The fields of the next hop of a request going to a peer region, which may spend
    /// `budget` on it.
    pub(crate) fn next(&self, budget: Duration) -> NextHop<'_> {
        NextHop {
            hops: self.hops.saturating_add(1),
            source: &self.source,
            deadline_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }
}

/// The fleet fields a forward to a peer region carries, in place of any the request had.
/// The own HTTP/1.1 pool writes them as bytes after the client's fields (no copy of the
/// head, no map insert); a request made for hyper's clients gets them in its map.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NextHop<'a> {
    hops: u32,
    source: &'a HeaderValue,
    deadline_ms: u64,
}

impl NextHop<'_> {
    /// Whether `name` is one of the fields this replaces (left out of the client's).
    pub(crate) fn replaces(name: &HeaderName) -> bool {
        name == X_FLOWGATE_HOPS || name == X_FLOWGATE_SOURCE_REGION || name == X_FLOWGATE_DEADLINE_MS
    }

    /// Hands each field to `field` as name and value bytes.
    pub(crate) fn each(&self, mut field: impl FnMut(&[u8], &[u8])) {
        let (mut hops, mut deadline) = (itoa::Buffer::new(), itoa::Buffer::new());
        field(X_FLOWGATE_HOPS.as_str().as_bytes(), hops.format(self.hops).as_bytes());
        field(X_FLOWGATE_SOURCE_REGION.as_str().as_bytes(), self.source.as_bytes());
        field(X_FLOWGATE_DEADLINE_MS.as_str().as_bytes(), deadline.format(self.deadline_ms).as_bytes());
    }

    /// Sets the fields in `h`, replacing any it had.
    pub(crate) fn write(&self, h: &mut HeaderMap) {
        h.insert(&X_FLOWGATE_HOPS, HeaderValue::from(self.hops));
        h.insert(&X_FLOWGATE_SOURCE_REGION, self.source.clone());
        // New on nearly every request: kept out of the HPACK table, like the request id.
        let mut deadline = HeaderValue::from(self.deadline_ms);
        deadline.set_sensitive(true);
        h.insert(&X_FLOWGATE_DEADLINE_MS, deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(hops: u32) -> HopInfo {
        HopInfo { hops, source: HeaderValue::from_static("us-east"), local_only: false, deadline: None }
    }

    #[test]
    fn the_next_hop_counts_one_more_and_carries_the_source_and_budget() {
        let info = hop(1);
        let next = info.next(Duration::from_millis(2500));
        let mut seen = Vec::new();
        next.each(|n, v| {
            seen.push((String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
        });
        let want = [
            ("x-flowgate-hops", "2"),
            ("x-flowgate-source-region", "us-east"),
            ("x-flowgate-deadline-ms", "2500"),
        ];
        assert_eq!(seen, want.map(|(n, v)| (n.to_owned(), v.to_owned())));

        let mut h = HeaderMap::new();
        h.insert(&X_FLOWGATE_HOPS, HeaderValue::from_static("7"));
        next.write(&mut h);
        assert_eq!(h.len(), 3);
        for (n, v) in want {
            assert_eq!(h.get(n).map(|x| x.as_bytes()), Some(v.as_bytes()), "{n}");
        }
        assert!(h[&X_FLOWGATE_DEADLINE_MS].is_sensitive());
    }

    #[test]
    fn a_peer_listener_reads_the_first_of_each_fleet_field() {
        let mut h = HeaderMap::new();
        h.append("x-other", HeaderValue::from_static("1"));
        h.append(&X_FLOWGATE_HOPS, HeaderValue::from_static(" 1 "));
        h.append(&X_FLOWGATE_HOPS, HeaderValue::from_static("0"));
        h.append(&X_FLOWGATE_SOURCE_REGION, HeaderValue::from_static("eu-west-1"));
        h.append(&X_FLOWGATE_SOURCE_REGION, HeaderValue::from_static("us-east-1"));
        let own = HeaderValue::from_static("us-west-2");
        let read = HopInfo::read(ListenerKind::Peer, &h, &own, 1);
        assert_eq!((read.hops, read.local_only, read.source.to_str().ok()), (1, true, Some("eu-west-1")));
        assert!(read.deadline.is_none());

        h.insert(&X_FLOWGATE_SOURCE_REGION, HeaderValue::from_static("Not A Name"));
        h.insert(&X_FLOWGATE_HOPS, HeaderValue::from_static("x"));
        h.insert(&X_FLOWGATE_DEADLINE_MS, HeaderValue::from_static("1500"));
        let read = HopInfo::read(ListenerKind::Peer, &h, &own, 3);
        assert_eq!((read.hops, read.local_only, read.source), (u32::MAX, true, own.clone()));
        assert!(read.deadline.is_some());
        let public = HopInfo::read(ListenerKind::Public, &h, &own, 3);
        assert_eq!((public.hops, public.local_only, public.deadline), (0, false, None));
    }

    #[test]
    fn a_spent_budget_still_asks_for_a_millisecond_and_the_count_never_wraps() {
        let last = hop(u32::MAX);
        let next = last.next(Duration::ZERO);
        let mut h = HeaderMap::new();
        next.write(&mut h);
        assert_eq!(h[&X_FLOWGATE_DEADLINE_MS], "1");
        assert_eq!(h[&X_FLOWGATE_HOPS], u32::MAX.to_string().as_str());
        assert!(NextHop::replaces(&X_FLOWGATE_SOURCE_REGION));
        assert!(!NextHop::replaces(&http::header::HOST));
    }
}
