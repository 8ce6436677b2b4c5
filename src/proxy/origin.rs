//! A local origin: its endpoint set, and the concurrency cap that protects it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::balance::SetPolicy;
use super::forward::{Upstream, UpstreamSettings};
use crate::config;

/// One origin of this region.
#[derive(Debug)]
pub(crate) struct OriginPool {
    pub(crate) name: Arc<str>,
    pub(crate) upstream: Upstream,
    /// How active health checks probe its endpoints.
    pub(crate) health: config::HealthCheck,
    /// Probed by `http` health checks.
    pub(crate) health_path: String,
    /// Asked about by `grpc` health checks ("" for the whole server).
    pub(crate) health_service: String,
    max_concurrency: usize,
    /// Requests to this origin whose response has not finished; bounded by `max_concurrency`.
    inflight: Arc<AtomicUsize>,
}

/// Counts one request against its origin's concurrency until dropped (when the response
/// body ends or the exchange is abandoned).
#[derive(Debug)]
pub(crate) struct OriginPermit(Arc<AtomicUsize>);

impl Drop for OriginPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl OriginPool {
    pub(crate) fn new(name: &str, cfg: &config::Origin, all: &config::Config) -> OriginPool {
        let settings = UpstreamSettings {
            protocol: cfg.protocol,
            connect_timeout: cfg.connect_timeout.unwrap_or(all.timeouts.connect),
            request_timeout: cfg.request_timeout.unwrap_or(all.timeouts.request),
            pool_idle_timeout: all.timeouts.upstream_idle,
            pool_max_idle: all.limits.upstream_pool_idle,
            tls: None,
            server_name: None,
        };
        OriginPool {
            name: name.into(),
            upstream: Upstream::new(&cfg.endpoints, SetPolicy::from_config(all), &settings),
            health: cfg.health,
            health_path: cfg.health_path.clone(),
            health_service: cfg.health_service.clone(),
            max_concurrency: cfg.max_concurrency,
            inflight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes a concurrency slot, or `None` when the origin is at its limit.
    pub(crate) fn permit(&self) -> Option<OriginPermit> {
        let prev = self.inflight.fetch_add(1, Ordering::Relaxed);
        let permit = OriginPermit(self.inflight.clone());
        (prev < self.max_concurrency).then_some(permit)
    }

    pub(crate) fn has_room(&self) -> bool {
        self.inflight.load(Ordering::Relaxed) < self.max_concurrency
    }

    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
}
