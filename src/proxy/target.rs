//! Choosing where a request is served and getting it there: the row's weighted pick over
//! healthy targets with room, spill-over when the local origin is full, the peer path
//! (load balancer or bypass), and retries elsewhere when they are safe and budgeted.

use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use super::body::RequestGuard;
use super::error::ProxyError;
use super::forward::{Answer, UpstreamBody};
use super::peer::Path;
use super::retry::{self, Reason};
use super::{ListenerKind, Proxy};
use crate::table::PeerMode;
use crate::table::compile::{CompiledTable, Target};
use crate::table::route::OriginId;

pub static X_FLOWGATE_HOPS: HeaderName = HeaderName::from_static("x-flowgate-hops");
pub static X_FLOWGATE_SOURCE_REGION: HeaderName = HeaderName::from_static("x-flowgate-source-region");
/// Milliseconds the sender will still wait for this request: the receiver never waits
/// longer (a client that has given up is not served at the far end of the world).
pub static X_FLOWGATE_DEADLINE_MS: HeaderName = HeaderName::from_static("x-flowgate-deadline-ms");

/// How long the proxy waits for a small request body it keeps for retries.
const KEEP_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the request path learned, for the response headers, metrics and logs.
#[derive(Debug, Default)]
pub struct Outcome {
    pub origin: Option<OriginId>,
    pub target: Option<Target>,
    pub attempts: u32,
}

/// The fleet fields of a request: how far it has travelled and where it entered.
#[derive(Debug)]
pub struct HopInfo {
    pub hops: u32,
    pub source: HeaderValue,
    /// `hops >= max_hops`: serve it here, never forward it again.
    pub local_only: bool,
    /// When the previous hop stops waiting (from `x-flowgate-deadline-ms`).
    pub deadline: Option<tokio::time::Instant>,
}

impl HopInfo {
    /// Reads the hop fields, which only a peer listener honours (public listeners strip
    /// them). A value that does not parse is treated as having no hops left, so a
    /// malformed header can never make a request travel further.
    pub fn read(listener: ListenerKind, h: &HeaderMap, own_region: &HeaderValue, max_hops: u32) -> HopInfo {
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
}

/// The request body as the retry logic holds it.
enum Kept {
    /// Small enough to keep: every attempt gets a copy.
    Bytes(Bytes),
    /// Streamed: only one attempt can use it.
    Stream(Option<Incoming>),
}

impl Kept {
    fn replayable(&self) -> bool {
        matches!(self, Kept::Bytes(_))
    }

    fn take(&mut self) -> Option<UpstreamBody> {
        match self {
            Kept::Bytes(b) => Some(Either::Right(Full::new(b.clone()))),
            Kept::Stream(s) => s.take().map(Either::Left),
        }
    }
}

async fn keep_body(body: Incoming, max: usize) -> Result<Kept, ProxyError> {
    if body.is_end_stream() {
        return Ok(Kept::Bytes(Bytes::new()));
    }
    match body.size_hint().exact() {
        Some(n) if n <= max as u64 => {
            let collect = Limited::new(body, max).collect();
            match tokio::time::timeout(KEEP_BODY_TIMEOUT, collect).await {
                Ok(Ok(c)) => Ok(Kept::Bytes(c.to_bytes())),
                _ => Err(ProxyError::BadRequest),
            }
        }
        _ => Ok(Kept::Stream(Some(body))),
    }
}

/// One request's journey.
pub(super) struct Plan<'a> {
    pub proxy: &'a Proxy,
    pub table: &'a CompiledTable,
    pub origin: OriginId,
    pub hop: &'a HopInfo,
    pub local_only: bool,
}

