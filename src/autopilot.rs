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

pub mod decide;
pub mod judge;
pub mod leader;
pub mod server;
pub mod switch;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fleet::FleetFile;
use crate::fleet::client::AdminClient;
use crate::fleet::evacuate::{RunError, RunOptions, Runner};
use crate::fleet::status::FleetStatus;
use crate::fleet::{plan, push, status};
use crate::table::Table;
use decide::{Action, Context, Controller, Decision, Rails};
use judge::{Reading, Thresholds};

/// The command-line options of `flowgate autopilot`.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: String,
    pub interval: Duration,
    pub confirm: Duration,
    pub min_healthy_regions: usize,
    pub max_utilization: f64,
    pub steps: u32,
    pub step_interval: Duration,
    pub auto_restore: Option<Duration>,
    pub cooldown: Duration,
    pub dry_run: bool,
    pub before_shift: Option<String>,
    pub dns: Option<String>,
    pub notify: Option<String>,
    /// The gate's limit on a receiving region's error ratio during a move.
    pub max_error_ratio: f64,
    /// The error ratio at which a region's errors are a failure signal.
    pub failing_error_ratio: f64,
    pub state_file: PathBuf,
    /// Per-proxy timeout of every call.
    pub timeout: Duration,
    /// Print decisions on stdout (the demo reads them from the shared view instead).
    pub print: bool,
    /// Signs every table it pushes.
    pub signer: Option<Arc<crate::table::sign::SigningKey>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AutopilotError {
    #[error("autopilot: cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("autopilot: {0}")]
    State(#[from] switch::StateError),
    #[error("autopilot: metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A decision as it is logged: the decision, when, and what came of an action.
#[derive(Debug, Serialize)]
struct Record<'a> {
    time: String,
    #[serde(flatten)]
    decision: &'a Decision,
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<&'a crate::fleet::evacuate::Journal>,
}

/// A bound autopilot, ready to run.
pub struct Autopilot {
    fleet: FleetFile,
    opts: Options,
    shared: Arc<server::Shared>,
    listener: TcpListener,
    reload: Arc<std::sync::atomic::AtomicBool>,
}

/// Per region: an exponentially weighted mean of its successful requests per second,
/// kept while it looks healthy and its inbound shares stay the same.
#[derive(Debug, Default, Clone)]
struct Baseline {
    mean: f64,
    samples: u32,
    fingerprint: f64,
}

/// Rounds of health before a baseline counts.
const BASELINE_ROUNDS: u32 = 10;

impl Autopilot {
    pub async fn bind(fleet: FleetFile, opts: Options) -> Result<Autopilot, AutopilotError> {
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
    pub fn reload_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.reload.clone()
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn shared(&self) -> Arc<server::Shared> {
        self.shared.clone()
    }

    /// Runs until `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
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
            client: AdminClient::new(fleet.token(), opts.timeout),
            fleet,
            th: Thresholds { error_ratio: opts.failing_error_ratio, ..Thresholds::default() },
            rails: Rails {
                confirm: opts.confirm,
                min_healthy_regions: opts.min_healthy_regions,
                cooldown: opts.cooldown,
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

struct Pilot {
    fleet: FleetFile,
    opts: Options,
    th: Thresholds,
    rails: Rails,
    client: AdminClient,
    shared: Arc<server::Shared>,
    controller: Controller,
    baselines: BTreeMap<String, Baseline>,
    reload: Arc<std::sync::atomic::AtomicBool>,
    /// Leader, standby, or alone (no store): see [`leader`].
    role: tokio::sync::watch::Receiver<leader::Role>,
    /// Whether the last round acted as the leader (to notice a takeover).
    acted_as_leader: bool,
}

/// The fleet's table in force, from the reachable proxy with the newest version.
async fn table_in_force(client: &AdminClient, st: &FleetStatus) -> Option<Table> {
    let mut order: Vec<&status::ProxyStatus> = st.proxies.iter().filter(|p| p.status.is_some()).collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.status.as_ref().map(|s| s.table_version)));
    for p in order.into_iter().take(3) {
        if let Ok(t) = client.table(&p.addr).await {
            return Some(t);
        }
    }
    None
}

/// Steps of an outage evacuation. The ramp protects the receiving regions from load that
/// moves; when the failing region already serves (almost) nothing of its demand (its own
/// proxies fail its traffic over to healthy regions, or none of them answers), that load
/// has moved already and one step makes it official.
fn ramp_steps(e: &judge::Evidence, configured: u32) -> u32 {
    if e.proxies_answering == 0 || e.served_rps <= 0.1 * e.demand_rps { 1 } else { configured }
}

/// Share of its own clients' traffic a region serves itself under `table`.
fn keeps(table: &Table, region: &str) -> f64 {
    plan::shares(table.weights.get(region), region).get(region).copied().unwrap_or(0.0)
}

impl Pilot {
    async fn round(&mut self, stop: &CancellationToken) {
        if self.reload.swap(false, std::sync::atomic::Ordering::Relaxed) {
            match FleetFile::load(&self.fleet.file) {
                Ok(f) => {
                    tracing::warn!(file = %self.fleet.file.display(), regions = f.regions.len(), "autopilot: fleet file reloaded");
                    self.client = AdminClient::new(f.token(), self.opts.timeout);
                    self.fleet = f;
                }
                Err(e) => {
                    tracing::error!(error = %e, "autopilot: fleet file refused; keeping the one in force")
                }
            }
        }
        let proxies = push::proxies_or_unresolved(&self.fleet).await;
        let st = status::gather(&self.client, &proxies, self.th.window_seconds).await;
        let table = table_in_force(&self.client, &st).await;
        let state = match switch::load(&self.opts.state_file) {
            Ok(s) => s,
            Err(e) => {
                // The pause switch cannot be read: act as if paused, and say so.
                tracing::error!(error = %e, "autopilot: cannot read its state; acting as paused");
                switch::State { paused: true, ..Default::default() }
            }
        };
        let evacuated: BTreeSet<String> = match &table {
            Some(t) => self
                .fleet
                .regions
                .keys()
                .filter(|r| t.weights.contains_key(*r) && keeps(t, r) <= 0.0)
                .cloned()
                .collect(),
            None => BTreeSet::new(),
        };
        // The region the autopilot evacuated, unless someone brought it back since.
        let mut ours = state.evacuated.clone();
        if let (Some(r), Some(_)) = (&ours, &table)
            && !evacuated.contains(r)
            && !state.paused
        {
            tracing::info!(region = %r, "autopilot: its evacuated region was restored by someone else");
            let _ = switch::update(&self.opts.state_file, |s| s.evacuated = None);
            ours = None;
        }
        let mut readings = BTreeMap::new();
        for region in self.fleet.regions.keys() {
            let fingerprint: f64 = st
                .proxies
                .iter()
                .filter_map(|p| p.status.as_ref()?.targets.get(region).map(|t| t.share))
                .sum();
            let b = self.baselines.entry(region.clone()).or_default();
            if (b.fingerprint - fingerprint).abs() > 0.01 {
                *b = Baseline { fingerprint, ..Default::default() };
            }
            let baseline = (b.samples >= BASELINE_ROUNDS).then_some(b.mean);
            let (evidence, reading) = judge::judge(&st, region, baseline, &self.th);
            if reading == Reading::Healthy && !evacuated.contains(region) {
                let alpha = (self.opts.interval.as_secs_f64() / 60.0).clamp(0.01, 1.0);
                b.mean = if b.samples == 0 {
                    evidence.success_rps
                } else {
                    b.mean + alpha * (evidence.success_rps - b.mean)
                };
                b.samples += 1;
            }
            readings.insert(region.clone(), (evidence, reading));
        }
        let now_unix = switch::unix_now();
        let ctx = Context {
            evacuated: evacuated.clone(),
            ours: ours.clone(),
            paused: state.paused,
            cooldown_left: state
                .cooldown_until
                .filter(|u| *u > now_unix)
                .map(|u| Duration::from_secs(u - now_unix)),
        };
        let role = self.role.borrow().clone();
        if role.acts() && !self.acted_as_leader && matches!(role, leader::Role::Leader(_)) {
            tracing::warn!("autopilot: now the leader; acting on what it has been watching");
            self.controller.forget_news();
        }
        self.acted_as_leader = role.acts();
        self.shared.metrics.leader.set(role.acts() as i64);
        if let Ok(mut v) = self.shared.view.lock() {
            v.role = match &role {
                leader::Role::Standby { leader: Some(l), .. } => format!("standby (leader: {l})"),
                leader::Role::Standby { why: Some(w), .. } => format!("standby ({w})"),
                other => other.name().to_owned(),
            };
        }
        let decisions = self.controller.round(Instant::now(), &readings, &ctx, &self.rails);
        self.show(&st, table.as_ref(), &decisions, &state, ours.as_deref());
        let result = if st.unreachable == st.proxies.len() { "failed" } else { "ok" };
        self.shared.metrics.rounds.with_label_values(&[result]).inc();
        self.shared.liveness.round_done();
        if !role.acts() {
            // A standby judges and shows, and neither logs nor acts: that is the leader's.
            return;
        }
        let store_lease = match &role {
            leader::Role::Leader(l) => Some(l.clone()),
            _ => None,
        };
        let mut todo = None;
        for (d, news) in &decisions {
            if *news {
                self.emit(d, None, None);
                if matches!(d.action, Action::Evacuate | Action::Restore) && todo.is_none() {
                    todo = Some(d.clone());
                }
            }
        }
        if let Some(d) = todo {
            let avoid: BTreeSet<String> = readings
                .iter()
                .filter(|(r, (_, reading))| **r != d.region && matches!(reading, Reading::Failing { .. }))
                .map(|(r, _)| r.clone())
                .chain(evacuated.iter().filter(|r| **r != d.region).cloned())
                .collect();
            self.act(&d, avoid, store_lease, stop).await;
        }
    }

    /// Runs one evacuation or restore to its end and logs how it ended.
    async fn act(
        &mut self,
        d: &Decision,
        avoid: BTreeSet<String>,
        store_lease: Option<crate::store::LeaseRef>,
        stop: &CancellationToken,
    ) {
        let evacuate = d.action == Action::Evacuate;
        let phase = if evacuate { "evacuate" } else { "restore" };
        let state_path = self.opts.state_file.clone();
        let hold: crate::fleet::evacuate::HoldCheck = Arc::new(move || match switch::load(&state_path) {
            Ok(s) if s.paused => Some("the autopilot was paused".into()),
            Ok(_) => None,
            Err(e) => Some(format!("its state cannot be read: {e}")),
        });
        let steps = if evacuate { ramp_steps(&d.evidence, self.opts.steps) } else { self.opts.steps };
        let opts = RunOptions {
            steps,
            interval: self.opts.step_interval,
            max_utilization: self.opts.max_utilization,
            max_error_ratio: self.opts.max_error_ratio,
            dry_run: self.opts.dry_run,
            yes: true,
            json: false,
            quiet: true,
            before_shift: self.opts.before_shift.clone(),
            dns: self.opts.dns.clone(),
            timeout: self.opts.timeout,
            hold: Some(hold),
            source_failing: evacuate,
            evacuate: plan::EvacuateOptions { avoid, partial: true },
            hook_env: vec![("FLOWGATE_TRIGGER".into(), "autopilot".into())],
            signer: self.opts.signer.clone(),
            force: false,
            autopilot: true,
            store_lease,
        };
        let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        if let Ok(mut v) = self.shared.view.lock() {
            v.operation = Some(format!("{phase} {} (since {started})", d.region));
        }
        self.shared.metrics.operation_in_progress.set(1);
        // Steps, their gates and retries, and up to half an hour of hooks (pre-scaling).
        let per_step = self.opts.step_interval + self.opts.timeout * 10;
        self.shared.liveness.busy(Some(per_step * steps + Duration::from_secs(1800)));
        let mut runner = Runner::new(&self.fleet, opts);
        let result = tokio::select! {
            r = runner.run(&d.region, phase, None) => r,
            _ = stop.cancelled() => Err(RunError::Held(format!("stopped by a signal during the {phase}; the fleet stays where it is"))),
        };
        self.shared.metrics.operation_in_progress.set(0);
        self.shared.liveness.busy(None);
        if let Ok(mut v) = self.shared.view.lock() {
            v.operation = None;
        }
        let moved = !runner.journal.steps.is_empty();
        let (outcome, why) = match &result {
            Ok(()) if self.opts.dry_run => {
                ("dry-run", format!("dry run: would {phase} {}; nothing pushed", d.region))
            }
            Ok(()) => ("done", format!("{phase} of {} done", d.region)),
            Err(e @ RunError::RolledBack(_)) => ("rolled-back", e.to_string()),
            Err(e @ RunError::Held(_)) => ("held", e.to_string()),
            Err(e @ RunError::Refused(_)) => ("refused", e.to_string()),
            Err(e @ RunError::Moved(_)) => ("moved", e.to_string()),
            Err(e) => ("failed", e.to_string()),
        };
        let mut why = why;
        if let Some(short) = runner.journal.notes.iter().find(|n| n.starts_with("capacity is short")) {
            why.push_str(&format!("; {short}"));
        }
        if !self.opts.dry_run {
            self.shared.metrics.actions.with_label_values(&[phase, outcome]).inc();
            let cooldown = switch::unix_now() + self.opts.cooldown.as_secs();
            let region = d.region.clone();
            let kept = evacuate && (result.is_ok() || (moved && outcome == "held"));
            let restored = !evacuate && result.is_ok();
            let saved = switch::update(&self.opts.state_file, |s| {
                s.cooldown_until = Some(cooldown);
                if kept {
                    s.evacuated = Some(region);
                } else if restored {
                    s.evacuated = None;
                }
            });
            if let Err(e) = saved {
                tracing::error!(error = %e, "autopilot: cannot record the action in its state file");
            }
        }
        let mut done = d.clone();
        done.rule = match outcome {
            "done" => {
                if evacuate {
                    "evacuated"
                } else {
                    "restored"
                }
            }
            "dry-run" => "dry-run",
            "rolled-back" => "rolled-back",
            "held" => "run-held",
            "refused" => "refused",
            "moved" => "moved",
            _ => "failed",
        };
        done.why = why;
        self.emit(&done, Some(outcome), Some(&runner.journal));
        self.controller.reset(&d.region);
    }

    /// Logs a decision: stdout, the ring of `/v1/decisions`, metrics, `--notify`.
    fn emit(&self, d: &Decision, result: Option<&str>, run: Option<&crate::fleet::evacuate::Journal>) {
        let record = Record {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            decision: d,
            dry_run: self.opts.dry_run,
            result,
            run,
        };
        let Ok(value) = serde_json::to_value(&record) else { return };
        let line = value.to_string();
        if self.opts.print {
            // A closed stdout must not stop the autopilot.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        let action = serde_json::to_value(d.action)
            .ok()
            .and_then(|a| a.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.shared.metrics.decisions.with_label_values(&[&action]).inc();
        if let Ok(mut v) = self.shared.view.lock() {
            v.decisions.push_front(value);
            v.decisions.truncate(server::DECISIONS_KEPT);
        }
        if let Some(cmd) = self.opts.notify.clone() {
            let verdict = serde_json::to_value(d.verdict)
                .ok()
                .and_then(|a| a.as_str().map(str::to_owned))
                .unwrap_or_default();
            let region = d.region.clone();
            tokio::spawn(notify(cmd, line, region, verdict, action));
        }
    }

    /// Refreshes the page's view and the per-region metrics.
    fn show(
        &self,
        st: &FleetStatus,
        table: Option<&Table>,
        decisions: &[(Decision, bool)],
        state: &switch::State,
        ours: Option<&str>,
    ) {
        let m = &self.shared.metrics;
        m.proxies_unreachable.set(st.unreachable as i64);
        let mut rows = Vec::new();
        for (d, _) in decisions {
            for v in ["healthy", "suspect", "failing"] {
                let on = serde_json::to_value(d.verdict)
                    .ok()
                    .and_then(|x| x.as_str().map(|s| s == v))
                    .unwrap_or(false);
                m.verdict.with_label_values(&[&d.region, v]).set(on as i64);
            }
            m.region_error_ppm
                .with_label_values(&[&d.region])
                .set((d.evidence.served_error_ratio * 1e6) as i64);
            let mut versions: Vec<u64> = st
                .proxies
                .iter()
                .filter(|p| p.region == d.region)
                .filter_map(|p| p.status.as_ref().map(|s| s.table_version))
                .collect();
            versions.sort_unstable();
            versions.dedup();
            rows.push(server::RegionRow {
                region: d.region.clone(),
                verdict: serde_json::to_value(d.verdict)
                    .ok()
                    .and_then(|x| x.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                rule: d.rule.to_owned(),
                why: d.why.clone(),
                proxies: d.evidence.proxies,
                answering: d.evidence.proxies_answering,
                ready: d.evidence.proxies_ready,
                versions,
                served_rps: d.evidence.served_rps,
                served_error_ratio: d.evidence.served_error_ratio,
                keeps_share: table.map(|t| keeps(t, &d.region)),
            });
        }
        if let Ok(mut v) = self.shared.view.lock() {
            v.regions = rows;
            v.paused = state.paused;
            v.evacuated_by_autopilot = ours.map(str::to_owned);
            v.dry_run = self.opts.dry_run;
            v.last_round = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
            v.unreachable = st
                .proxies
                .iter()
                .filter_map(|p| p.error.as_ref().map(|e| format!("{} ({}): {e}", p.addr, p.region)))
                .collect();
        }
        // After the view: whoever sees the gauge flip finds the page flipped too.
        m.paused.set(state.paused as i64);
    }
}

/// Runs `--notify` with the decision on stdin; a hook that hangs is cut after 30 s.
async fn notify(cmd: String, json: String, region: String, verdict: String, action: String) {
    use tokio::io::AsyncWriteExt;
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .env("FLOWGATE_REGION", &region)
        .env("FLOWGATE_VERDICT", &verdict)
        .env("FLOWGATE_ACTION", &action)
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(command = %cmd, error = %e, "autopilot: --notify could not start");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(json.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
    }
    match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(Ok(s)) if s.success() => {}
        Ok(Ok(s)) => tracing::error!(command = %cmd, status = %s, "autopilot: --notify failed"),
        Ok(Err(e)) => tracing::error!(command = %cmd, error = %e, "autopilot: --notify failed"),
        Err(_) => tracing::error!(command = %cmd, "autopilot: --notify took over 30 s; killed"),
    }
}
