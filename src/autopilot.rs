//! `flowgate autopilot`: evacuates a failing region with no one at a terminal.
//!
//! Every `--interval` it reads every proxy's `/v1/status` and the table in force,
//! [`judge`]s each region (its own view and the other regions' views, with a quorum),
//! [`decide`]s with `--confirm` and the safety rails, and runs at most one action with the
//! same planner, capacity check, hooks, gates and rollback rules as `flowgate evacuate`
//! (the run knows the region is failing: it avoids failing receivers, moves what fits when
//! capacity is short, and never rolls traffic back into the failing region). Each decision
//! that is news is a JSON line on stdout, goes to `--notify` and to `/v1/decisions`; the
//! pause switch and the region it evacuated live in [`switch`]'s state file; [`server`]
//! is its listener.
//!
//! A [`round`] reads, judges and decides; [`act`] runs the action, [`emit`] tells each
//! decision and [`show`] refreshes the page; [`leader`] elects one acting autopilot when
//! the fleet has a store; [`cli`] is the command.

mod act;
pub mod cli;
mod decide;
mod emit;
mod judge;
mod leader;
mod round;
pub(crate) mod server;
mod show;
pub mod switch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fleet::FleetFile;
use crate::fleet::client::AdminClient;
use crate::fleet::plan;
use crate::table::Table;
use decide::{Controller, Rails};
use judge::Thresholds;

/// The command-line options of `flowgate autopilot`.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) listen: String,
    pub(crate) interval: Duration,
    pub(crate) confirm: Duration,
    pub(crate) min_healthy_regions: usize,
    pub(crate) max_utilization: f64,
    pub(crate) steps: u32,
    pub(crate) step_interval: Duration,
    pub(crate) auto_restore: Option<Duration>,
    pub(crate) cooldown: Duration,
    pub(crate) dry_run: bool,
    pub(crate) before_shift: Option<String>,
    pub(crate) dns: Option<String>,
    pub(crate) notify: Option<String>,
    /// The gate's limit on a receiving region's error ratio during a move.
    pub(crate) max_error_ratio: f64,
    /// The error ratio at which a region's errors are a failure signal.
    pub(crate) failing_error_ratio: f64,
    pub(crate) state_file: PathBuf,
    /// Per-proxy timeout of every call.
    pub(crate) timeout: Duration,
    /// Print decisions on stdout (the demo reads them from the shared view instead).
    pub(crate) print: bool,
    /// Signs every table it pushes.
    pub(crate) signer: Option<Arc<crate::table::sign::SigningKey>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AutopilotError {
    #[error("autopilot: cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("autopilot: {0}")]
    State(#[from] switch::StateError),
    #[error("autopilot: metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A bound autopilot, ready to run.
pub(crate) struct Autopilot {
    fleet: FleetFile,
    opts: Options,
    shared: Arc<server::Shared>,
    listener: TcpListener,
    reload: Arc<std::sync::atomic::AtomicBool>,
}

impl Autopilot {
    pub(crate) async fn bind(fleet: FleetFile, opts: Options) -> Result<Autopilot, AutopilotError> {
        let listener = TcpListener::bind(&opts.listen)
            .await
            .map_err(|source| AutopilotError::Listen { addr: opts.listen.clone(), source })?;
        // Refuse to start on a state file that cannot be read: the pause switch is in it.
        let state = switch::load(&opts.state_file)?;
        let shared = Arc::new(server::Shared {
            view: Default::default(),
            metrics: server::Metrics::new()?,
            state_path: opts.state_file.clone(),
            token: fleet.token(),
            // A round takes at most the interval plus a status and three table reads.
            liveness: server::Liveness::new((opts.interval + opts.timeout * 4) * 2 + Duration::from_secs(10)),
        });
        shared.metrics.paused.set(state.paused as i64);
        Ok(Autopilot { fleet, opts, shared, listener, reload: Default::default() })
    }

    /// Set it (SIGHUP) and the next round re-reads the fleet file; a bad one is refused
    /// with a log line and the fleet in force kept.
    pub(crate) fn reload_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.reload.clone()
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub(crate) fn shared(&self) -> Arc<server::Shared> {
        self.shared.clone()
    }

    /// Runs until `stop` fires.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let Autopilot { fleet, opts, shared, listener, reload } = self;
        tokio::spawn(server::serve(listener, shared.clone(), stop.clone()));
        let role = match &fleet.store {
            Some(cfg) => {
                let name = format!("{} on {}", crate::fleet::claim::owner(true), opts.listen);
                leader::spawn(cfg.clone(), name, stop.clone())
            }
            None => tokio::sync::watch::channel(leader::Role::Alone).1,
        };
        let mut pilot = Pilot {
            client: AdminClient::for_fleet(&fleet, opts.timeout),
            fleet,
            th: Thresholds { error_ratio: opts.failing_error_ratio, ..Thresholds::default() },
            rails: Rails {
                confirm: opts.confirm,
                min_healthy_regions: opts.min_healthy_regions,
                auto_restore: opts.auto_restore,
            },
            opts,
            shared,
            controller: Controller::default(),
            baselines: BTreeMap::new(),
            reload,
            role,
            acted_as_leader: false,
        };
        loop {
            let started = Instant::now();
            pilot.round(&stop).await;
            let wait = pilot.opts.interval.saturating_sub(started.elapsed());
            let mut role = pilot.role.clone();
            let acting = role.borrow().acts();
            let elected = async move {
                if acting {
                    std::future::pending::<()>().await;
                }
                let _ = role.wait_for(leader::Role::acts).await;
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // A standby elected leader acts at once.
                _ = elected => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// The running loop: what a round reads, judges with and keeps between rounds; its
/// rounds, actions, log and page are the [`round`], [`act`], [`emit`] and [`show`]
/// modules.
struct Pilot {
    fleet: FleetFile,
    opts: Options,
    th: Thresholds,
    rails: Rails,
    client: AdminClient,
    shared: Arc<server::Shared>,
    controller: Controller,
    baselines: BTreeMap<String, round::Baseline>,
    reload: Arc<std::sync::atomic::AtomicBool>,
    /// Leader, standby, or alone (no store): see [`leader`].
    role: tokio::sync::watch::Receiver<leader::Role>,
    /// Whether the last round acted as the leader (to notice a takeover).
    acted_as_leader: bool,
}

/// Share of its own clients' traffic a region serves itself under `table`.
fn keeps(table: &Table, region: &str) -> f64 {
    plan::shares(table.weights.get(region), region).get(region).copied().unwrap_or(0.0)
}
