//! Static configuration: the TOML file of `flowgate serve --config`.
//!
//! The pipeline is `file → sections (serde, spans kept) → semantic checks → Config`.
//! Every section is deserialized on its own so that one run reports every mistake in the
//! file, each naming its field (`listen.public`, `routes[2].origin`) and, where the parser
//! knows it, its line. A `Config` value is therefore always valid: nothing downstream
//! re-checks it.

mod load;
mod store;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub(crate) use crate::vocab::checks::{check_host_pattern, check_host_port, check_name};
pub use load::{ConfigError, ConfigErrors};
pub use store::Store;

/// The validated static configuration of one proxy.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config was read from; error messages and relative paths use it.
    pub file: PathBuf,
    /// The region this proxy belongs to; it reads this row of the traffic table.
    pub region: String,
    /// The initial traffic table (absolute path); a newer persisted table wins.
    pub table: Option<PathBuf>,
    pub listen: Listen,
    pub admin: Admin,
    /// Origins by name, in name order.
    pub origins: BTreeMap<String, Origin>,
    /// Peer regions by name.
    pub peers: BTreeMap<String, Peer>,
    /// Routes in file order; the router orders them by specificity.
    pub routes: Vec<Route>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub drain: Drain,
    pub fleet: Fleet,
    pub log: Log,
    pub runtime: Runtime,
    pub health: Health,
    pub outlier: Outlier,
    pub balance: Balance,
    pub retry: Retry,
    pub forwarding: Forwarding,
    pub bypass: Bypass,
    pub overload: Overload,
    /// `[store]`: follow the table in etcd (absent: pushes and peers only).
    pub store: Option<Store>,
}

impl Config {
    /// Reads, parses and validates a config file. Every problem found is returned at once.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        load::load(path)
    }

    /// Parses and validates config text; `file` names it in errors and anchors relative paths.
    pub fn from_toml(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
        load::parse(file, text)
    }
}

/// `[listen]`: the data-plane listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Clients: HTTP/1.1 and HTTP/2 with prior knowledge on one port.
    pub public: SocketAddr,
    /// Clients over TLS (ALPN `h2`, `http/1.1`); needs `tls_cert` and `tls_key`.
    pub public_tls: Option<SocketAddr>,
    /// PEM certificate chain for `public_tls`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `public_tls`.
    pub tls_key: Option<PathBuf>,
    /// Traffic forwarded by other regions' proxies, in the clear: run it only inside a
    /// trusted network, since it honours the hop headers it receives.
    pub peer: Option<SocketAddr>,
    /// Traffic forwarded by other regions' proxies over mutual TLS: a client must present
    /// a certificate signed by `peer_tls_ca`.
    pub peer_tls: Option<SocketAddr>,
    /// This proxy's certificate chain and key for `peer_tls` (PEM).
    pub peer_tls_cert: Option<PathBuf>,
    pub peer_tls_key: Option<PathBuf>,
    /// The CA that signs the peer proxies' client certificates (PEM).
    pub peer_tls_ca: Option<PathBuf>,
}

/// `[admin]`: the control endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Loopback by default: the admin listener must not be reachable by accident.
    pub listen: SocketAddr,
    /// Environment variable holding the bearer token required for every change.
    pub token_env: String,
    /// Where the last applied table survives restarts.
    pub state_dir: Option<PathBuf>,
    /// A file of named tokens, one `NAME TOKEN` per line (`#` starts a comment).
    pub token_file: Option<PathBuf>,
    /// Largest table body accepted by `PUT /v1/table`; larger gets 413.
    pub max_table_bytes: usize,
    /// Ed25519 public keys (base64): when set, only tables signed by one of them are
    /// accepted, from any path.
    pub table_keys: Vec<String>,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: SocketAddr::from(([127, 0, 0, 1], 9901)),
            token_env: "FLOWGATE_ADMIN_TOKEN".to_owned(),
            state_dir: None,
            token_file: None,
            max_table_bytes: 8 * 1024 * 1024,
            table_keys: Vec::new(),
        }
    }
}

/// The protocol an origin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Protocol {
    /// HTTP/1.1 with pooled keep-alive connections.
    #[default]
    #[serde(rename = "http1", alias = "h1", alias = "http/1.1")]
    Http1,
    /// HTTP/2 with prior knowledge (h2c), as gRPC services speak it.
    #[serde(rename = "h2", alias = "http2")]
    Http2,
}

