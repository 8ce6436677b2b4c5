//! Retries and the budget that bounds them.
//!
//! Why a budget and not only a maximum per request: when a region is sick, every request
//! failing and being retried twice triples the load on what is left, which is how one
//! sick region takes a healthy one down. A budget lets retries add at most a share of
//! recent traffic (plus a small floor per second so a quiet proxy still retries), so they
//! help with scattered failures and fade out in a general one. Built on tower's
//! `TpsBudget`.

use std::time::Duration;

use http::{Method, StatusCode};
use tower::retry::budget::{Budget, TpsBudget};

use super::error::ProxyError;
use crate::config;

/// How a proxy retries.
#[derive(Debug)]
pub(crate) struct RetryPolicy {
    budget: TpsBudget,
    pub(crate) max_attempts: u32,
    pub(crate) max_body_bytes: usize,
}

impl RetryPolicy {
    pub(crate) fn new(cfg: &config::Retry) -> RetryPolicy {
        RetryPolicy {
            budget: TpsBudget::new(
                Duration::from_secs(10),
                cfg.min_per_second,
                (cfg.budget_percent / 100.0) as f32,
            ),
            max_attempts: cfg.max_attempts,
            max_body_bytes: cfg.max_body_bytes,
        }
    }

    /// Every original request earns the budget a little.
    pub(crate) fn deposit(&self) {
        self.budget.deposit();
    }

    /// Takes one retry from the budget, if there is one left.
    pub(crate) fn withdraw(&self) -> bool {
        self.budget.withdraw()
    }
}

/// Methods that may be sent twice without changing the outcome (RFC 9110 section 9.2.2).
pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// Answers worth another try elsewhere (for idempotent requests only).
pub(crate) fn retryable_status(s: StatusCode) -> bool {
    matches!(s, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
}

/// Why a retry happens, as `retries_total{reason}` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The request never reached an upstream (connect failure, or an HTTP/2 stream refused
    /// unprocessed): always safe.
    Connect,
    /// The upstream reset or closed the connection (idempotent requests only).
    Reset,
    /// 502, 503 or 504 (idempotent requests only).
    Status,
}

impl Reason {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reason::Connect => "connect-failure",
            Reason::Reset => "reset",
            Reason::Status => "retriable-status",
        }
    }

    /// The reason to retry after an error, if any: what the error says about whether the
    /// request reached the upstream decides it, together with the method.
    pub(crate) fn for_error(e: ProxyError, idempotent: bool) -> Option<Reason> {
        match e {
            ProxyError::ConnectFailed
            | ProxyError::ConnectTimeout
            | ProxyError::NoEndpoint
            | ProxyError::UpstreamRefused => Some(Reason::Connect),
            ProxyError::UpstreamReset | ProxyError::UpstreamProtocol if idempotent => Some(Reason::Reset),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_retries_at_a_share_of_requests() {
        let p = RetryPolicy::new(&config::Retry {
            budget_percent: 20.0,
            min_per_second: 0,
            max_body_bytes: 0,
            max_attempts: 3,
        });
        for _ in 0..1000 {
            p.deposit();
        }
        let granted = (0..1000).filter(|_| p.withdraw()).count();
        assert!((150..=250).contains(&granted), "granted {granted} retries for 1000 requests");
    }

    #[test]
    fn only_unsent_requests_retry_whatever_the_method() {
        assert_eq!(Reason::for_error(ProxyError::ConnectFailed, false), Some(Reason::Connect));
        assert_eq!(Reason::for_error(ProxyError::UpstreamRefused, false), Some(Reason::Connect));
        assert_eq!(Reason::for_error(ProxyError::UpstreamReset, false), None);
        assert_eq!(Reason::for_error(ProxyError::UpstreamReset, true), Some(Reason::Reset));
        assert_eq!(Reason::for_error(ProxyError::Timeout, true), None);
    }
}
