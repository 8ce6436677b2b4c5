//! The demo's terminal view: redrawn once a second on a terminal, one log line a second
//! otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::load::Tally;
use super::world::World;
use super::{Now, REGIONS};
use crate::fleet::client::AdminClient;
use crate::wire::Status;

struct Row {
    name: &'static str,
    serving: f64,
    share: f64,
    errors: u64,
    health: &'static str,
    bypass: bool,
    version: u64,
}

pub(crate) async fn run(
    world: Arc<World>,
    now: Arc<Now>,
    tally: Arc<Tally>,
    client: AdminClient,
    stop: CancellationToken,
) {
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last: Vec<u64> = world.regions.iter().map(|r| r.origin.served.load(Ordering::Relaxed)).collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if crate::out::stdout_gone() {
            // Nobody reads the view any more: the show goes on without it.
            continue;
        }
        // One status per proxy, read concurrently: the view must not lag the demo.
        let mut statuses: Vec<Vec<Option<Status>>> = Vec::new();
        for r in &world.regions {
            let reads = r.proxies.iter().map(|p| {
                let (client, addr) = (client.clone(), p.addrs.admin.to_string());
                async move { client.status(&addr, 5).await.ok() }
            });
            statuses.push(futures_util::future::join_all(reads).await);
        }
        let served: Vec<u64> =
            world.regions.iter().map(|r| r.origin.served.load(Ordering::Relaxed)).collect();
        let rates: Vec<f64> = served.iter().zip(&last).map(|(a, b)| a.saturating_sub(*b) as f64).collect();
        last = served;
        let total: f64 = rates.iter().sum();
        let rows: Vec<Row> = REGIONS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                // Health and bypass as the *other* regions' proxies see this one.
                let others = statuses
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, v)| v.iter().flatten());
                let views: Vec<_> = others.filter_map(|s| s.targets.get(*name)).collect();
                let healthy = views.iter().all(|t| t.healthy);
                Row {
                    name,
                    serving: rates[i],
                    share: if total > 0.0 { rates[i] / total } else { 0.0 },
                    errors: tally.errors[i].load(Ordering::Relaxed),
                    health: if healthy { "ok" } else { "DOWN" },
                    bypass: views.iter().any(|t| t.bypass_active),
                    version: statuses[i].iter().flatten().map(|s| s.table_version).max().unwrap_or(0),
                }
            })
            .collect();
        let (ok, errors) = tally.total();
        let line = now.get();
        let t = started.elapsed().as_secs();
        if tty {
            let mut s = String::from("\x1b[2J\x1b[H");
            s.push_str(&format!("flowgate demo  t={t:>3}s  requests {}  errors {errors}\n\n", ok + errors));
            s.push_str(&format!(
                "{:<11} {:>9} {:>7} {:>14} {:>7} {:>7} {:>7}\n",
                "region", "serving/s", "share", "client errors", "health", "bypass", "table"
            ));
            for r in &rows {
                let bar = "#".repeat((r.share * 20.0).round() as usize);
                s.push_str(&format!(
                    "{:<11} {:>9.0} {:>6.0}% {:>14} {:>7} {:>7} {:>7}  {bar}\n",
                    r.name,
                    r.serving,
                    r.share * 100.0,
                    r.errors,
                    r.health,
                    if r.bypass { "ON" } else { "-" },
                    format!("v{}", r.version)
                ));
            }
            s.push_str(&format!("\nnow: {line}\n"));
            crate::out!("{s}");
        } else {
            let parts: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{} {:.0}/s {:.0}% v{}{}",
                        r.name,
                        r.serving,
                        r.share * 100.0,
                        r.version,
                        if r.bypass { " bypass" } else { "" }
                    )
                })
                .collect();
            crate::outln!("t={t}s requests={} errors={errors} | {} | {line}", ok + errors, parts.join(" | "));
        }
    }
}