/// `[origins.NAME]`: a backend service served in this region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// `host:port` entries; names are resolved again for every new connection.
    pub endpoints: Vec<String>,
    /// How active health checks probe each endpoint.
    #[serde(default)]
    pub health: HealthCheck,
    /// Path probed by `health = "http"` checks.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// The service a `health = "grpc"` check asks about; empty: the whole server.
    #[serde(default)]
    pub health_service: String,
    /// Requests in flight to this origin beyond which new ones are refused with 503.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    #[serde(default)]
    pub protocol: Protocol,
    /// Overrides `timeouts.connect` for this origin.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// Overrides `timeouts.request` for this origin.
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
}

/// How an origin's endpoints are probed (`[origins.NAME] health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum HealthCheck {
    /// `GET health_path`; any 2xx is healthy.
    #[default]
    #[serde(rename = "http")]
    Http,
    /// The standard `grpc.health.v1.Health/Check` for `health_service`; healthy when it
    /// answers `SERVING`. Needs `protocol = "h2"`.
    #[serde(rename = "grpc")]
    Grpc,
    /// A TCP connection within `[health] timeout` is healthy.
    #[serde(rename = "tcp")]
    Tcp,
}

fn default_health_path() -> String {
    "/healthz".to_owned()
}

fn default_max_concurrency() -> usize {
    2000
}

/// `[peers.REGION]`: how to reach another region's fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The region's load balancer in front of its proxies.
    #[serde(default)]
    pub lb: Vec<String>,
    /// The region's proxies, reached directly when the load balancer is bypassed.
    #[serde(default)]
    pub proxies: Vec<String>,
    /// Protocol between proxies; `[forwarding] peer_protocol` when absent.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Reach this region over mutual TLS (its `peer_tls` listeners).
    #[serde(default)]
    pub tls: bool,
    /// The CA that signs the region's proxies' server certificates (PEM).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// This proxy's client certificate chain and key (PEM).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// The name the region's certificates carry, when it is not the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// `[[routes]]`: host + path prefix → origin.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `api.example.com`, `*.example.com` (any subdomain) or `*`.
    #[serde(default = "default_host")]
    pub host: String,
    /// The longest matching prefix wins.
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    pub origin: String,
}

fn default_host() -> String {
    "*".to_owned()
}

fn default_prefix() -> String {
    "/".to_owned()
}

/// `[timeouts]`: every wait the proxy does on someone else has a bound.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect to an upstream endpoint.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// From a request's first byte to its last header byte (slowloris guard).
    #[serde(with = "humantime_serde")]
    pub header_read: Duration,
    /// From the request's arrival to the upstream's response headers. Body streaming after
    /// that is not bounded by it, so long downloads are not cut.
    #[serde(with = "humantime_serde")]
    pub request: Duration,
    /// A client connection with no request in flight is closed after this.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// How long an unused pooled upstream connection is kept.
    #[serde(with = "humantime_serde")]
    pub upstream_idle: Duration,
    /// An HTTP/2 client connection is PINGed after this long without frames...
    #[serde(with = "humantime_serde")]
    pub h2_ping_interval: Duration,
    /// ...and closed if the PING is not answered within this (a dead peer).
    #[serde(with = "humantime_serde")]
    pub h2_ping_timeout: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(60),
            idle: Duration::from_secs(75),
            upstream_idle: Duration::from_secs(60),
            h2_ping_interval: Duration::from_secs(30),
            h2_ping_timeout: Duration::from_secs(20),
        }
    }
}

/// `[limits]`: sizes and counts that protect the process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line + headers) in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Most headers in one request.
    pub max_headers: usize,
    /// Client connections open at once across all data-plane listeners; beyond it the
    /// proxy stops accepting until one closes.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// Idle pooled connections kept per upstream endpoint.
    pub upstream_pool_idle: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_connections: 50_000,
            max_concurrent_streams: 256,
            upstream_pool_idle: 256,
        }
    }
}

/// `[fleet]`: how this proxy keeps up with the rest of the fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fleet {
    /// A starting proxy with peers reports ready once it has compared its table with a
    /// peer's (and caught up if the peer's is newer), or after this long.
    #[serde(with = "humantime_serde")]
    pub sync_timeout: Duration,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet { sync_timeout: Duration::from_secs(5) }
    }
}

/// `[drain]`: what SIGTERM / SIGINT do, in the order load balancers expect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Drain {
    /// `/readyz` is 503 at once; listeners keep accepting this long so load balancers can
    /// deregister the instance without refused connections.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// After the listeners close, in-flight requests get this long; the rest are cut.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Drain { delay: Duration::from_secs(5), timeout: Duration::from_secs(30) }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `tracing` filter directive; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
    /// One line per request on target `flowgate::access`.
    pub access: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log { level: "info".to_owned(), format: LogFormat::Text, access: false }
    }
}

