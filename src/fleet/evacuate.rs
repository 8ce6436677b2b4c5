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
use super::plan::{self, Plan, PlanInput};
use super::push::{self, Proxy};
use super::status::{self, FleetStatus};
use crate::table::Table;

/// How a run behaves (the command-line options).
#[derive(Debug, Clone)]
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
    /// Per region error ratio the gate saw.
    pub gate: BTreeMap<String, f64>,
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

/// A fleet, a client and the clock of one run.
pub struct Runner<'a> {
    pub fleet: &'a FleetFile,
    pub client: AdminClient,
    pub opts: RunOptions,
    pub started: Instant,
    pub journal: Journal,
}

impl<'a> Runner<'a> {
    pub fn new(fleet: &'a FleetFile, opts: RunOptions) -> Runner<'a> {
        Runner {
            client: AdminClient::new(fleet.token(), opts.timeout),
            fleet,
            opts,
            started: Instant::now(),
            journal: Journal::default(),
        }
    }

    fn say(&mut self, line: String) {
        if !self.opts.json && !self.opts.quiet {
            eprintln!("{line}");
        }
        self.journal.notes.push(line);
    }

    async fn proxies(&self) -> Result<Vec<Proxy>, RunError> {
        push::proxies(self.fleet).await.map_err(RunError::Refused)
    }

    /// Reads the fleet and the table in force; refuses if anything is unreachable or the
    /// proxies disagree.
    pub async fn current(&self) -> Result<(Vec<Proxy>, FleetStatus, Table), RunError> {
        let proxies = self.proxies().await?;
        let st = status::gather(&self.client, &proxies, 60).await;
        if st.unreachable > 0 {
            let down: Vec<String> = st
                .proxies
                .iter()
                .filter_map(|p| p.error.as_ref().map(|e| format!("{} ({}): {e}", p.addr, p.region)))
                .collect();
            return Err(RunError::Refused(format!(
                "not every proxy answers; nothing pushed: {}",
                down.join("; ")
            )));
        }
        if !st.versions_agree {
            return Err(RunError::Refused(format!(
                "the proxies disagree on the table version ({:?}); push one table to all of them first (flowgate push)",
                st.versions
            )));
        }
        let first = proxies.first().ok_or_else(|| RunError::Refused("the fleet has no proxy".into()))?;
        let table = self.client.table(&first.addr).await.map_err(|e| RunError::Refused(e.to_string()))?;
        Ok((proxies, st, table))
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
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            self.sample(2).await?;
        }
        Ok(())
    }

    /// What makes the gate fail: a region's errors above the limit (and above where they
    /// were before the run), a proxy not ready or unreachable, a target gone unhealthy.
    fn gate(&self, baseline: &FleetStatus, now: &FleetStatus) -> Result<BTreeMap<String, f64>, String> {
        let mut seen = BTreeMap::new();
        // Every region over the limit, worst first: the failing region's errors also show
        // in the regions that send it traffic, and the operator needs to see which is which.
        let mut over = Vec::new();
        for (r, s) in &now.regions {
            seen.insert(r.clone(), s.error_ratio);
            let before = baseline.regions.get(r).map(|b| b.error_ratio).unwrap_or(0.0);
            if s.error_ratio > self.opts.max_error_ratio && s.error_ratio > before {
                over.push((r, s.error_ratio, before));
            }
        }
        if !over.is_empty() {
            over.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            let why: Vec<String> = over
                .iter()
                .map(|(r, e, before)| {
                    format!(
                        "region {r}: error ratio {:.2} % is above the limit of {:.2} % (it was {:.2} % before)",
                        e * 100.0,
                        self.opts.max_error_ratio * 100.0,
                        before * 100.0
                    )
                })
                .collect();
            return Err(why.join("; "));
        }
        for (r, s) in &now.regions {
            if s.ready < s.proxies {
                return Err(format!(
                    "region {r}: {} of {} proxies are not ready or not answering",
                    s.proxies - s.ready,
                    s.proxies
                ));
            }
        }
        for p in &now.proxies {
            let Some(st) = &p.status else {
                return Err(format!(
                    "proxy {} ({}) stopped answering: {}",
                    p.addr,
                    p.region,
                    p.error.as_deref().unwrap_or("")
                ));
            };
            let was = baseline.proxies.iter().find(|b| b.addr == p.addr).and_then(|b| b.status.as_ref());
            for (t, view) in &st.targets {
                let was_healthy = was.and_then(|w| w.targets.get(t)).is_some_and(|w| w.healthy);
                if was_healthy && !view.healthy {
                    return Err(format!("proxy {} ({}) now sees region {t} unhealthy", p.addr, p.region));
                }
            }
        }
        Ok(seen)
    }

