//! Running a plan against the fleet: `evacuate`, `restore` and the steps of `exercise`.
//!
//! Each step is pushed fleet-wide with `max_shift` set, then the run waits `--interval`
//! and gates on every proxy's status: a region whose error ratio rises above
//! `--max-error-ratio`, a proxy that stops being ready or a target that turns unhealthy
//! makes it push the last good table back (as a new version), say why, and stop with
//! exit 1. A push that some proxy did not take is handled the same way. Nothing is pushed
//! before the plan is known to fit.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::FleetFile;
use super::client::AdminClient;
use super::gate;
use super::plan::{self, Plan, PlanInput};
use super::push::{self, Proxy};
use super::status::{self, FleetStatus};
use crate::table::Table;

/// How a run behaves (the command-line options).
#[derive(Clone)]
pub struct RunOptions {
    pub steps: u32,
    pub interval: Duration,
    pub max_utilization: f64,
    pub max_error_ratio: f64,
    pub dry_run: bool,
    pub yes: bool,
    pub json: bool,
    /// Print nothing (the journal still records everything): the demo draws its own view.
    pub quiet: bool,
    /// Run before the first push (pre-scaling); a failure stops the run, nothing moved.
    pub before_shift: Option<String>,
    /// Run after the last step (flip DNS); gets FLOWGATE_REGION and FLOWGATE_PHASE.
    pub dns: Option<String>,
    pub timeout: Duration,
    /// Asked before every step: a reason to stop where the run is (the autopilot's pause
    /// switch). Nothing is rolled back then.
    pub hold: Option<HoldCheck>,
    /// The evacuated region is known to be failing (the autopilot judged it): a rollback
    /// must not send traffic back to it, whatever its status says.
    pub source_failing: bool,
    /// Regions that must receive nothing (failing themselves), and whether a capacity
    /// shortfall moves what fits instead of refusing.
    pub evacuate: plan::EvacuateOptions,
    /// More environment for the hooks (the autopilot adds `FLOWGATE_TRIGGER=autopilot`).
    pub hook_env: Vec<(String, String)>,
    /// Signs every table the run pushes (proxies with `[admin] table_keys` need it).
    pub signer: Option<std::sync::Arc<crate::table::sign::SigningKey>>,
    /// Take over another operation's unexpired claim.
    pub force: bool,
    /// Claim the fleet as the autopilot (its owner reads `autopilot@host`).
    pub autopilot: bool,
    /// With a store: take the operation lock on this lease (the autopilot leader's)
    /// rather than on one of the run's own.
    pub store_lease: Option<crate::store::LeaseRef>,
}

/// See [`RunOptions::hold`].
pub type HoldCheck = std::sync::Arc<dyn Fn() -> Option<String> + Send + Sync>;

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
pub enum RunError {
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

/// One step as it happened, for `--json`, logs and the exercise report.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub phase: String,
    pub step: u32,
    pub of: u32,
    pub version: u64,
    /// Seconds since the run started.
    pub at: f64,
    /// The evacuated region's share of its own traffic after this step.
    pub region_share: f64,
    pub outcome: String,
    /// The rule that decided the step (`receiving-regions-ok`, or the one that failed:
    /// `receiving-error-ratio`, `receiving-readiness`, `receiving-health`,
    /// `receiving-capacity`, `push-refused-by-receiving-region`).
    pub rule: String,
    /// Per region error ratio the gate saw (what its origins served).
    pub gate: BTreeMap<String, f64>,
    /// Proxies this step could not reach or that did not apply it, in regions where that
    /// is tolerated (the draining side, or proxies already unreachable before the run):
    /// they must catch up later.
    pub unreached: Vec<String>,
    /// What the gate saw and did not count (the draining side's errors and readiness).
    pub ignored: Vec<String>,
}

/// Per region request rate and error ratio at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at: f64,
    pub regions: BTreeMap<String, (f64, f64)>,
}

/// Everything a run saw.
#[derive(Debug, Default, Serialize)]
pub struct Journal {
    pub steps: Vec<StepRecord>,
    pub samples: Vec<Sample>,
    pub notes: Vec<String>,
}

/// The fleet as a run found it.
pub struct Current {
    pub proxies: Vec<Proxy>,
    pub status: FleetStatus,
    pub table: Table,
    /// Proxies that did not answer (`addr (region): error`).
    pub unreached: Vec<String>,
    /// Proxies on an older version than the newest (draining side only).
    pub behind: Vec<String>,
}

/// One direction of a run, as the gate and the rollback need it.
struct Move<'a> {
    region: &'a str,
    phase: &'a str,
    sides: &'a gate::Sides,
    baseline: &'a FleetStatus,
}

