//! Running a plan against the fleet: `evacuate`, `restore` and the steps of `exercise`.
//!
//! Each step is pushed fleet-wide with `max_shift` set, then the run waits `--interval`
//! and gates on every proxy's status: a region whose error ratio rises above
//! `--max-error-ratio`, a proxy that stops being ready or a target that turns unhealthy
//! makes it push the last good table back (as a new version), say why, and stop with
//! exit 1. A push that some proxy did not take is handled the same way. Nothing is pushed
//! before the plan is known to fit.
//!
//! This module holds what a run is (its options, its errors, the [`Runner`]) and the
//! exercise; the run's phases are its children, in the order a direction meets them:
//! [`survey`] reads the fleet, [`prompt`] shows the plan and asks, [`claiming`] takes the
//! fleet, [`hooks`] run around [`steps`], whose failed pushes [`failures`] sorts and
//! whose failed gates end in a [`rollback`]; [`write_through`] adds the store, and
//! [`journal`] keeps what happened. [`run`] strings one direction together.

mod claiming;
mod failures;
mod hooks;
pub mod journal;
mod prompt;
mod rollback;
mod run;
mod steps;
mod survey;
mod write_through;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::FleetFile;
use super::client::AdminClient;
use super::gate;
use super::plan;
use super::push::{self, Proxy};
use super::status::FleetStatus;
use crate::table::Table;
use journal::Journal;

/// How a run behaves (the command-line options).
#[derive(Clone)]
pub(crate) struct RunOptions {
    pub(crate) steps: u32,
    pub(crate) interval: Duration,
    pub(crate) max_utilization: f64,
    pub(crate) max_error_ratio: f64,
    pub(crate) dry_run: bool,
    pub(crate) yes: bool,
    pub(crate) json: bool,
    /// Print nothing (the journal still records everything): the demo draws its own view.
    pub(crate) quiet: bool,
    /// Run before the first push (pre-scaling); a failure stops the run, nothing moved.
    pub(crate) before_shift: Option<String>,
    /// Run after the last step (flip DNS); gets FLOWGATE_REGION and FLOWGATE_PHASE.
    pub(crate) dns: Option<String>,
    pub(crate) timeout: Duration,
    /// Asked before every step: a reason to stop where the run is (the autopilot's pause
    /// switch). Nothing is rolled back then.
    pub(crate) hold: Option<HoldCheck>,
    /// The evacuated region is known to be failing (the autopilot judged it): a rollback
    /// must not send traffic back to it, whatever its status says.
    pub(crate) source_failing: bool,
    /// Regions that must receive nothing (failing themselves), and whether a capacity
    /// shortfall moves what fits instead of refusing.
    pub(crate) evacuate: plan::EvacuateOptions,
    /// More environment for the hooks (the autopilot adds `FLOWGATE_TRIGGER=autopilot`).
    pub(crate) hook_env: Vec<(String, String)>,
    /// Signs every table the run pushes (proxies with `[admin] table_keys` need it).
    pub(crate) signer: Option<std::sync::Arc<crate::table::sign::SigningKey>>,
    /// Take over another operation's unexpired claim.
    pub(crate) force: bool,
    /// Claim the fleet as the autopilot (its owner reads `autopilot@host`).
    pub(crate) autopilot: bool,
    /// With a store: take the operation lock on this lease (the autopilot leader's)
    /// rather than on one of the run's own.
    pub(crate) store_lease: Option<crate::store::LeaseRef>,
}

/// See [`RunOptions::hold`].
pub(crate) type HoldCheck = std::sync::Arc<dyn Fn() -> Option<String> + Send + Sync>;

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("steps", &self.steps)
            .field("interval", &self.interval)
            .field("max_utilization", &self.max_utilization)
            .field("max_error_ratio", &self.max_error_ratio)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// Bad usage or input: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Refused before any push (capacity, unreachable proxies, disagreeing versions).
    #[error("{0}")]
    Refused(String),
    /// Stopped after pushing; traffic was rolled back to the last good table.
    #[error("{0}")]
    RolledBack(String),
    /// A hook failed; traffic was left where it was.
    #[error("{0}")]
    Hook(String),
    /// Stopped after pushing without rolling back: a rollback would have sent traffic
    /// back to a failing region, or the run was paused.
    #[error("{0}")]
    Held(String),
    /// Someone else's table is in force where this run's was expected: stopped, nothing
    /// rolled back over it.
    #[error("{0}")]
    Moved(String),
}

