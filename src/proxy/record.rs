//! The last two phases of the request path, for every answer whoever made it: `respond`
//! marks it (the region that made it, the attempts it took) and `record` counts it (the
//! error rates the autopilot and the health answer read, the request metrics, the access
//! log).

use tokio::time::Instant;

use http::{HeaderValue, Method, Request, Response};

use super::attempt::Outcome;
use super::body::ProxyBody;
use super::headers::{X_FLOWGATE_ATTEMPTS, X_FLOWGATE_ERROR, X_FLOWGATE_REGION};
use super::{ConnCtx, Proxy};
use crate::table::compile::Target;

/// What the access log keeps of a request, taken before the request moves on.
pub(super) struct Access {
    method: Method,
    path: String,
}

impl Access {
    pub(super) fn of<B>(req: &Request<B>) -> Access {
        Access { method: req.method().clone(), path: req.uri().path().to_owned() }
    }
}

impl Proxy {
    /// Names the region that made the answer (a peer's answer keeps the name it carries)
    /// and how many attempts it took when more than one.
    pub(super) fn respond(&self, resp: &mut Response<ProxyBody>, outcome: &Outcome) {
        let h = resp.headers_mut();
        match outcome.target {
            Some(Target::Peer(_)) if h.contains_key(&X_FLOWGATE_REGION) => {}
            Some(t @ Target::Peer(_)) => {
                if let Ok(v) = HeaderValue::from_str(self.regions.name(t)) {
                    h.insert(&X_FLOWGATE_REGION, v);
                }
            }
            _ => {
                h.insert(&X_FLOWGATE_REGION, self.region_header.clone());
            }
        }
        if outcome.attempts > 1 {
            h.insert(&X_FLOWGATE_ATTEMPTS, HeaderValue::from(outcome.attempts));
        }
    }

    /// Counts the answer: the error rates (all traffic, and the clients' own for a
    /// non-peer listener), the request metrics and, when on, the access log.
    pub(super) fn record(
        &self,
        ctx: &ConnCtx,
        resp: &Response<ProxyBody>,
        outcome: &Outcome,
        started: Instant,
        access: Option<Access>,
    ) {
        let status = resp.status();
        // The answer's arrival, clocked already when it came from upstream, serves both
        // windows and the latency; else one clock read (tokio's, which tests pause).
        let now = outcome.answered.unwrap_or_else(Instant::now);
        self.metrics.rate.record_at(now, status.is_server_error());
        if !ctx.listener.is_peer() {
            self.metrics.source_rate.record_at(now, status.is_server_error());
        }
        let elapsed = now.saturating_duration_since(started);
        self.request_metrics.observe(
            ctx.listener as usize,
            outcome.origin,
            outcome.target.map(Target::index),
            status.as_u16(),
            elapsed.as_secs_f64(),
        );
        if let Some(a) = access {
            tracing::info!(
                target: "flowgate::access",
                listener = ctx.listener.name(),
                client = %ctx.remote,
                method = %a.method,
                path = %a.path,
                status = status.as_u16(),
                origin = outcome.origin.map(|o| &*self.origin_names[o]).unwrap_or("-"),
                target_region = outcome.target.map(|t| self.regions.name(t)).unwrap_or("-"),
                attempts = outcome.attempts,
                error = resp.headers().get(&X_FLOWGATE_ERROR).and_then(|v| v.to_str().ok()).unwrap_or("-"),
                ms = elapsed.as_secs_f64() * 1000.0,
            );
        }
    }
}