/// A fleet, a client and the clock of one run.
pub struct Runner<'a> {
    pub fleet: &'a FleetFile,
    pub client: AdminClient,
    pub opts: RunOptions,
    pub started: Instant,
    pub journal: Journal,
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
    pub fn new(fleet: &'a FleetFile, opts: RunOptions) -> Runner<'a> {
        Runner {
            client: AdminClient::new(fleet.token(), opts.timeout),
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

    /// How long a claim holds after a push: long enough for the next one.
    fn claim_ttl(&self) -> Duration {
        self.opts.interval * 2 + self.opts.timeout * 3 + Duration::from_secs(60) + self.claim_extra
    }

    /// Claims the fleet over `table` (the one in force); returns the claim table, the
    /// base of the run's steps. Refuses when another operation's claim holds.
    async fn claim(&mut self, table: &Table, kind: &str) -> Result<Table, RunError> {
        if let Some(op) = &self.operation {
            let mut t = table.clone();
            if self.store.is_none() {
                t.operation = Some(op.clone());
            }
            return Ok(t);
        }
        if self.store.is_some() {
            return self.lock_store(table, kind).await;
        }
        if let Some(other) = super::claim::held_by_other(table, None) {
            if !self.opts.force {
                return Err(RunError::Refused(format!(
                    "{kind} refused: another operation is in progress: {}; wait for it, or take over with --force",
                    super::claim::describe(other)
                )));
            }
            let taken = super::claim::describe(other);
            self.say(format!("--force: taking the fleet over from {taken}"));
        }
        let op =
            super::claim::new_operation(kind, super::claim::owner(self.opts.autopilot), self.claim_ttl());
        let mut claim = super::claim::claim_table(table, &op);
        self.sign(&mut claim);
        let proxies = self.proxies().await?;
        let results = push::push_if(&self.client, &proxies, &claim, Some(table.version)).await;
        // A proxy already past the version we read holds someone else's table: a rival
        // claim (resolved by id) or a push (the fleet moved under us).
        let ahead: Vec<&push::PushResult> = results
            .iter()
            .filter(|r| r.answer == "moved" && r.after.is_some_and(|v| v > table.version))
            .collect();
        if let Some(first) = ahead.first() {
            let mut rival = None;
            for r in &ahead {
                if let Ok(t) = self.client.table(&r.addr).await
                    && let Some(o) = t.operation.clone().filter(|o| o.id != op.id)
                {
                    rival = Some((o, t.version));
                    break;
                }
            }
            match rival {
                Some((o, _)) if o.id < op.id && !self.opts.force => {
                    return Err(RunError::Refused(format!(
                        "{kind} refused: {} claimed the fleet at the same moment and goes first",
                        super::claim::describe(&o)
                    )));
                }
                Some((o, v)) => {
                    // Ours goes first: once more over theirs, so every proxy ends on it.
                    self.say(format!(
                        "{kind}: went first over a rival claim ({})",
                        super::claim::describe(&o)
                    ));
                    claim.version = v.max(claim.version) + 1;
                    self.sign(&mut claim);
                    let again = push::push(&self.client, &proxies, &claim).await;
                    let missed = again.iter().filter(|r| !r.ok()).count();
                    if missed > 0 {
                        self.say(format!(
                            "{missed} proxies did not take the claim; they catch up from their peers"
                        ));
                    }
                }
                None => {
                    return Err(RunError::Moved(format!(
                        "{kind}: the fleet moved while it was being claimed: proxy {} ({}) is on version {}",
                        first.addr,
                        first.region,
                        first.after.unwrap_or(0)
                    )));
                }
            }
        }
        self.operation = Some(op);
        self.in_force = Some(claim.clone());
        Ok(claim)
    }

    /// With a store, the claim is its lock on a lease, not a table.
    async fn lock_store(&mut self, table: &Table, kind: &str) -> Result<Table, RunError> {
        let owner = super::claim::owner(self.opts.autopilot);
        let ttl = self.fleet.store.as_ref().map(|s| s.lease_ttl).unwrap_or_default();
        let op = super::claim::new_operation(kind, owner, ttl);
        let Some(run) = self.store.as_mut() else { return Ok(table.clone()) };
        match run.lock(&op, self.opts.force, self.opts.store_lease.as_ref()).await {
            Ok(()) => {
                self.operation = Some(op);
                self.in_force = Some(table.clone());
                Ok(table.clone())
            }
            Err(crate::store::StoreError::LockHeld(other)) => Err(RunError::Refused(format!(
                "{kind} refused: another operation holds the store's lock: {} by {} (operation {}); its lease lapses {ttl:?} after its holder stops; wait for it, or take over with --force",
                other.kind, other.owner, other.id
            ))),
            Err(e) => Err(RunError::Refused(format!("{kind} refused before any push: {e}"))),
        }
    }

    /// The table to plan from with a store: the store's, unless the proxies are ahead of
    /// it (a direct push went past it). Opens the store on first use.
    async fn store_base(&mut self, from_proxies: Table) -> Result<Table, RunError> {
        let Some(cfg) = self.fleet.store.clone() else { return Ok(from_proxies) };
        if self.store.is_none() {
            let run = super::store_write::StoreRun::open(&cfg)
                .await
                .map_err(|e| RunError::Refused(format!("refused before any push: {e}")))?;
            self.store = Some(run);
        }
        let stored = self.store.as_ref().and_then(|r| r.table().cloned());
        match stored {
            Some(t) if t.version >= from_proxies.version => {
                if t.version > from_proxies.version {
                    self.say(format!(
                        "proxies lag the store (version {} against {}): planning from the store's table",
                        t.version, from_proxies.version
                    ));
                }
                Ok(t)
            }
            Some(t) => {
                self.say(format!(
                    "proxies are ahead of the store (version {} against {}): planning from theirs",
                    from_proxies.version, t.version
                ));
                Ok(from_proxies)
            }
            None => Ok(from_proxies),
        }
    }

    /// Writes `t` to the store first (when there is one): nothing the store refused is
    /// pushed.
    async fn write_store(&mut self, t: &Table, what: &str) -> Result<(), RunError> {
        let Some(run) = self.store.as_mut() else { return Ok(()) };
        match run.write(t).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let msg = super::store_write::refused(&e, what);
                self.say(msg.clone());
                Err(match e {
                    crate::store::StoreError::Moved { .. } => RunError::Moved(msg),
                    _ => RunError::Held(msg),
                })
            }
        }
    }

    /// Clears the claim: the shares in force, one version up, without the operation.
    async fn release(&mut self, why: &str) {
        if let Some(run) = self.store.as_mut() {
            if !self.keep_claim {
                run.unlock().await;
                self.operation = None;
            }
            return;
        }
        let Some(current) = self.in_force.clone() else { return };
        if self.keep_claim || current.operation.is_none() {
            return;
        }
        let mut done = current.clone();
        done.version += 1;
        done.max_shift = None;
        done.operation = None;
        let kind = current.operation.as_ref().map(|o| o.kind.clone()).unwrap_or_default();
        done.note = Some(format!("release: {kind} {why}"));
        self.sign(&mut done);
        let proxies = match self.proxies().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let results = push::push_if(&self.client, &proxies, &done, Some(current.version)).await;
        let missed = results.iter().filter(|r| !r.ok()).count();
        if missed > 0 {
            self.say(format!(
                "the claim was released on all but {missed} proxies (they catch up from their peers)"
            ));
        }
        self.operation = None;
        self.in_force = Some(done);
    }

    fn say(&mut self, line: String) {
        if !self.opts.json && !self.opts.quiet {
            eprintln!("{line}");
        }
        self.journal.notes.push(line);
    }

    /// Every proxy, a region whose names do not resolve kept as one that does not answer
    /// (the gates then treat it as they treat any unreachable proxy).
    async fn proxies(&self) -> Result<Vec<Proxy>, RunError> {
        Ok(push::proxies_or_unresolved(self.fleet).await)
    }

    /// Reads the fleet and the table in force. Proxies of the draining regions may be
    /// unreachable or behind (they are the broken side in an outage); a receiving region
    /// must answer through a majority of its proxies, all on one version, or nothing moves.
    pub async fn current(&self, sides: &gate::Sides) -> Result<Current, RunError> {
        let proxies = self.proxies().await?;
        if proxies.is_empty() {
            return Err(RunError::Refused("the fleet has no proxy".into()));
        }
        let st = status::gather(&self.client, &proxies, 60).await;
        let mut unreached = Vec::new();
        for p in &st.proxies {
            if let Some(e) = &p.error {
                unreached.push(format!("{} ({}): {e}", p.addr, p.region));
            }
        }
        for r in &sides.receiving {
            let Some(s) = st.regions.get(r) else { continue };
            if s.reachable * 2 <= s.proxies {
                let down: Vec<&String> = unreached.iter().filter(|u| u.contains(&format!("({r})"))).collect();
                return Err(RunError::Refused(format!(
                    "receiving region {r} is unreachable ({} of {} proxies answer); nothing pushed: {}",
                    s.reachable,
                    s.proxies,
                    down.iter().map(|d| d.as_str()).collect::<Vec<_>>().join("; ")
                )));
            }
        }
        if !st.conflicts.is_empty() {
            let split: Vec<String> =
                st.conflicts.iter().map(|(v, d)| format!("version {v} has {} contents", d.len())).collect();
            return Err(RunError::Refused(format!(
                "the fleet is split ({}); nothing pushed: push one table to every proxy first (flowgate status shows who has which)",
                split.join(", ")
            )));
        }
        let newest = st.versions.last().copied().unwrap_or(0);
        let behind: Vec<String> = st
            .proxies
            .iter()
            .filter_map(|p| {
                let v = p.status.as_ref()?.table_version;
                (v != newest).then(|| format!("{} ({}) on version {v}", p.addr, p.region))
            })
            .collect();
        let receiving_behind = st.proxies.iter().any(|p| {
            sides.receiving.contains(&p.region)
                && p.status.as_ref().is_some_and(|s| s.table_version != newest)
        });
        if receiving_behind {
            // Often another operation's claim still reaching every proxy: name it.
            let newest_at =
                st.proxies.iter().find(|p| p.status.as_ref().is_some_and(|s| s.table_version == newest));
            if let Some(p) = newest_at
                && let Ok(t) = self.client.table(&p.addr).await
                && let Some(other) =
                    super::claim::held_by_other(&t, self.operation.as_ref().map(|o| o.id.as_str()))
                && !self.opts.force
            {
                return Err(RunError::Refused(format!(
                    "refused: another operation is in progress (its claim is reaching the proxies): {}; wait for it, or take over with --force",
                    super::claim::describe(other)
                )));
            }
            return Err(RunError::Refused(format!(
                "the proxies disagree on the table version ({:?}); push one table to all of them first (flowgate push)",
                st.versions
            )));
        }
        // The table in force, from a receiving proxy on the newest version when there is one.
        let mut sources: Vec<&status::ProxyStatus> = st
            .proxies
            .iter()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.table_version == newest))
            .collect();
        sources.sort_by_key(|p| !sides.receiving.contains(&p.region));
        let mut last_error = String::from("no proxy answers");
        for p in sources {
            match self.client.table(&p.addr).await {
                Ok(table) => return Ok(Current { proxies, status: st, table, unreached, behind }),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(RunError::Refused(format!("cannot read the table in force: {last_error}")))
    }

    /// Client demand per region, summed over its proxies.
    pub fn demand(st: &FleetStatus) -> BTreeMap<String, f64> {
        st.regions.iter().map(|(r, s)| (r.clone(), s.source_rps)).collect()
    }

    pub fn capacity(&self) -> BTreeMap<String, f64> {
        self.fleet.regions.iter().map(|(r, c)| (r.clone(), c.capacity_rps)).collect()
    }

    fn describe(&self, plan: &Plan, region: &str, phase: &str) -> String {
        let mut s = format!(
            "{phase} {region}: {} steps, {:.0} rps change region; load per region now → after (limit {:.0} %):\n",
            plan.tables.len(),
            plan.moved_rps,
            self.opts.max_utilization * 100.0
        );
        for (r, before) in &plan.load_before {
            let after = plan.load_after.get(r).copied().unwrap_or(0.0);
            let cap = self.fleet.regions.get(r).map(|c| c.capacity_rps).unwrap_or(0.0);
            s.push_str(&format!(
                "  {r:<14} {before:>9.1} → {after:>9.1} rps  ({:.0} % of {cap:.0})\n",
                if cap > 0.0 { after / cap * 100.0 } else { 0.0 }
            ));
        }
        for t in &plan.tables {
            let own = t
                .weights
                .get(region)
                .map(|r| serde_json::to_string(r).unwrap_or_default())
                .unwrap_or_else(|| "(serves itself)".into());
            s.push_str(&format!("  version {}: {region} row {own}\n", t.version));
        }
        s
    }

    /// Asks before the first push unless `--yes`; refuses to ask a non-terminal.
    fn confirm(&self, what: &str) -> Result<(), RunError> {
        if self.opts.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() {
            return Err(RunError::Usage(format!(
                "refusing to ask for confirmation of {what}: stdin is not a terminal (use --yes)"
            )));
        }
        eprint!("proceed with {what}? [y/N] ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| RunError::Usage(e.to_string()))?;
        if matches!(line.trim(), "y" | "Y" | "yes") {
            Ok(())
        } else {
            Err(RunError::Refused("not confirmed; nothing pushed".into()))
        }
    }

    async fn hook(&mut self, cmd: &str, region: &str, phase: &str) -> Result<(), RunError> {
        self.say(format!("running hook ({phase}): {cmd}"));
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("FLOWGATE_REGION", region)
            .env("FLOWGATE_PHASE", phase)
            .envs(self.opts.hook_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .status()
            .await
            .map_err(|e| RunError::Hook(format!("hook `{cmd}` ({phase}) could not start: {e}")))?;
        if !status.success() {
            return Err(RunError::Hook(format!("hook `{cmd}` ({phase}) failed: {status}")));
        }
        Ok(())
    }

    /// Records one status sample of every region.
    pub async fn sample(&mut self, window: u64) -> Result<FleetStatus, RunError> {
        let proxies = self.proxies().await?;
        let st = status::gather(&self.client, &proxies, window).await;
        let at = self.started.elapsed().as_secs_f64();
        let regions = st.regions.iter().map(|(r, s)| (r.clone(), (s.rps, s.error_ratio))).collect();
        self.journal.samples.push(Sample { at, regions });
        Ok(st)
    }

    /// Waits `d`, sampling about once a second for the report.
    pub async fn watch(&mut self, d: Duration) -> Result<(), RunError> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.store.as_ref().is_some_and(|r| r.lease_lost()) {
                let msg = super::store_write::refused(&crate::store::StoreError::LeaseLost, "the run");
                self.say(msg.clone());
                return Err(RunError::Held(msg));
            }
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            self.sample(2).await?;
        }
        Ok(())
    }

    /// After a failed step: back to the last good shares, unless that would send traffic
    /// back to a region that is failing; then the run holds where it is.
    async fn stop(&mut self, last_good: &Table, version: u64, why: String, ctx: &Move<'_>) -> RunError {
        if ctx.phase == "evacuate" {
            let failing = if self.opts.source_failing {
                Some(format!("{} was judged failing", ctx.region))
            } else {
                match self.sample(10).await {
                    Ok(now) => gate::failing(&now, ctx.region, self.opts.max_error_ratio),
                    Err(e) => Some(format!("its state cannot be read: {e}")),
                }
            };
            if let Some(because) = failing {
                let msg = format!(
                    "{why}; NOT rolled back, since that would move traffic back to {} ({because}): holding the shares in force",
                    ctx.region
                );
                self.say(msg.clone());
                return RunError::Held(msg);
            }
        }
        let mut back = last_good.clone();
        back.version = version;
        back.max_shift = None;
        back.note = Some(format!("rollback of {} {}: {why}", ctx.phase, ctx.region));
        // The run ends with its rollback: the claim goes with it.
        back.operation = None;
        self.sign(&mut back);
        self.in_force = Some(back.clone());
        self.say(format!("rolling back: pushing the last good shares as version {version}"));
        let proxies = match self.proxies().await {
            Ok(p) => p,
            Err(e) => {
                return RunError::RolledBack(format!("{why}; the rollback could not list the proxies: {e}"));
            }
        };
        if let Err(e) =
            self.write_store(&back, &format!("the rollback of {} {}", ctx.phase, ctx.region)).await
        {
            return RunError::Held(format!("{why}; NOT rolled back: {e}"));
        }
        // Over the failing step only: a proxy on someone else's table keeps it.
        let results = push::push_if(&self.client, &proxies, &back, Some(version - 1)).await;
        let (blocking, tolerated) = self.split_failures(&results, ctx);
        if blocking.is_empty() {
            let mut msg = format!(
                "{why}; rolled back to the shares of version {} as version {version}",
                last_good.version
            );
            if !tolerated.is_empty() {
                msg.push_str(&format!("; not reached (they catch up later): {}", tolerated.join("; ")));
            }
            RunError::RolledBack(msg)
        } else {
            RunError::RolledBack(format!("{why}; ROLLBACK INCOMPLETE: {}", blocking.join("; ")))
        }
    }

    fn sign(&self, t: &mut Table) {
        if let Some(key) = &self.opts.signer {
            key.sign(t);
        }
    }

    /// When a receiving proxy that answered before the run is on another version than this
    /// run left there, the fleet moved under it: who moved it, from that proxy's history.
    async fn moved_under(&self, results: &[push::PushResult], ctx: &Move<'_>) -> Option<String> {
        // A proxy behind the version this run left (a pod restarted empty, one that missed
        // a push) has not been moved: it catches up from its peers.
        let expected = self.in_force.as_ref().map(|t| t.version).unwrap_or(0);
        let r = results.iter().find(|r| {
            r.answer == "moved"
                && r.after.is_none_or(|v| v > expected)
                && ctx.sides.receiving.contains(&r.region)
                && ctx.baseline.proxies.iter().any(|p| p.addr == r.addr && p.status.is_some())
        })?;
        let by = match self.client.history(&r.addr).await {
            Ok(h) => h
                .first()
                .map(|e| {
                    format!(
                        "version {} applied at {} by {} ({})",
                        e.version,
                        e.applied_at,
                        e.who,
                        e.note.as_deref().unwrap_or("no note")
                    )
                })
                .unwrap_or_else(|| "an empty history".into()),
            Err(e) => format!("a history that cannot be read: {e}"),
        };
        Some(format!(
            "{} {}: the fleet moved under this run: proxy {} ({}) has {by}; stopped, nothing rolled back over it",
            ctx.phase, ctx.region, r.addr, r.region
        ))
    }

    /// Failed pushes, split into those that stop the run (a receiving proxy that answered
    /// before the run) and those tolerated (draining side, or already unreachable).
    fn split_failures(&self, results: &[push::PushResult], ctx: &Move<'_>) -> (Vec<String>, Vec<String>) {
        let mut blocking = Vec::new();
        let mut tolerated = Vec::new();
        let expected = self.in_force.as_ref().map(|t| t.version).unwrap_or(0);
        for r in results.iter().filter(|r| !r.ok()) {
            let line = format!("{} ({}): {} {}", r.addr, r.region, r.answer, r.detail).trim_end().to_owned();
            let answered_before = ctx.baseline.proxies.iter().any(|p| p.addr == r.addr && p.status.is_some());
            // Behind this run's table (restarted empty, or it missed a push): it catches up.
            let lagging = r.answer == "moved" && r.after.is_some_and(|v| v < expected);
            if ctx.sides.receiving.contains(&r.region) && answered_before && !lagging {
                blocking.push(line);
            } else {
                tolerated.push(line);
            }
        }
        (blocking, tolerated)
    }

    /// Pushes the plan step by step with gates; returns when the last step is in force.
    pub async fn execute(
        &mut self,
        plan: &Plan,
        start: &Table,
        region: &str,
        phase: &str,
    ) -> Result<(), RunError> {
        let sides = self.sides(region, phase, start, plan);
        let baseline = self.current(&sides).await?.status;
        let ctx = Move { region, phase, sides: &sides, baseline: &baseline };
        let bar = if self.opts.json || self.opts.quiet || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            let b = indicatif::ProgressBar::new(plan.tables.len() as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix(format!("{phase} {region}"));
            b
        };
        let capacity = self.capacity();
        let mut last_good = start.clone();
        let of = plan.tables.len() as u32;
        for (i, step) in plan.tables.iter().enumerate() {
            let k = i as u32 + 1;
            let mut signed = step.clone();
            if let Some(op) = signed.operation.as_mut() {
                op.expires_at = super::claim::now() + self.claim_ttl().as_secs();
            }
            // The last step releases the claim (unless an exercise goes on to its restore).
            if k == plan.tables.len() as u32 && !self.keep_claim {
                signed.operation = None;
            }
            self.sign(&mut signed);
            let step = &signed;
            if let Some(why) = self.opts.hold.as_ref().and_then(|h| h()) {
                bar.abandon();
                let msg = format!(
                    "{phase} {region}: held before step {k} of {of} ({why}); version {} stays in force",
                    last_good.version
                );
                self.say(msg.clone());
                return Err(RunError::Held(msg));
            }
            let proxies = self.proxies().await?;
            let share = plan::shares(step.weights.get(region), region).get(region).copied().unwrap_or(0.0);
            if let Err(e) = self.write_store(step, &format!("{phase} {region}, step {k} of {of}")).await {
                bar.abandon();
                return Err(e);
            }
            // Conditional: each proxy takes the step only over the table this run put there.
            let results = push::push_if(&self.client, &proxies, step, Some(last_good.version)).await;
            if let Some(moved) = self.moved_under(&results, &ctx).await {
                bar.abandon();
                self.say(moved.clone());
                return Err(RunError::Moved(moved));
            }
            let (blocking, unreached) = self.split_failures(&results, &ctx);
            let decision = if blocking.is_empty() {
                bar.set_message(format!(
                    "version {}, {region} keeps {:.1} % of its traffic",
                    step.version,
                    share * 100.0
                ));
                self.watch(self.opts.interval).await?;
                let window = self.opts.interval.as_secs().clamp(1, 60);
                let now = self.sample(window).await?;
                gate::check(&baseline, &now, &sides, &capacity, self.opts.max_error_ratio)
            } else {
                gate::Decision::push_refused(format!(
                    "{} proxies of receiving regions did not apply version {}: {}",
                    blocking.len(),
                    step.version,
                    blocking.join("; ")
                ))
            };
            let record = StepRecord {
                phase: phase.to_owned(),
                step: k,
                of,
                version: step.version,
                at: self.started.elapsed().as_secs_f64(),
                region_share: share,
                outcome: match &decision.why {
                    None => "ok".into(),
                    Some(why) if decision.rule == gate::PUSH_REFUSED => format!("push failed: {why}"),
                    Some(why) => format!("gate failed: {why}"),
                },
                rule: decision.rule.to_owned(),
                gate: decision.seen.clone(),
                unreached,
                ignored: decision.ignored.clone(),
            };
            self.record(region, record, &bar);
            bar.inc(1);
            if decision.rule != gate::PUSH_REFUSED {
                self.in_force = Some(step.clone());
            }
            if let Some(why) = decision.why {
                bar.abandon();
                return Err(self.stop(&last_good, step.version + 1, why, &ctx).await);
            }
            last_good = step.clone();
        }
        bar.finish();
        Ok(())
    }

    /// Prints a step (a JSON line with `--json`) and keeps it in the journal.
    fn record(&mut self, region: &str, record: StepRecord, bar: &indicatif::ProgressBar) {
        if self.opts.json {
            println!("{}", serde_json::to_string(&record).unwrap_or_default());
        } else if !self.opts.quiet {
            let mut line = format!(
                "{} {region}: step {}/{} version {} in force; {region} keeps {:.1} %; gate {} [rule {}]",
                record.phase,
                record.step,
                record.of,
                record.version,
                record.region_share * 100.0,
                record.outcome,
                record.rule
            );
            if !record.unreached.is_empty() {
                line.push_str(&format!(
                    "\n  not reached (they catch up later): {}",
                    record.unreached.join("; ")
                ));
            }
            if !record.ignored.is_empty() {
                line.push_str(&format!("\n  not counted (draining side): {}", record.ignored.join("; ")));
            }
            // A hidden bar (stderr not a terminal: CI, logs) prints nothing itself.
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
        self.journal.steps.push(record);
    }

    /// Which regions a plan drains and which it feeds: a region receives when its share,
    /// summed over every row, grows from `start` to the plan's end.
    fn sides(&self, region: &str, phase: &str, start: &Table, plan: &Plan) -> gate::Sides {
        let Some(end) = plan.tables.last() else {
            return if phase == "restore" {
                gate::Sides::restore(region, self.fleet.regions.keys())
            } else {
                gate::Sides::evacuate(region, self.fleet.regions.keys())
            };
        };
        let total = |t: &Table, target: &str| -> f64 {
            self.fleet
                .regions
                .keys()
                .map(|src| plan::shares(t.weights.get(src), src).get(target).copied().unwrap_or(0.0))
                .sum()
        };
        let mut sides = gate::Sides::default();
        for r in self.fleet.regions.keys() {
            if total(end, r) > total(start, r) + 1e-9 {
                sides.receiving.insert(r.clone());
            } else {
                sides.draining.insert(r.clone());
            }
        }
        sides
    }

    /// Plans, shows, confirms, runs hooks and executes one direction.
    pub async fn run(
        &mut self,
        region: &str,
        phase: &str,
        restore_to: Option<Table>,
    ) -> Result<(), RunError> {
        if !self.fleet.regions.contains_key(region) {
            return Err(RunError::Usage(format!(
                "unknown region `{region}` (the fleet file has: {})",
                self.fleet.regions.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let sides = if phase == "restore" {
            gate::Sides::restore(region, self.fleet.regions.keys())
        } else {
            gate::Sides::evacuate(region, self.fleet.regions.keys())
        };
        let Current { proxies, status: st, table, unreached, behind } = self.current(&sides).await?;
        let table = self.store_base(table).await?;
        if !unreached.is_empty() {
            self.say(format!(
                "{} proxies do not answer; going on without them (they catch up later): {}",
                unreached.len(),
                unreached.join("; ")
            ));
        }
        if !behind.is_empty() {
            self.say(format!("behind the newest version (they get the next one): {}", behind.join("; ")));
        }
        let demand = Self::demand(&st);
        let capacity = self.capacity();
        let input = PlanInput {
            table: &table,
            demand: &demand,
            capacity: &capacity,
            steps: self.opts.steps,
            max_utilization: self.opts.max_utilization,
        };
        let plan = match (phase, restore_to) {
            ("restore", Some(target)) => plan::restore(&input, region, &target),
            ("restore", None) => {
                let target = self.pre_evacuation_table(&proxies, region).await?;
                plan::restore(&input, region, &target)
            }
            _ => plan::evacuate_with(&input, region, &self.opts.evacuate),
        };
        let plan = plan.map_err(|e| match e {
            plan::PlanError::NotEnoughCapacity { .. } => {
                RunError::Refused(format!("{phase} {region} refused before any push: {e}"))
            }
            other => RunError::Usage(other.to_string()),
        })?;
        if let Some(short) = &plan.shortfall {
            let missing: Vec<String> = short
                .missing
                .iter()
                .filter(|(_, m)| **m > 0.0)
                .map(|(r, m)| format!("{r} needs {:.0} rps more capacity", m.ceil()))
                .collect();
            self.say(format!(
                "capacity is short: {region} keeps {:.1} % of its traffic ({:.0} rps) after this move; {}",
                short.kept_share * 100.0,
                short.kept_rps,
                missing.join(", ")
            ));
            // The pre-scale hook learns what to add: `REGION=RPS,...`.
            let env: Vec<String> = short
                .missing
                .iter()
                .filter(|(_, m)| **m > 0.0)
                .map(|(r, m)| format!("{r}={:.0}", m.ceil()))
                .collect();
            self.opts.hook_env.push(("FLOWGATE_MISSING_CAPACITY".into(), env.join(",")));
        }
        let text = self.describe(&plan, region, phase);
        if self.opts.json {
            println!(
                "{}",
                serde_json::json!({"plan": plan.tables, "load_before": plan.load_before, "load_after": plan.load_after})
            );
        } else if !self.opts.quiet {
            eprint!("{text}");
        } else {
            self.journal.notes.push(text);
        }
        if self.opts.dry_run {
            self.say("dry run: nothing pushed".into());
            return Ok(());
        }
        self.confirm(&format!("{phase} {region}"))?;
        let kind = if self.keep_claim { format!("exercise {region}") } else { format!("{phase} {region}") };
        let claimed = self.claim(&table, &kind).await?;
        let plan = plan.rebased(&table, &claimed);
        let result = self.claimed_run(&plan, &claimed, region, phase).await;
        match &result {
            // Someone else's table, or the rollback that cleared the claim already.
            Err(RunError::Moved(_)) | Err(RunError::RolledBack(_)) => {}
            Ok(()) => self.release("done").await,
            Err(_) => self.release("stopped").await,
        }
        result
    }

    /// Hooks, steps and gates of one direction, with the fleet claimed.
    async fn claimed_run(
        &mut self,
        plan: &Plan,
        claimed: &Table,
        region: &str,
        phase: &str,
    ) -> Result<(), RunError> {
        if let Some(cmd) = self.opts.before_shift.clone() {
            self.hook(&cmd, region, &format!("before-{phase}")).await?;
        }
        self.execute(plan, claimed, region, phase).await?;
        let table = claimed;
        let done = if phase == "restore" { "restored" } else { "evacuated" };
        self.say(format!(
            "{phase} {region}: done, version {} in force fleet-wide",
            plan.tables.last().map(|t| t.version).unwrap_or(table.version)
        ));
        match (self.opts.dns.clone(), &plan.shortfall) {
            // DNS would move every client away at once: only once the region is empty.
            (Some(_), Some(short)) if phase == "evacuate" => self.say(format!(
                "DNS hook not run: {region} still serves {:.1} % of its traffic (capacity is short)",
                short.kept_share * 100.0
            )),
            (Some(cmd), _) => self.hook(&cmd, region, done).await?,
            (None, _) => {}
        }
        Ok(())
    }

    /// The shares in force before the last evacuation of `region`, from a proxy's history.
    async fn pre_evacuation_table(&self, proxies: &[Proxy], region: &str) -> Result<Table, RunError> {
        let marker = format!("evacuate {region}: step 1 of ");
        for p in proxies {
            let Ok(history) = self.client.history(&p.addr).await else { continue };
            // Newest first: the newest first step of an evacuation of this region.
            let Some(first) =
                history.iter().find(|h| h.note.as_deref().is_some_and(|n| n.starts_with(&marker)))
            else {
                continue;
            };
            let Some(from) = first
                .note
                .as_deref()
                .and_then(|n| n.rsplit("(from version ").next())
                .and_then(|v| v.trim_end_matches(')').parse::<u64>().ok())
            else {
                continue;
            };
            if let Ok(t) = self.client.history_table(&p.addr, from).await {
                return Ok(t);
            }
        }
        Err(RunError::Usage(format!(
            "no evacuation of {region} found in the proxies' table history (it keeps the last 50 tables); give the shares to restore with --to TABLE"
        )))
    }
}

/// `exercise`: evacuate, hold while watching, restore; the report says what happened.
pub async fn exercise(runner: &mut Runner<'_>, region: &str, hold: Duration) -> Result<(), RunError> {
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