/// `[runtime]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Worker threads; 0 means one per core.
    pub workers: usize,
}

/// `[health]`: active probes of origins (`health_path`) and peers (`/.flowgate/health`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Each wait is `interval` ± this share of it, so a fleet's probes do not align.
    pub jitter: f64,
    /// Consecutive good probes that make an unhealthy endpoint healthy.
    pub healthy_threshold: u32,
    /// Consecutive bad probes that make a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// How many of each peer region's proxies this proxy probes and bypasses to (a
    /// deterministic subset, with stand-ins for members that are down); 0: all of them.
    pub peer_subset: usize,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            jitter: 0.1,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            peer_subset: 3,
        }
    }
}

/// `[outlier]`: passive health from real requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outlier {
    /// Consecutive connect failures, resets or 5xx that eject an endpoint.
    pub consecutive_failures: u32,
    /// First ejection; each further one doubles, up to `max_ejection`.
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Never eject more than this share of a set at once.
    pub max_ejected_percent: u32,
}

impl Default for Outlier {
    fn default() -> Self {
        Outlier {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(60),
            max_ejected_percent: 50,
        }
    }
}

/// `[balance]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Balance {
    /// Below this share of usable endpoints, a set balances over all of them.
    pub panic_threshold_percent: u32,
    /// A returning endpoint or region gets its share back over this window.
    #[serde(with = "humantime_serde")]
    pub slow_start: Duration,
}

impl Default for Balance {
    fn default() -> Self {
        Balance { panic_threshold_percent: 50, slow_start: Duration::from_secs(10) }
    }
}

/// `[retry]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Retries may add at most this percentage of recent requests.
    pub budget_percent: f64,
    /// Retries per second always allowed, so a quiet proxy can still retry.
    pub min_per_second: u32,
    /// Request bodies up to this size are kept for a retry; larger ones are not retried.
    pub max_body_bytes: usize,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { budget_percent: 20.0, min_per_second: 10, max_body_bytes: 64 * 1024, max_attempts: 3 }
    }
}

/// `[forwarding]`: how requests travel between regions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Forwarding {
    /// A request that arrived with this many hops is served locally, never forwarded.
    pub max_hops: u32,
    /// `h2` (multiplexed: one connection per peer endpoint) or `http1`.
    pub peer_protocol: Protocol,
    /// How often endpoint names are resolved again for the probes' and pools' sake.
    #[serde(with = "humantime_serde")]
    pub resolve_interval: Duration,
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding { max_hops: 1, peer_protocol: Protocol::Http2, resolve_interval: Duration::from_secs(30) }
    }
}

/// `[bypass]`: when `auto` judges a peer's load balancer overloaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bypass {
    /// The sliding window the judgement looks at.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Fewer samples than this in the window: no judgement. Also the good load-balancer
    /// samples in a row (probes, while bypassed) needed before the bypass lifts.
    pub min_samples: u32,
    /// Share of connect failures, 502, 503 and 429 that makes it overloaded.
    pub failure_ratio: f64,
    /// Latency above `latency_factor` × the direct path's (and above `latency_floor`).
    pub latency_factor: f64,
    #[serde(with = "humantime_serde")]
    pub latency_floor: Duration,
    /// The load balancer must look well this long before traffic returns to it.
    #[serde(with = "humantime_serde")]
    pub recover_after: Duration,
}

impl Default for Bypass {
    fn default() -> Self {
        Bypass {
            window: Duration::from_secs(10),
            min_samples: 10,
            failure_ratio: 0.2,
            latency_factor: 3.0,
            latency_floor: Duration::from_millis(100),
            recover_after: Duration::from_secs(10),
        }
    }
}

/// `[overload]`: prioritized load shedding (see `proxy::shed`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Overload {
    /// Requests in flight across every data-plane listener; above it even critical
    /// requests are shed.
    pub max_inflight: usize,
    /// The request header that carries a priority: `low`, `normal`, `high`, `critical`
    /// (or 0 to 3).
    pub priority_header: String,
    /// The priority of a request without the header (or with an unknown value).
    pub default_priority: crate::vocab::Priority,
    /// Share of `max_inflight` (percent) above which each priority is shed.
    pub shed_low_at: u32,
    pub shed_normal_at: u32,
    pub shed_high_at: u32,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            max_inflight: 20_000,
            priority_header: "x-priority".to_owned(),
            default_priority: crate::vocab::Priority::Normal,
            shed_low_at: 50,
            shed_normal_at: 80,
            shed_high_at: 95,
        }
    }
}
