//! The Prometheus families of the contract (prefix `flowgate_`), typed, in one registry
//! per proxy so that several proxies can live in one process (tests, the demo).

pub(crate) mod children;
pub(crate) mod known;
pub(crate) mod window;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric a proxy exports.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    /// `{listener, origin, target_region, code}`
    pub(crate) requests_total: IntCounterVec,
    /// `{origin, target_region}`
    pub(crate) request_duration_seconds: HistogramVec,
    pub(crate) inflight_requests: IntGauge,
    pub(crate) table_version: IntGauge,
    pub(crate) table_applied_total: IntCounter,
    /// `{reason}`
    pub(crate) table_rejected_total: IntCounterVec,
    /// `{kind, region, endpoint}`; kind is `origin`, `lb` or `proxies`.
    pub(crate) endpoint_healthy: IntGaugeVec,
    /// `{kind}`: health probes sent, `origin`, `lb` or `proxies` (what subsetting bounds).
    pub(crate) probes_total: IntCounterVec,
    /// `{region}`
    pub(crate) bypass_active: IntGaugeVec,
    /// `{region}`: the share of its traffic a target region keeps after region outlier
    /// detection (1: all of it).
    pub(crate) region_outlier_share: prometheus::GaugeVec,
    /// `{reason}`
    pub(crate) retries_total: IntCounterVec,
    pub(crate) retry_budget_exhausted_total: IntCounter,
    /// `{reason}`
    pub(crate) shed_total: IntCounterVec,
    /// `{digest}`: 1 for the digest of the table in force (the same version with another
    /// digest elsewhere is a split fleet).
    pub(crate) table_digest_info: IntGaugeVec,
    /// Peer proxies seen with this proxy's version and another digest.
    pub(crate) table_conflicts: IntGauge,
    /// 1 while the etcd store (`[store]`) answers; 0 while it does not, or with no store.
    pub(crate) store_connected: IntGauge,
    /// `{state}`: 1 for the store's state (`none`, `connected`, `disconnected`), which
    /// tells "no store" from "store lost" where `store_connected` cannot.
    pub(crate) store_state: IntGaugeVec,
    /// `{region, version}`: 1, with this proxy's own region (the metrics above name only
    /// the regions they reach) and the release, to join on in queries.
    pub(crate) proxy_info: IntGaugeVec,
    /// Answered requests per second, for `/v1/status` (`rps`, `error_ratio`).
    pub(crate) rate: std::sync::Arc<window::RateWindow>,
    /// Requests arriving on public listeners per second: the region's client demand.
    pub(crate) source_rate: std::sync::Arc<window::RateWindow>,
}

