//! Where requests can go: this region's origins and the peer regions, built once per proxy
//! generation and shared with its background tasks.

use super::forward::Upstream;
use super::origin::OriginPool;
use super::peer::PeerRegion;

/// This region's origins (by `OriginId`) and the peer regions (by peer index, the order of
/// `Regions`).
#[derive(Debug)]
pub(crate) struct Targets {
    pub(crate) origins: Vec<OriginPool>,
    pub(crate) peers: Vec<PeerRegion>,
}

/// Names one upstream set of `Targets`, for tasks that outlive a borrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamRef {
    Origin(usize),
    Lb(usize),
    Proxies(usize),
}

impl Targets {
    pub(crate) fn upstream(&self, which: UpstreamRef) -> Option<&Upstream> {
        match which {
            UpstreamRef::Origin(i) => self.origins.get(i).map(|o| &o.upstream),
            UpstreamRef::Lb(i) => self.peers.get(i).map(|p| &p.lb),
            UpstreamRef::Proxies(i) => self.peers.get(i).map(|p| &p.proxies),
        }
    }

    /// Every upstream set: origins first, then each peer's load balancer and proxies.
    pub(crate) fn upstream_refs(&self) -> Vec<UpstreamRef> {
        let origins = (0..self.origins.len()).map(UpstreamRef::Origin);
        let peers = (0..self.peers.len()).flat_map(|i| [UpstreamRef::Lb(i), UpstreamRef::Proxies(i)]);
        origins.chain(peers).collect()
    }
}
