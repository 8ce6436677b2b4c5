//! What a proxy generation is built from and what it leaves behind: the state that
//! outlives a reload, and why a build can fail.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::shed::Inflight;
use crate::metrics::Metrics;
use crate::table::TableError;

/// Why a proxy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("region: {0}")]
    Region(#[from] http::header::InvalidHeaderValue),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("table {}: {source}", path.display())]
    Table { path: std::path::PathBuf, source: TableError },
    #[error("the table in force does not fit this config: {0}")]
    Unfit(TableError),
    #[error("peers.{0}: {1}")]
    PeerTls(String, Box<crate::vocab::tls::TlsError>),
    #[error("table {}: {source}", path.display())]
    TableRead { path: std::path::PathBuf, source: std::io::Error },
}

/// What outlives one generation of the proxy (a SIGHUP builds a new one): the metrics,
/// the count of requests in flight, and the tunnels that drain must wait for.
#[derive(Clone)]
pub struct Shared {
    pub(crate) metrics: Metrics,
    pub(crate) tunnels: TaskTracker,
    pub(crate) tunnel_cut: CancellationToken,
    /// What load shedding counts: a request admitted before a reload still counts after it.
    pub(crate) inflight: Arc<Inflight>,
}

impl Shared {
    pub(crate) fn new() -> Result<Shared, BuildError> {
        let metrics = Metrics::new()?;
        Ok(Shared {
            inflight: Inflight::new(metrics.inflight_requests.clone()),
            metrics,
            tunnels: TaskTracker::new(),
            tunnel_cut: CancellationToken::new(),
        })
    }
}
