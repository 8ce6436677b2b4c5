//! `flowgate demo`: three regions on loopback, a steady client load, and the real
//! `exercise` code evacuating and restoring `us-east-1`; halfway, one region's load
//! balancer is crushed so that the bypass engages. Then an unplanned outage: `eu-west-1`'s
//! origin dies and the real autopilot evacuates it unattended. Everything runs on the product's own
//! code paths (`Server`, `Control`, the fleet runner); only the origins, the load
//! balancers and the clients are the demo's.

mod lb;
mod load;
mod operator;
mod origin;
mod outage;
mod show;
mod view;
mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::fleet::client::AdminClient;
use world::{REGIONS, World};

/// The region the demo evacuates, and the one whose load balancer it crushes.
const EVACUATED: &str = REGIONS[0];
const CRUSHED: &str = REGIONS[1];

#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// How long the show takes (15 s at least).
    pub duration: Duration,
    /// Print how to drive the fleet by hand before the show, and keep the fleet and its
    /// client load up after it until SIGINT or SIGTERM.
    pub keep_running: bool,
    /// The demo's folder (see [`DIR_ENV`]), kept afterwards; `None`: the variable, or a
    /// temporary folder.
    pub dir: Option<PathBuf>,
}

/// Names the demo's folder (configs, fleet file, table, the proxies' state), created if
/// missing and kept afterwards; without it, a fresh temporary folder removed at the end.
pub const DIR_ENV: &str = "FLOWGATE_DEMO_DIR";

/// Shared between the phases and the view: what is happening now.
pub(crate) struct Now {
    pub(crate) line: std::sync::Mutex<String>,
    pub(crate) bypass_seen: AtomicBool,
}

impl Now {
    fn set(&self, s: impl Into<String>) {
        if let Ok(mut l) = self.line.lock() {
            *l = s.into();
        }
    }

    pub(crate) fn get(&self) -> String {
        self.line.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Runs the demo; returns the process exit code (0 ok, 1 a client request failed, the
/// exercise failed, the demo could not start, or it was stopped before the show ended).
pub async fn run(opts: DemoOptions) -> u8 {
    let chosen = opts
        .dir
        .clone()
        .or_else(|| std::env::var_os(DIR_ENV).map(PathBuf::from))
        .filter(|d| !d.as_os_str().is_empty());
    let (dir, temporary) = match chosen {
        // Absolute: the configs name paths in it, and theirs are relative to their folder.
        Some(d) => (std::path::absolute(&d).unwrap_or(d), false),
        None => (
            std::env::temp_dir().join(format!(
                "flowgate-demo-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            )),
            true,
        ),
    };
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| forget_last_run(&dir)) {
        crate::errln!("error: the demo could not start: {}: {e}", dir.display());
        return 1;
    }
    let code = run_in(&dir, &opts).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    code
}

/// A kept folder's proxies' state from an earlier run would start this one on its last
/// table: the show starts from scratch. Only what the demo itself writes is removed.
fn forget_last_run(dir: &Path) -> std::io::Result<()> {
    let gone_already = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    for region in REGIONS {
        for i in 0..world::PROXIES_PER_REGION {
            gone_already(std::fs::remove_dir_all(dir.join(format!("state-{region}-{i}"))))?;
        }
    }
    gone_already(std::fs::remove_file(dir.join("autopilot-state.json")))
}

/// The admin token: the operator's `FLOWGATE_ADMIN_TOKEN` when set (the printed commands
/// then work in that shell as they are), else a fresh one.
fn admin_token() -> String {
    std::env::var("FLOWGATE_ADMIN_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
        .unwrap_or_else(|| {
            crate::proxy::headers::new_request_id().to_str().unwrap_or("demo-token").to_owned()
        })
}

async fn run_in(dir: &Path, opts: &DemoOptions) -> u8 {
    // Installed before anything starts: SIGINT or SIGTERM during the show stops the demo
    // (exit 1); after it, they stop the kept fleet (clients first, then each proxy drains).
    let signalled = CancellationToken::new();
    if opts.keep_running {
        let s = signalled.clone();
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            s.cancel();
        });
    }
    let token = admin_token();
    let world = match World::start(dir, &token).await {
        Ok(w) => Arc::new(w),
        Err(e) => {
            crate::errln!("error: the demo could not start: {e}");
            return 1;
        }
    };
    if opts.keep_running {
        let version = crate::fleet::claim::now().max(1);
        let table = dir.join("table.json");
        if let Err(e) = std::fs::write(&table, operator::table_json(&REGIONS, REGIONS[2], version)) {
            crate::errln!("error: the demo could not start: {}: {e}", table.display());
            return 1;
        }
        operator::print_start(&operator::Handoff {
            regions: world
                .regions
                .iter()
                .map(|r| (r.name, r.proxies.iter().map(|p| p.addrs).collect()))
                .collect(),
            dir,
            fleet: &world.fleet.file,
            table: &table,
            token: &token,
            exercised: EVACUATED,
        });
    }

    let now = Arc::new(Now {
        line: std::sync::Mutex::new("starting three regions".into()),
        bypass_seen: AtomicBool::new(false),
    });
    let tally = Arc::new(load::Tally::new(REGIONS.len()));
    let stop_load = CancellationToken::new();
    let entries = world
        .regions
        .iter()
        .enumerate()
        .flat_map(|(r, reg)| reg.proxies.iter().map(move |p| (r, p.addrs.public)))
        .collect();
    let clients = load::start(entries, 1, Duration::from_millis(25), tally.clone(), stop_load.clone());
    let stop_view = CancellationToken::new();
    let view = tokio::spawn(view::run(
        world.clone(),
        now.clone(),
        tally.clone(),
        AdminClient::new(Some(token.clone()), Duration::from_secs(2)),
        stop_view.clone(),
    ));

    let played = tokio::select! {
        p = show::run(&world, &now, &tally, dir, opts.duration) => Some(p),
        _ = signalled.cancelled() => None,
    };
    if !opts.keep_running || played.is_none() {
        stop_load.cancel();
        clients.wait().await;
    }
    stop_view.cancel();
    let _ = view.await;
    let Some(played) = played else {
        crate::errln!("error: the demo was stopped before the show ended");
        return 1;
    };
    let code = show::summary(&played, &tally, &now);
    if opts.keep_running {
        crate::outln!("still running, under the same client load; dashboards (Ctrl-C or SIGTERM to stop):");
        for r in &world.regions {
            for p in &r.proxies {
                crate::outln!(
                    "  {:<10} http://{}/   (public http://{})",
                    r.name,
                    p.addrs.admin,
                    p.addrs.public
                );
            }
        }
        crate::outln!("  fleet file {}, with the commands printed at the start", world.fleet.file.display());
        signalled.cancelled().await;
        crate::outln!("stopping: the clients, then every proxy (drained)");
        stop_load.cancel();
        clients.wait().await;
    }
    if let Ok(w) = Arc::try_unwrap(world) {
        w.stop().await;
    }
    code
}
