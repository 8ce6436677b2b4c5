//! Deterministic subsetting: which of a peer region's proxies this proxy probes and sends
//! bypassed traffic to.
//!
//! Every proxy's health answer speaks for its whole region (which origins it can serve,
//! what they served, its table), so a few answers judge a region as well as all of them
//! do. Probing every proxy of every peer region grows with the square of the fleet; a
//! bounded subset per peer keeps each proxy's probes constant as regions grow, and the
//! fleet's linear.
//!
//! The subset is rendezvous hashing (highest random weight) of this proxy's identity with
//! each peer proxy's address: no coordination, the same subset after a restart, an even
//! spread of the fleet's probes and bypass traffic over the peer's proxies, and when the
//! peer list changes only the members that were added or removed move. While a member is
//! down, the next one in the ranking stands in for it, up to `size` replacements, so a
//! subset of dead proxies does not cut the bypass path to a region that is still up; a
//! member that recovers takes its place back. A stand-in takes traffic only once its
//! probes pass, so stand-ins for dead members cannot keep a dead region looking alive.

use tokio::sync::watch;

use super::balance::EndpointSet;

/// The subset of one peer region's proxies.
#[derive(Debug)]
pub(crate) struct Subset {
    /// Endpoint indices, best first for this proxy.
    ranking: Vec<usize>,
    /// Members wanted up (0: every proxy, no subsetting).
    size: usize,
    /// Bumped whenever a member joins or leaves, so that idle probe loops wake.
    changed: watch::Sender<u64>,
}

/// The ranking of `endpoints` for `identity`: the order in which they join the subset.
pub(crate) fn rank(identity: &str, endpoints: &[String]) -> Vec<usize> {
    let score = |e: &str| {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(identity.as_bytes());
        ctx.update(&[0]);
        ctx.update(e.as_bytes());
        let d = ctx.finish();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d.as_ref()[..8]);
        u64::from_be_bytes(b)
    };
    let mut scored: Vec<(u64, usize)> = endpoints.iter().enumerate().map(|(i, e)| (score(e), i)).collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// What this proxy hashes its subsets with: its host name and the addresses it is
/// configured to listen on, so that proxies on different hosts, or on one host with
/// different ports, pick different subsets.
pub(crate) fn identity(cfg: &crate::config::Config) -> String {
    let host = gethostname::gethostname();
    let l = &cfg.listen;
    format!(
        "{} {} {:?} {:?} {:?} {}",
        host.to_string_lossy(),
        l.public,
        l.public_tls,
        l.peer,
        l.peer_tls,
        cfg.admin.listen
    )
}

impl Subset {
    pub(crate) fn new(identity: &str, endpoints: &[String], size: usize) -> Subset {
        Subset { ranking: rank(identity, endpoints), size, changed: watch::Sender::new(0) }
    }

    /// The most members probed at once: `size`, plus as many stand-ins while members are
    /// down. When the whole region is dead, that is all this proxy spends on it.
    pub(crate) fn bound(&self) -> usize {
        if self.size == 0 { self.ranking.len() } else { (2 * self.size).min(self.ranking.len()) }
    }

    /// Puts the first `size` members of the ranking that are not down in the subset (with
    /// the down ones before them, still probed so that their recovery is seen), and every
    /// other endpoint on standby. Returns whether the subset changed.
    pub(crate) fn refresh(&self, set: &EndpointSet) -> bool {
        let want = if self.size == 0 { usize::MAX } else { self.size };
        let bound = self.bound();
        let (mut up, mut members, mut changed) = (0, 0, false);
        for &i in &self.ranking {
            let member = up < want && members < bound;
            changed |= set.set_standby(i, !member);
            if member {
                members += 1;
                // A stand-in still being probed counts as up: one at a time joins.
                if set.is_healthy(i) || set.is_unproven(i) {
                    up += 1;
                }
            }
        }
        if changed {
            self.changed.send_modify(|g| *g += 1);
        }
        changed
    }