    async fn rollback(
        &mut self,
        last_good: &Table,
        version: u64,
        why: String,
        region: &str,
        phase: &str,
    ) -> RunError {
        let mut back = last_good.clone();
        back.version = version;
        back.max_shift = None;
        back.note = Some(format!("rollback of {phase} {region}: {why}"));
        self.say(format!("rolling back: pushing the last good shares as version {version}"));
        let proxies = match self.proxies().await {
            Ok(p) => p,
            Err(e) => {
                return RunError::RolledBack(format!("{why}; the rollback could not list the proxies: {e}"));
            }
        };
        match push::push_all(&self.client, &proxies, &back).await {
            Ok(_) => RunError::RolledBack(format!(
                "{why}; rolled back to the shares of version {} as version {version}",
                last_good.version
            )),
            Err((_, e)) => RunError::RolledBack(format!("{why}; ROLLBACK INCOMPLETE: {e}")),
        }
    }

    /// Pushes the plan step by step with gates; returns when the last step is in force.
    pub async fn execute(
        &mut self,
        plan: &Plan,
        start: &Table,
        region: &str,
        phase: &str,
    ) -> Result<(), RunError> {
        let (_, baseline, _) = self.current().await?;
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
        let mut last_good = start.clone();
        let of = plan.tables.len() as u32;
        for (i, step) in plan.tables.iter().enumerate() {
            let k = i as u32 + 1;
            let proxies = self.proxies().await?;
            let share = plan::shares(step.weights.get(region), region).get(region).copied().unwrap_or(0.0);
            if let Err((_, why)) = push::push_all(&self.client, &proxies, step).await {
                bar.abandon();
                return Err(self.rollback(&last_good, step.version + 1, why, region, phase).await);
            }
            bar.set_message(format!(
                "version {}, {region} keeps {:.1} % of its traffic",
                step.version,
                share * 100.0
            ));
            self.watch(self.opts.interval).await?;
            let window = self.opts.interval.as_secs().clamp(1, 60);
            let now = self.sample(window).await?;
            let gate = self.gate(&baseline, &now);
            let record = StepRecord {
                phase: phase.to_owned(),
                step: k,
                of,
                version: step.version,
                at: self.started.elapsed().as_secs_f64(),
                region_share: share,
                outcome: match &gate {
                    Ok(_) => "ok".into(),
                    Err(why) => format!("gate failed: {why}"),
                },
                gate: gate.clone().unwrap_or_default(),
            };
            if self.opts.json {
                println!("{}", serde_json::to_string(&record).unwrap_or_default());
            } else if !self.opts.quiet {
                let line = format!(
                    "{phase} {region}: step {k}/{of} version {} in force; {region} keeps {:.1} %; gate {}",
                    step.version,
                    share * 100.0,
                    record.outcome
                );
                // A hidden bar (stderr not a terminal: CI, logs) prints nothing itself.
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            self.journal.steps.push(record);
            bar.inc(1);
            if let Err(why) = gate {
                bar.abandon();
                return Err(self.rollback(&last_good, step.version + 1, why, region, phase).await);
            }
            last_good = step.clone();
        }
        bar.finish();
        Ok(())
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
        let (proxies, st, table) = self.current().await?;
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
            _ => plan::evacuate(&input, region),
        };
        let plan = plan.map_err(|e| match e {
            plan::PlanError::NotEnoughCapacity { .. } => {
                RunError::Refused(format!("{phase} {region} refused before any push: {e}"))
            }
            other => RunError::Usage(other.to_string()),
        })?;
        let text = self.describe(&plan, region, phase);
        if self.opts.json {
            println!(
                "{}",
                serde_json::json!({"plan": plan.tables, "load_before": plan.load_before, "load_after": plan.load_after})
            );
        } else if !self.opts.quiet {
            eprint!("{text}");
        }
        if self.opts.dry_run {
            self.say("dry run: nothing pushed".into());
            return Ok(());
        }
        self.confirm(&format!("{phase} {region}"))?;
        if let Some(cmd) = self.opts.before_shift.clone() {
            self.hook(&cmd, region, &format!("before-{phase}")).await?;
        }
        self.execute(&plan, &table, region, phase).await?;
        let done = if phase == "restore" { "restored" } else { "evacuated" };
        self.say(format!(
            "{phase} {region}: done, version {} in force fleet-wide",
            plan.tables.last().map(|t| t.version).unwrap_or(table.version)
        ));
        if let Some(cmd) = self.opts.dns.clone() {
            self.hook(&cmd, region, done).await?;
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
    let (_, _, before) = runner.current().await?;
    runner.confirm(&format!("an exercise on {region} (evacuate, hold {hold:?}, restore)"))?;
    runner.opts.yes = true;
    runner.run(region, "evacuate", None).await?;
    runner.say(format!("holding {region} evacuated for {hold:?}"));
    runner.watch(hold).await?;
    let mut restore_to = before;
    restore_to.max_shift = None;
    runner.run(region, "restore", Some(restore_to)).await
}
