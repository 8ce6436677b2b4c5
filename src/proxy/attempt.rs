//! The attempts of one request: choose a target ([`super::choose`]), a path to it and an
//! endpoint, send, record what came back, and when that is safe and the budget allows, try
//! again elsewhere.
//!
//! What the attempts so far have learned (what to avoid, what could not be reached) is
//! [`Attempts`], which the loop consults and updates without I/O; the loop adds only the
//! sending and the bookkeeping around it.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Request, Response, StatusCode};
use rand::Rng;

use super::body::RequestGuard;
use super::choose::{Chooser, Live, Steer};
use super::client_body::ClientBody;
use super::error::ProxyError;
use super::forward::{Answer, Outgoing, Upstream};
use super::headers::{X_FLOWGATE_ERROR, X_FLOWGATE_REGION};
use super::hop::HopInfo;
use super::peer::{Path, PeerRegion};
use super::pool::{Fields, UpstreamResponse};
use super::region_outlier::RegionOutliers;
use super::request_body::{Kept, UpstreamBody};
use super::retry::{self, Reason, RetryPolicy};
use super::targets::Targets;
use crate::metrics::Metrics;
use crate::metrics::window::TargetWindow;
use crate::table::PeerMode;
use crate::table::compile::{CompiledTable, Target};
use crate::table::route::OriginId;

#[cfg(test)]
mod tests;

/// What every request's attempts share, for one proxy generation: where they can go, where
/// they record what they got, and the retry budget.
pub(crate) struct Dispatch {
    pub(crate) targets: Arc<Targets>,
    /// Per target region, in `Regions` order: what requests sent there got.
    pub(crate) windows: Arc<Vec<TargetWindow>>,
    pub(crate) outliers: Arc<RegionOutliers>,
    pub(crate) retry: RetryPolicy,
    /// For `retries_total` and `retry_budget_exhausted_total`.
    pub(crate) metrics: Metrics,
}

/// What the request path learned, for the response headers, metrics and logs.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) origin: Option<OriginId>,
    pub(crate) target: Option<Target>,
    pub(crate) attempts: u32,
    /// When the answer relayed arrived, if one did: the request's duration ends there.
    pub(crate) answered: Option<tokio::time::Instant>,
}

/// One request's journey.
pub(crate) struct Plan<'a> {
    pub(crate) dispatch: &'a Dispatch,
    pub(crate) table: &'a CompiledTable,
    pub(crate) origin: OriginId,
    pub(crate) hop: &'a HopInfo,
    /// Serve it here or not at all.
    pub(crate) local_only: bool,
    /// The request asks for a protocol switch (`headers::is_upgrade_request`).
    pub(crate) upgrade: bool,
    /// Where the answer's ordinary fields go: the own HTTP/1.1 server path takes them
    /// as bytes.
    pub(crate) fields: Fields,
}

/// Where an attempt went: a target, the path to it, and the endpoint in that path's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tried {
    pub(crate) target: Target,
    pub(crate) path: Path,
    pub(crate) endpoint: usize,
}

/// What an attempt got, as the retry decision reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// An answer; `kept_low` for a 500 from a region that outlier detection keeps below
    /// its share.
    Answered {
        status: StatusCode,
        kept_low: bool,
    },
    Failed(ProxyError),
}

impl Seen {
    /// `kept_low` is asked only about a 500, the one answer it matters for.
    fn of(result: &Result<Answer, ProxyError>, kept_low: impl FnOnce() -> bool) -> Seen {
        match result {
            Ok(a) => {
                let status = a.response.status();
                Seen::Answered { status, kept_low: status == StatusCode::INTERNAL_SERVER_ERROR && kept_low() }
            }
            Err(e) => Seen::Failed(*e),
        }
    }

    /// A 500 from a region that outlier detection keeps below its share: worth another
    /// region (idempotent requests, under the budget).
    fn outlier_500(self) -> bool {
        matches!(self, Seen::Answered { status: StatusCode::INTERNAL_SERVER_ERROR, kept_low: true })
    }
}

/// What the attempts of one request have learned so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempts {
    pub(crate) steer: Steer,
    /// A peer whose load balancer failed this request: its proxies next, when usable.
    avoid_lb: Option<usize>,
    /// The last attempt's endpoint, not picked again in its set unless it is the only one.
    avoid_endpoint: Option<Tried>,
    idempotent: bool,
    /// The request came from a peer proxy, which retries it under its own budget.
    forwarded: bool,
}