/// `pub`: the source of [`crate::proxy::BuildError::Metrics`], which the binary sees.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace("flowgate");
        let m = Metrics {
            requests_total: IntCounterVec::new(
                opts(
                    "requests_total",
                    "Requests answered, by listener, origin, target region and status code.",
                ),
                &["listener", "origin", "target_region", "code"],
            )?,
            request_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "request_duration_seconds",
                    "Time to the response head, by origin and target region.",
                )
                .namespace("flowgate")
                // 100 µs (a local hop) to 10 s (a stuck upstream).
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0,
                ]),
                &["origin", "target_region"],
            )?,
            inflight_requests: IntGauge::with_opts(opts("inflight_requests", "Requests in flight."))?,
            table_version: IntGauge::with_opts(opts(
                "table_version",
                "Version of the traffic table in force.",
            ))?,
            table_applied_total: IntCounter::with_opts(opts(
                "table_applied_total",
                "Traffic tables applied.",
            ))?,
            table_rejected_total: IntCounterVec::new(
                opts("table_rejected_total", "Traffic tables refused, by reason."),
                &["reason"],
            )?,
            endpoint_healthy: IntGaugeVec::new(
                opts("endpoint_healthy", "1 when probes find the endpoint healthy."),
                &["kind", "region", "endpoint"],
            )?,
            probes_total: IntCounterVec::new(
                opts("probes_total", "Active health probes sent, by kind of endpoint."),
                &["kind"],
            )?,
            region_outlier_share: prometheus::GaugeVec::new(
                opts(
                    "region_outlier_share",
                    "Share of the traffic the table gives a region that it keeps after outlier detection on 5xx (1: all).",
                ),
                &["region"],
            )?,
            bypass_active: IntGaugeVec::new(
                opts("bypass_active", "1 while requests to the region bypass its load balancer."),
                &["region"],
            )?,
            retries_total: IntCounterVec::new(opts("retries_total", "Retries, by reason."), &["reason"])?,
            retry_budget_exhausted_total: IntCounter::with_opts(opts(
                "retry_budget_exhausted_total",
                "Retries refused because the retry budget was spent.",
            ))?,
            shed_total: IntCounterVec::new(
                opts("shed_total", "Requests refused to protect capacity."),
                &["reason"],
            )?,
            table_digest_info: IntGaugeVec::new(
                opts("table_digest_info", "1 for the digest of the traffic table in force."),
                &["digest"],
            )?,
            table_conflicts: IntGauge::with_opts(opts(
                "table_conflicts",
                "Peer proxies seen with this proxy's table version and another digest.",
            ))?,
            store_connected: IntGauge::with_opts(opts(
                "store_connected",
                "1 while the etcd store answers (0 while it does not, or when none is configured).",
            ))?,
            store_state: IntGaugeVec::new(
                opts("store_state", "1 for the etcd store's state: none, connected or disconnected."),
                &["state"],
            )?,
            proxy_info: IntGaugeVec::new(
                opts("proxy_info", "1, labelled with this proxy's region and release."),
                &["region", "version"],
            )?,
            rate: Default::default(),
            source_rate: Default::default(),
            registry,
        };
        let families: [Box<dyn prometheus::core::Collector>; 18] = [
            Box::new(m.requests_total.clone()),
            Box::new(m.request_duration_seconds.clone()),
            Box::new(m.inflight_requests.clone()),
            Box::new(m.table_version.clone()),
            Box::new(m.table_applied_total.clone()),
            Box::new(m.table_rejected_total.clone()),
            Box::new(m.endpoint_healthy.clone()),
            Box::new(m.probes_total.clone()),
            Box::new(m.bypass_active.clone()),
            Box::new(m.region_outlier_share.clone()),
            Box::new(m.retries_total.clone()),
            Box::new(m.retry_budget_exhausted_total.clone()),
            Box::new(m.shed_total.clone()),
            Box::new(m.table_digest_info.clone()),
            Box::new(m.table_conflicts.clone()),
            Box::new(m.store_connected.clone()),
            Box::new(m.store_state.clone()),
            Box::new(m.proxy_info.clone()),
        ];
        for family in families {
            m.registry.register(family)?;
        }
        known::preset(&m);
        Ok(m)
    }

    /// Shows the store's state (a `wire::StoreState` name) in both store families.
    pub(crate) fn set_store_state(&self, state: &str) {
        self.store_connected.set((state == "connected") as i64);
        for s in known::STORE_STATES {
            self.store_state.with_label_values(&[s]).set((s == state) as i64);
        }
    }

    /// Names this proxy's region in `proxy_info` (again after a reload), and makes each
    /// peer's `bypass_active` (at 0 when new) before the listeners answer: the loop that
    /// owns it starts after them.
    pub(crate) fn set_regions<'a>(&self, own: &str, peers: impl IntoIterator<Item = &'a String>) {
        self.proxy_info.reset();
        self.proxy_info.with_label_values(&[own, env!("CARGO_PKG_VERSION")]).set(1);
        for peer in peers {
            self.bypass_active.with_label_values(&[peer]);
        }
    }

    /// Shows `digest` as the table in force.
    pub(crate) fn set_table_digest(&self, digest: &str) {
        self.table_digest_info.reset();
        self.table_digest_info.with_label_values(&[digest]).set(1);
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}