impl Plan<'_> {
    fn mode(&self, peer: usize) -> PeerMode {
        self.table.peer_modes.get(peer).copied().unwrap_or_default()
    }

    /// A target's usable share now, in [0, 1]; `room` also requires spare concurrency.
    fn factor(&self, t: Target, room: bool, local_full: bool) -> f64 {
        let targets = &self.proxy.targets;
        match t {
            Target::Local => {
                let Some(o) = targets.origins.get(self.origin) else { return 0.0 };
                if room && (local_full || !o.has_room()) { 0.0 } else { o.upstream.set.warmth() }
            }
            Target::Peer(i) => {
                targets.peers.get(i).map(|p| p.factor(self.origin, self.mode(i))).unwrap_or(0.0)
            }
        }
    }

    fn choose(
        &self,
        local_full: bool,
        avoid: Option<Target>,
        unreachable: Option<Target>,
    ) -> Result<Target, ProxyError> {
        if self.local_only {
            return if local_full { Err(ProxyError::OriginBusy) } else { Ok(Target::Local) };
        }
        let row = self.table.row(self.origin).ok_or(ProxyError::NoRoute)?;
        let mut rng = rand::rng();
        let with_room = |t| self.factor(t, true, local_full);
        if let Some(t) = row.pick(&mut rng, with_room, |t| Some(t) == avoid) {
            return Ok(self.divert(t, local_full, &mut rng));
        }
        // A retry whose row has nothing but a peer that could not be reached or reset the
        // request (health has not caught up yet, e.g. a peer resetting every connection):
        // another healthy region before the same one again, as when every weighted target
        // is down. Not after an answer such as a shed 503: capacity spills only within the
        // row.
        if unreachable.is_some() {
            let n = self.proxy.targets.peers.len();
            let others: Vec<Target> = std::iter::once(Target::Local)
                .chain((0..n).map(Target::Peer))
                .filter(|t| Some(*t) != unreachable && with_room(*t) > 0.0)
                .collect();
            if !others.is_empty() {
                return Ok(others[rand::RngExt::random_range(&mut rng, 0..others.len())]);
            }
        }
        if let Some(t) = row.pick(&mut rng, with_room, |_| false) {
            return Ok(t);
        }
        // Healthy targets in the row, but all full: shed rather than overflow elsewhere.
        if row.pick(&mut rng, |t| self.factor(t, false, local_full), |_| false).is_some() {
            return Err(ProxyError::OriginBusy);
        }
        // Every weighted target is down: any healthy region will do.
        let n = self.proxy.targets.peers.len();
        let all = std::iter::once(Target::Local).chain((0..n).map(Target::Peer));
        let usable: Vec<Target> = all.filter(|t| with_room(*t) > 0.0).collect();
        if usable.is_empty() {
            // Nothing looks healthy. The checks may be what is wrong (a missing health
            // path, a partition between prober and origin): try the local origin rather
            // than refuse everything; its own error then tells the client what happened.
            let has_endpoints =
                self.proxy.targets.origins.get(self.origin).is_some_and(|o| !o.upstream.set.is_empty());
            return match (local_full, has_endpoints) {
                (true, _) => Err(ProxyError::OriginBusy),
                (false, true) => Ok(Target::Local),
                (false, false) => Err(ProxyError::NoEndpoint),
            };
        }
        let i = rand::RngExt::random_range(&mut rng, 0..usable.len());
        Ok(usable[i])
    }

    /// Region outlier detection: `t` keeps only its share of what the row gives it; the
    /// rest goes to the row's other targets, or to the other healthy regions when the row
    /// has none (a row naming only this region).
    fn divert(&self, t: Target, local_full: bool, rng: &mut impl rand::Rng) -> Target {
        let kept = self.proxy.outliers.kept(t.index());
        if kept >= 1.0 || rand::RngExt::random::<f64>(rng) < kept {
            return t;
        }
        let with_room = |x| self.factor(x, true, local_full);
        let row = self.table.row(self.origin);
        if let Some(alt) = row.and_then(|row| row.pick(rng, with_room, |x| x == t)) {
            return alt;
        }
        let n = self.proxy.targets.peers.len();
        let others: Vec<Target> = std::iter::once(Target::Local)
            .chain((0..n).map(Target::Peer))
            .filter(|x| *x != t && with_room(*x) > 0.0 && self.proxy.outliers.kept(x.index()) >= 1.0)
            .collect();
        if others.is_empty() {
            return t;
        }
        others[rand::RngExt::random_range(rng, 0..others.len())]
    }

    fn build(
        &self,
        parts: &Parts,
        body: UpstreamBody,
        target: Target,
        budget: Duration,
    ) -> Request<UpstreamBody> {
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.version_mut() = parts.version;
        *req.headers_mut() = parts.headers.clone();
        if let Target::Peer(_) = target {
            let h = req.headers_mut();
            h.insert(&X_FLOWGATE_HOPS, HeaderValue::from(self.hop.hops.saturating_add(1)));
            h.insert(&X_FLOWGATE_SOURCE_REGION, self.hop.source.clone());
            h.insert(&X_FLOWGATE_DEADLINE_MS, HeaderValue::from(budget.as_millis().max(1) as u64));
        }
        req
    }

    /// Sends the request, retrying elsewhere when safe; returns the answer to relay.
    pub async fn run(
        &self,
        req: Request<Incoming>,
        guard: &mut RequestGuard,
        outcome: &mut Outcome,
    ) -> Result<Response<Incoming>, ProxyError> {
        let p = self.proxy;
        let (parts, body) = req.into_parts();
        let idempotent = retry::is_idempotent(&parts.method);
        let mut kept = keep_body(body, p.retry.max_body_bytes).await?;
        p.retry.deposit();
        let mut local_full = false;
        let mut avoid: Option<Target> = None;
        let mut unreachable: Option<Target> = None;
        let mut avoid_lb: Option<usize> = None;
        let mut avoid_endpoint: Option<(Target, Path, usize)> = None;
        let mut last: Option<Result<Answer, ProxyError>> = None;
        // Bounded: every pass either makes an attempt or marks the local origin full.
        for _ in 0..p.retry.max_attempts + 2 {
            if outcome.attempts >= p.retry.max_attempts {
                break;
            }
            let target = match self.choose(local_full, avoid, unreachable) {
                Ok(t) => t,
                Err(e) => {
                    last = last.or(Some(Err(e)));
                    break;
                }
            };
            guard.permit = None;
            let (upstream, path) = match target {
                Target::Local => {
                    let Some(origin) = p.targets.origins.get(self.origin) else { break };
                    match origin.permit() {
                        Some(permit) => guard.permit = Some(permit),
                        None => {
                            local_full = true;
                            continue;
                        }
                    }
                    (&origin.upstream, Path::Direct)
                }
                Target::Peer(i) => {
                    let Some(peer) = p.targets.peers.get(i) else { break };
                    let path = match (avoid_lb == Some(i), peer.path(PeerMode::Direct)) {
                        (true, Some(direct)) => Some(direct),
                        _ => peer.path(self.mode(i)),
                    };
                    let Some(path) = path else {
                        avoid = Some(target);
                        continue;
                    };
                    (peer.upstream(path), path)
                }
            };
            let exclude = avoid_endpoint.filter(|(t, pa, _)| *t == target && *pa == path).map(|(_, _, i)| i);
            let Some(endpoint) = upstream.set.pick(&mut rand::rng(), exclude) else {
                avoid = Some(target);
                continue;
            };
            let Some(body) = kept.take() else { break };
            let req = self.build(&parts, body, target, upstream.budget(self.hop.deadline));
            outcome.target = Some(target);
            outcome.attempts += 1;
            let result = upstream.send(endpoint, req, self.hop.deadline).await;
            if matches!(result, Err(ProxyError::ConnectFailed)) {
                upstream.set.mark_down(endpoint);
            }
            // Every attempt counts for the region it went to (a 500 retried elsewhere is
            // still that region's 500): the per-target figures and outlier detection.
            if let Some(w) = p.target_windows.get(target.index()) {
                match &result {
                    Ok(a) => {
                        let shed = a
                            .response
                            .headers()
                            .get(&super::headers::X_FLOWGATE_ERROR)
                            .is_some_and(|v| v == "shed");
                        w.record_answer(a.response.status().is_server_error(), shed, a.latency)
                    }
                    Err(_) => w.record(true, Duration::ZERO),
                }
            }
            if let Target::Peer(i) = target
                && let Some(peer) = p.targets.peers.get(i)
            {
                let (failed, latency) = match &result {
                    Ok(a) => (lb_failure(a), a.latency),
                    Err(e) => (
                        true,
                        if *e == ProxyError::Timeout { Duration::from_secs(1) } else { Duration::ZERO },
                    ),
                };
                match path {
                    Path::Lb => peer.bypass.record_lb(failed, latency),
                    Path::Direct => peer.bypass.record_direct(failed, latency),
                }
            }
            // A 500 from a region that outlier detection keeps below its share: worth
            // another region (idempotent requests, under the budget).
            let outlier_500 = |a: &Answer| {
                a.response.status() == StatusCode::INTERNAL_SERVER_ERROR
                    && p.outliers.kept(target.index()) < 1.0
            };
            let reason = match &result {
                Ok(a) if (retry::retryable_status(a.response.status()) || outlier_500(a)) && idempotent => {
                    Some(Reason::Status)
                }
                Ok(_) => None,
                Err(e) => Reason::for_error(*e, idempotent),
            };
            // A request forwarded by a peer is that proxy's to retry, under its budget;
            // retrying it here as well would multiply one client request's attempts at the
            // origins. Only a request that reached no upstream is retried at both hops.
            let reason = reason.filter(|r| self.hop.hops == 0 || *r == Reason::Connect);
            last = Some(result);
            let Some(reason) = reason else { break };
            if !kept.replayable() || outcome.attempts >= p.retry.max_attempts {
                break;
            }
            if !p.retry.withdraw() {
                p.metrics.retry_budget_exhausted_total.inc();
                break;
            }
            p.metrics.retries_total.with_label_values(&[reason.name()]).inc();
            avoid = Some(target);
            // Unreachable or resetting: a peer's proxies (not its load balancer: the retry
            // goes to the proxies next), or the local origin when no other endpoint of it
            // can take the request (a crashed origin: the retry goes to another region at
            // once, even when the row names only this one).
            let direct_peer = matches!(target, Target::Peer(_)) && path == Path::Direct;
            let local_gone = target == Target::Local && !upstream.set.usable_besides(endpoint);
            let broken = matches!(reason, Reason::Connect | Reason::Reset);
            let failing_region = matches!(&last, Some(Ok(a)) if outlier_500(a));
            unreachable = ((broken && (direct_peer || local_gone)) || failing_region).then_some(target);
            avoid_endpoint = Some((target, path, endpoint));
            if let (Target::Peer(i), Path::Lb) = (target, path) {
                avoid_lb = Some(i);
            }
        }
        match last {
            Some(Ok(answer)) => {
                guard.conn = answer.conn;
                Ok(answer.response)
            }
            Some(Err(e)) => Err(e),
            None => Err(if local_full { ProxyError::OriginBusy } else { ProxyError::NoEndpoint }),
        }
    }
}

/// Whether an answer through a load balancer counts against it: its own errors (not a
/// peer proxy's, which name their region), or signs of overload.
fn lb_failure(a: &Answer) -> bool {
    let s = a.response.status();
    let from_flowgate = a.response.headers().contains_key(&super::headers::X_FLOWGATE_REGION);
    s == StatusCode::TOO_MANY_REQUESTS
        || (!from_flowgate && matches!(s, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE))
}