impl Attempts {
    pub(crate) fn new(idempotent: bool, hops: u32) -> Attempts {
        Attempts {
            steer: Steer::default(),
            avoid_lb: None,
            avoid_endpoint: None,
            idempotent,
            forwarded: hops > 0,
        }
    }

    /// The path to peer `i`: through its proxies when its load balancer already failed
    /// this request and they are usable, else as `mode` says.
    fn path(&self, peer: &PeerRegion, i: usize, mode: PeerMode) -> Option<Path> {
        match (self.avoid_lb == Some(i), peer.path(PeerMode::Direct)) {
            (true, Some(direct)) => Some(direct),
            _ => peer.path(mode),
        }
    }

    /// The endpoint of `target`'s `path` set that the next pick must pass over, if any.
    pub(crate) fn exclude(&self, target: Target, path: Path) -> Option<usize> {
        self.avoid_endpoint.filter(|t| t.target == target && t.path == path).map(|t| t.endpoint)
    }

    /// Why what an attempt got is worth another attempt, if it is.
    pub(crate) fn reason(&self, seen: Seen) -> Option<Reason> {
        let reason = match seen {
            Seen::Answered { status, .. }
                if (retry::retryable_status(status) || seen.outlier_500()) && self.idempotent =>
            {
                Some(Reason::Status)
            }
            Seen::Answered { .. } => None,
            Seen::Failed(e) => Reason::for_error(e, self.idempotent),
        };
        // A request forwarded by a peer is that proxy's to retry, under its budget;
        // retrying it here as well would multiply one client request's attempts at the
        // origins. Only a request that reached no upstream is retried at both hops.
        reason.filter(|r| !self.forwarded || *r == Reason::Connect)
    }

    /// Steers the retry of an attempt that went to `tried`, got `seen` and is retried for
    /// `reason`. `local_gone`: it went to the local origin, and no other endpoint of the
    /// origin can take the request now.
    pub(crate) fn retrying(&mut self, tried: Tried, seen: Seen, reason: Reason, local_gone: bool) {
        let Tried { target, path, .. } = tried;
        self.steer.avoid = Some(target);
        // Unreachable or resetting: a peer's proxies (not its load balancer: the retry goes
        // to the proxies next), or the local origin when no other endpoint of it can take
        // the request (a crashed origin: the retry goes to another region at once, even
        // when the row names only this one).
        let direct_peer = matches!(target, Target::Peer(_)) && path == Path::Direct;
        let local_gone = target == Target::Local && local_gone;
        let broken = matches!(reason, Reason::Connect | Reason::Reset);
        let failing_region = seen.outlier_500();
        self.steer.unreachable =
            ((broken && (direct_peer || local_gone)) || failing_region).then_some(target);
        self.avoid_endpoint = Some(tried);
        if let (Target::Peer(i), Path::Lb) = (target, path) {
            self.avoid_lb = Some(i);
        }
    }
}

