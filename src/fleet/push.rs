//! `flowgate push`: one table to every proxy at once, and what each one answered.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::FleetFile;
use super::client::{AdminClient, PutOutcome};
use super::resolve;
use crate::table::Table;

/// One proxy of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proxy {
    pub region: String,
    pub addr: String,
}

/// Every proxy of every region, `dns:` entries expanded now.
pub async fn proxies(fleet: &FleetFile) -> Result<Vec<Proxy>, String> {
    let mut out = Vec::new();
    for (region, r) in &fleet.regions {
        for addr in resolve::expand(&r.admin).await.map_err(|e| format!("regions.{region}.admin: {e}"))? {
            out.push(Proxy { region: region.clone(), addr });
        }
    }
    Ok(out)
}

/// What one proxy answered to a push.
#[derive(Debug, Clone, Serialize)]
pub struct PushResult {
    pub region: String,
    pub addr: String,
    /// The version it had before, when its answer says.
    pub before: Option<u64>,
    /// The version it has now, when its answer says.
    pub after: Option<u64>,
    /// `applied`, `unchanged`, `refused` or `unreachable`.
    pub answer: &'static str,
    pub detail: String,
    pub millis: u128,
}

impl PushResult {
    /// Applied it, or already had it.
    pub fn ok(&self) -> bool {
        self.answer == "applied" || self.answer == "unchanged"
    }
}

/// Pushes `table` to every proxy in parallel.
pub async fn push(client: &AdminClient, proxies: &[Proxy], table: &Table) -> Vec<PushResult> {
    let work = proxies.iter().map(|p| async move {
        let t0 = Instant::now();
        let result = client.put_table(&p.addr, table).await;
        let (before, after, answer, detail) = match result {
            Ok(PutOutcome::Applied { version, previous }) => {
                (Some(previous), Some(version), "applied", String::new())
            }
            Ok(PutOutcome::Unchanged { version }) => {
                (Some(version), Some(version), "unchanged", String::new())
            }
            Ok(PutOutcome::Refused { status, body }) => {
                let current = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("current_version").and_then(|c| c.as_u64()));
                (current, current, "refused", format!("{status}: {}", one_line(&body)))
            }
            Err(e) => (None, None, "unreachable", e.to_string()),
        };
        PushResult {
            region: p.region.clone(),
            addr: p.addr.clone(),
            before,
            after,
            answer,
            detail,
            millis: t0.elapsed().as_millis(),
        }
    });
    futures_util::future::join_all(work).await
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table for people.
pub fn render(results: &[PushResult]) -> String {
    let mut out = format!(
        "{:<14} {:<24} {:>7} {:>7} {:<11} {:>6}  detail\n",
        "region", "proxy", "before", "after", "answer", "ms"
    );
    for r in results {
        let v = |x: Option<u64>| x.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<14} {:<24} {:>7} {:>7} {:<11} {:>6}  {}\n",
            r.region,
            r.addr,
            v(r.before),
            v(r.after),
            r.answer,
            r.millis,
            r.detail
        ));
    }
    out
}

/// Pushes and, on failure, names every proxy that did not take the table.
pub async fn push_all(
    client: &AdminClient,
    proxies: &[Proxy],
    table: &Table,
) -> Result<Vec<PushResult>, (Vec<PushResult>, String)> {
    let results = push(client, proxies, table).await;
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{} ({}): {} {}", r.addr, r.region, r.answer, r.detail))
        .collect();
    if failed.is_empty() {
        Ok(results)
    } else {
        let why = format!(
            "{} of {} proxies did not apply version {}: {}",
            failed.len(),
            results.len(),
            table.version,
            failed.join("; ")
        );
        Err((results, why))
    }
}

/// The default per-proxy timeout of the fleet commands.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