    /// Wakes when the subset changes.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::balance::SetPolicy;
    use std::time::Duration;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.1.0.{i}:8081")).collect()
    }

    fn set(n: usize) -> EndpointSet {
        let policy = SetPolicy {
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(1),
            max_ejected_percent: 50,
            panic_threshold_percent: 50,
            slow_start: Duration::ZERO,
        };
        EndpointSet::new(names(n).iter().map(|n| n.parse().unwrap()).collect(), policy)
    }

    fn members(set: &EndpointSet) -> Vec<usize> {
        (0..set.len()).filter(|&i| !set.is_standby(i)).collect()
    }

    #[test]
    fn the_ranking_depends_on_the_identity_only() {
        let all = names(30);
        assert_eq!(rank("host-a 10.0.0.1:8080", &all), rank("host-a 10.0.0.1:8080", &all));
        assert_ne!(rank("host-a 10.0.0.1:8080", &all), rank("host-b 10.0.0.1:8080", &all));
        let mut sorted = rank("host-a", &all);
        sorted.sort_unstable();
        assert_eq!(sorted, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn removing_a_proxy_moves_only_its_own_place() {
        let all = names(30);
        let before: Vec<String> = rank("me", &all).iter().take(3).map(|&i| all[i].clone()).collect();
        let gone = all.iter().find(|n| !before.contains(n)).unwrap().clone();
        let fewer: Vec<String> = all.iter().filter(|n| **n != gone).cloned().collect();
        let after: Vec<String> = rank("me", &fewer).iter().take(3).map(|&i| fewer[i].clone()).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_fleet_spreads_its_subsets_evenly() {
        // 100 proxies pick 3 of 30 each: 10 pickers per peer proxy on average.
        let all = names(30);
        let mut picked = [0u32; 30];
        for p in 0..100 {
            for &i in rank(&format!("proxy-{p}"), &all).iter().take(3) {
                picked[i] += 1;
            }
        }
        assert_eq!(picked.iter().sum::<u32>(), 300);
        assert!(picked.iter().all(|&n| (2..=22).contains(&n)), "{picked:?}");
    }

    #[test]
    fn the_subset_holds_size_members_and_the_rest_stand_by() {
        let s = set(30);
        let sub = Subset::new("me", &names(30), 3);
        assert!(sub.refresh(&s));
        assert_eq!(members(&s), {
            let mut m: Vec<usize> = sub.ranking[..3].to_vec();
            m.sort_unstable();
            m
        });
        assert!(!sub.refresh(&s), "a second refresh changes nothing");
    }

    #[test]
    fn a_down_member_gets_a_stand_in_until_it_recovers() {
        let s = set(30);
        let sub = Subset::new("me", &names(30), 3);
        sub.refresh(&s);
        let first = sub.ranking[0];
        s.probe_result(first, false);
        assert!(sub.refresh(&s));
        let m = members(&s);
        assert_eq!(m.len(), 4);
        assert!(m.contains(&first), "the down member is still probed");
        assert!(m.contains(&sub.ranking[3]));
        s.probe_result(first, true);
        assert!(sub.refresh(&s));
        assert_eq!(members(&s).len(), 3);
        assert!(s.is_standby(sub.ranking[3]));
    }

    #[test]
    fn a_dead_region_costs_at_most_twice_the_size() {
        let s = set(30);
        let sub = Subset::new("me", &names(30), 3);
        for _ in 0..5 {
            sub.refresh(&s);
            for i in members(&s) {
                s.probe_result(i, false);
            }
        }
        assert_eq!(members(&s).len(), 6);
        assert!(!s.any_usable());
    }

    #[test]
    fn size_zero_keeps_every_proxy() {
        let s = set(5);
        let sub = Subset::new("me", &names(5), 0);
        sub.refresh(&s);
        assert_eq!(members(&s).len(), 5);
    }
}