/// One direction of a run, as the gate and the rollback need it.
struct Move<'a> {
    region: &'a str,
    phase: &'a str,
    sides: &'a gate::Sides,
    baseline: &'a FleetStatus,
}

/// A fleet, a client and the clock of one run.
pub(crate) struct Runner<'a> {
    fleet: &'a FleetFile,
    /// Talks to every proxy with the fleet's token and `--timeout`.
    client: AdminClient,
    opts: RunOptions,
    /// The clock of the journal's `at` figures.
    started: Instant,
    /// What the run saw, for the report and the autopilot's log.
    pub(crate) journal: Journal,
    /// This run's claim of the fleet, once made ([`super::claim`]).
    operation: Option<crate::table::Operation>,
    /// Keep the claim when a direction ends (an exercise holds it from evacuate to restore).
    keep_claim: bool,
    /// Added to the claim's lifetime (an exercise's hold).
    claim_extra: Duration,
    /// The last table this run put in force, for releasing the claim over it.
    in_force: Option<Table>,
    /// With `[store]` in the fleet file: the store this run writes through, and its lock.
    store: Option<super::store_write::StoreRun>,
}

impl<'a> Runner<'a> {
    pub(crate) fn new(fleet: &'a FleetFile, opts: RunOptions) -> Runner<'a> {
        Runner {
            client: AdminClient::for_fleet(fleet, opts.timeout),
            fleet,
            opts,
            started: Instant::now(),
            journal: Journal::default(),
            operation: None,
            keep_claim: false,
            claim_extra: Duration::ZERO,
            in_force: None,
            store: None,
        }
    }

    /// Signs `t` with `--signing-key`, when given: proxies with `[admin] table_keys`
    /// refuse an unsigned table.
    fn sign(&self, t: &mut Table) {
        if let Some(key) = &self.opts.signer {
            key.sign(t);
        }
    }

    /// Every proxy, a region whose names do not resolve kept as one that does not answer
    /// (the gates then treat it as they treat any unreachable proxy).
    async fn proxies(&self) -> Result<Vec<Proxy>, RunError> {
        Ok(push::proxies_or_unresolved(self.fleet).await)
    }

    /// The sides a direction has by its name: a restore feeds `region`, an evacuation
    /// drains it (a plan then says which regions really gain).
    fn phase_sides(&self, region: &str, phase: &str) -> gate::Sides {
        if phase == "restore" {
            gate::Sides::restore(region, self.fleet.regions.keys())
        } else {
            gate::Sides::evacuate(region, self.fleet.regions.keys())
        }
    }

    /// What each region can serve at 100 %, from the fleet file.
    fn capacity(&self) -> BTreeMap<String, f64> {
        self.fleet.regions.iter().map(|(r, c)| (r.clone(), c.capacity_rps)).collect()
    }
}

/// `exercise`: evacuate, hold while watching, restore; the report says what happened.
pub(crate) async fn exercise(runner: &mut Runner<'_>, region: &str, hold: Duration) -> Result<(), RunError> {
    let sides = gate::Sides::evacuate(region, runner.fleet.regions.keys());
    let before = runner.current(&sides).await?.table;
    runner.confirm(&format!("an exercise on {region} (evacuate, hold {hold:?}, restore)"))?;
    runner.opts.yes = true;
    // One operation from the evacuation to the end of the restore: the claim outlives the
    // hold, and only the restore's end releases it.
    runner.keep_claim = true;
    runner.claim_extra = hold;
    if let Err(e) = runner.run(region, "evacuate", None).await {
        runner.keep_claim = false;
        runner.release("stopped").await;
        return Err(e);
    }
    runner.say(format!("holding {region} evacuated for {hold:?}"));
    runner.watch(hold).await?;
    let mut restore_to = before;
    restore_to.max_shift = None;
    restore_to.operation = None;
    runner.keep_claim = false;
    runner.claim_extra = Duration::ZERO;
    runner.run(region, "restore", Some(restore_to)).await
}
