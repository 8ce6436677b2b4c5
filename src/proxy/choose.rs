//! Choosing the region an attempt goes to: the row's weighted pick over healthy targets
//! with room, region outlier detection's diversion, and what is left when the row has
//! nothing usable (another healthy region, shedding, or the local origin as a last try).
//!
//! The choice reads the world through [`Capacity`] and draws from the caller's random
//! source (as tower's p2c takes an `Rng`), so it is a pure function of the two: the request
//! path passes the live state and the thread's generator, tests a fixed world and a seed.

use rand::{Rng, RngExt};

use super::error::ProxyError;
use super::region_outlier::RegionOutliers;
use super::targets::Targets;
use crate::table::PeerMode;
use crate::table::compile::{CompiledTable, Picker, Target};
use crate::table::route::OriginId;

/// What target choice needs to know of the targets, for one request's origin.
pub(crate) trait Capacity {
    /// A target's usable share now, in [0, 1] (0: unhealthy; below 1 while it warms up).
    /// With `room`, also 0 when it has no spare concurrency (the local origin when it is at
    /// its limit, or `local_full`: the request already found it so).
    fn share(&self, t: Target, room: bool, local_full: bool) -> f64;
    /// The share of its traffic region outlier detection leaves `t`, in (0, 1].
    fn kept(&self, t: Target) -> f64;
    /// How many peer regions there are: the targets are `Local` and `Peer(0..peers)`.
    fn peers(&self) -> usize;
    /// Whether the local origin has any endpoint at all, healthy or not.
    fn local_has_endpoints(&self) -> bool;
}

/// What the attempts so far tell the next choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Steer {
    /// The local origin was found at its concurrency limit.
    pub(crate) local_full: bool,
    /// The last target tried: the row's other targets come first.
    pub(crate) avoid: Option<Target>,
    /// A target that could not be reached, reset the request, or fails as a region: any
    /// other healthy region comes before it.
    pub(crate) unreachable: Option<Target>,
}

/// One request's choice: its origin's row, and whether it must be served here.
pub(crate) struct Chooser<'a, C> {
    /// `None` when the table has no row for the origin (never, for a routed origin).
    pub(crate) row: Option<&'a Picker>,
    /// Serve it here or not at all (hops exhausted, or a protocol switch).
    pub(crate) local_only: bool,
    pub(crate) world: C,
}

impl<C: Capacity> Chooser<'_, C> {
    /// Where the next attempt goes, or why there is nowhere.
    pub(crate) fn choose<R: Rng + ?Sized>(&self, rng: &mut R, steer: Steer) -> Result<Target, ProxyError> {
        let Steer { local_full, avoid, unreachable } = steer;
        if self.local_only {
            return if local_full { Err(ProxyError::OriginBusy) } else { Ok(Target::Local) };
        }
        let row = self.row.ok_or(ProxyError::NoRoute)?;
        let with_room = |t| self.world.share(t, true, local_full);
        if let Some(t) = row.pick(rng, with_room, |t| Some(t) == avoid) {
            return Ok(self.divert(t, local_full, rng));
        }
        // A retry whose row has nothing but a peer that could not be reached or reset the
        // request (health has not caught up yet, e.g. a peer resetting every connection):
        // another healthy region before the same one again, as when every weighted target
        // is down. Not after an answer such as a shed 503: capacity spills only within the
        // row.
        if unreachable.is_some() {
            let others: Vec<Target> =
                self.all().filter(|t| Some(*t) != unreachable && with_room(*t) > 0.0).collect();
            if !others.is_empty() {
                return Ok(others[rng.random_range(0..others.len())]);
            }
        }
        if let Some(t) = row.pick(rng, with_room, |_| false) {
            return Ok(t);
        }
        // Healthy targets in the row, but all full: shed rather than overflow elsewhere.
        if row.pick(rng, |t| self.world.share(t, false, local_full), |_| false).is_some() {
            return Err(ProxyError::OriginBusy);
        }
        // Every weighted target is down: any healthy region will do.
        let usable: Vec<Target> = self.all().filter(|t| with_room(*t) > 0.0).collect();
        if usable.is_empty() {
            // Nothing looks healthy. The checks may be what is wrong (a missing health
            // path, a partition between prober and origin): try the local origin rather
            // than refuse everything; its own error then tells the client what happened.
            return match (local_full, self.world.local_has_endpoints()) {
                (true, _) => Err(ProxyError::OriginBusy),
                (false, true) => Ok(Target::Local),
                (false, false) => Err(ProxyError::NoEndpoint),
            };
        }
        let i = rng.random_range(0..usable.len());
        Ok(usable[i])
    }

    /// Region outlier detection: `t` keeps only its share of what the row gives it; the
    /// rest goes to the row's other targets, or to the other healthy regions when the row
    /// has none (a row naming only this region).
    fn divert<R: Rng + ?Sized>(&self, t: Target, local_full: bool, rng: &mut R) -> Target {
        let kept = self.world.kept(t);
        if kept >= 1.0 || rng.random::<f64>() < kept {
            return t;
        }
        let with_room = |x| self.world.share(x, true, local_full);
        if let Some(alt) = self.row.and_then(|row| row.pick(rng, with_room, |x| x == t)) {
            return alt;
        }
        let others: Vec<Target> =
            self.all().filter(|x| *x != t && with_room(*x) > 0.0 && self.world.kept(*x) >= 1.0).collect();
        if others.is_empty() {
            return t;
        }
        others[rng.random_range(0..others.len())]
    }

    /// Every target: this region first, then the peers.
    fn all(&self) -> impl Iterator<Item = Target> {
        std::iter::once(Target::Local).chain((0..self.world.peers()).map(Target::Peer))
    }
}

/// The targets as they are now, for requests to `origin` under `table`.
pub(crate) struct Live<'a> {
    pub(crate) targets: &'a Targets,
    pub(crate) outliers: &'a RegionOutliers,
    pub(crate) table: &'a CompiledTable,
    pub(crate) origin: OriginId,
}

impl Live<'_> {
    /// How the table says peer `i` is reached.
    pub(crate) fn mode(&self, peer: usize) -> PeerMode {
        self.table.peer_modes.get(peer).copied().unwrap_or_default()
    }
}

impl Capacity for Live<'_> {
    fn share(&self, t: Target, room: bool, local_full: bool) -> f64 {
        match t {
            Target::Local => {
                let Some(o) = self.targets.origins.get(self.origin) else { return 0.0 };
                if room && (local_full || !o.has_room()) { 0.0 } else { o.upstream.set.warmth() }
            }
            Target::Peer(i) => {
                self.targets.peers.get(i).map(|p| p.factor(self.origin, self.mode(i))).unwrap_or(0.0)
            }
        }
    }

    fn kept(&self, t: Target) -> f64 {
        self.outliers.kept(t.index())
    }

    fn peers(&self) -> usize {
        self.targets.peers.len()
    }

    fn local_has_endpoints(&self) -> bool {
        self.targets.origins.get(self.origin).is_some_and(|o| !o.upstream.set.is_empty())
    }
}

#[cfg(test)]
pub(super) mod tests;