impl Plan<'_> {
    /// Sends the request, retrying elsewhere when safe; returns the answer to relay.
    pub(crate) async fn run<R: Rng + Send>(
        &self,
        req: Request<ClientBody>,
        guard: &mut RequestGuard,
        outcome: &mut Outcome,
        rng: &mut R,
    ) -> Result<Response<UpstreamResponse>, ProxyError> {
        let d = self.dispatch;
        let (parts, body) = req.into_parts();
        let mut kept = Kept::keep(&parts, body, d.retry.max_body_bytes).await?;
        d.retry.deposit();
        let live =
            Live { targets: &d.targets, outliers: &d.outliers, table: self.table, origin: self.origin };
        let chooser = Chooser { row: self.table.row(self.origin), local_only: self.local_only, world: live };
        let mut state = Attempts::new(retry::is_idempotent(&parts.method), self.hop.hops);
        let mut last: Option<Result<Answer, ProxyError>> = None;
        // Bounded: every pass either makes an attempt or marks the local origin full.
        for _ in 0..d.retry.max_attempts + 2 {
            if outcome.attempts >= d.retry.max_attempts {
                break;
            }
            let target = match chooser.choose(rng, state.steer) {
                Ok(t) => t,
                Err(e) => {
                    last = last.or(Some(Err(e)));
                    break;
                }
            };
            guard.permit = None;
            let (upstream, path) = match target {
                Target::Local => {
                    let Some(origin) = d.targets.origins.get(self.origin) else { break };
                    match origin.permit() {
                        Some(permit) => guard.permit = Some(permit),
                        None => {
                            state.steer.local_full = true;
                            continue;
                        }
                    }
                    (&origin.upstream, Path::Direct)
                }
                Target::Peer(i) => {
                    let Some(peer) = d.targets.peers.get(i) else { break };
                    let Some(path) = state.path(peer, i, chooser.world.mode(i)) else {
                        state.steer.avoid = Some(target);
                        continue;
                    };
                    (peer.upstream(path), path)
                }
            };
            let Some(endpoint) = upstream.set.pick(rng, state.exclude(target, path)) else {
                state.steer.avoid = Some(target);
                continue;
            };
            let Some(body) = kept.take() else { break };
            let req = self.request(&parts, body, target, upstream);
            outcome.target = Some(target);
            outcome.attempts += 1;
            let result = upstream.send(endpoint, req, self.hop.deadline).await;
            if matches!(result, Err(ProxyError::ConnectFailed)) {
                upstream.set.mark_down(endpoint);
            }
            let tried = Tried { target, path, endpoint };
            self.record(tried, &result);
            let seen = Seen::of(&result, || d.outliers.kept(target.index()) < 1.0);
            let reason = state.reason(seen);
            last = Some(result);
            let Some(reason) = reason else { break };
            if !kept.replayable() || outcome.attempts >= d.retry.max_attempts {
                break;
            }
            if !d.retry.withdraw() {
                d.metrics.retry_budget_exhausted_total.inc();
                break;
            }
            d.metrics.retries_total.with_label_values(&[reason.name()]).inc();
            let local_gone = target == Target::Local && !upstream.set.usable_besides(endpoint);
            state.retrying(tried, seen, reason, local_gone);
        }
        match last {
            Some(Ok(answer)) => {
                outcome.answered = Some(answer.at);
                Ok(answer.response)
            }
            Some(Err(e)) => Err(e),
            None => Err(if state.steer.local_full { ProxyError::OriginBusy } else { ProxyError::NoEndpoint }),
        }
    }

    /// The request of one attempt: the client's head as it is, but one to a peer region
    /// carries the next hop's fields (the time `upstream` may spend on it among them).
    fn request<'p>(
        &'p self,
        head: &'p Parts,
        body: UpstreamBody,
        target: Target,
        upstream: &Upstream,
    ) -> Outgoing<'p> {
        let next_hop = match target {
            Target::Local => None,
            Target::Peer(_) => Some(self.hop.next(upstream.budget(self.hop.deadline))),
        };
        Outgoing::Head { head, body, upgrade: self.upgrade, next_hop, fields: self.fields }
    }

    /// Every attempt counts for the region it went to (a 500 retried elsewhere is still
    /// that region's 500): the per-target figures and outlier detection; and for a peer,
    /// for the path it took, which the bypass judge weighs.
    fn record(&self, tried: Tried, result: &Result<Answer, ProxyError>) {
        let d = self.dispatch;
        if let Some(w) = d.windows.get(tried.target.index()) {
            match result {
                Ok(a) => {
                    let error = a.response.status().is_server_error();
                    // Shedding is a kind of 5xx: only one is worth the look-up.
                    let shed = error
                        && a.response
                            .headers()
                            .get(&X_FLOWGATE_ERROR)
                            .is_some_and(|v| v == ProxyError::OriginBusy.code());
                    w.record_answer_at(a.at, error, shed, a.latency)
                }
                Err(_) => w.record(true, Duration::ZERO),
            }
        }
        if let Target::Peer(i) = tried.target
            && let Some(peer) = d.targets.peers.get(i)
        {
            let (failed, latency) = match result {
                Ok(a) => (lb_failure(a), a.latency),
                Err(e) => {
                    (true, if *e == ProxyError::Timeout { Duration::from_secs(1) } else { Duration::ZERO })
                }
            };
            match tried.path {
                Path::Lb => peer.bypass.record_lb(failed, latency),
                Path::Direct => peer.bypass.record_direct(failed, latency),
            }
        }
    }
}

/// Whether an answer through a load balancer counts against it: its own errors (not a
/// peer proxy's, which name their region), or signs of overload.
fn lb_failure(a: &Answer) -> bool {
    let s = a.response.status();
    let from_flowgate = a.response.headers().contains_key(&X_FLOWGATE_REGION);
    s == StatusCode::TOO_MANY_REQUESTS
        || (!from_flowgate && matches!(s, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE))
}
