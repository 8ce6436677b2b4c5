//! `flowgate push`: one table to every proxy at once, and what each one answered.

use std::time::Instant;

use serde::Serialize;

use super::FleetFile;
use super::client::{AdminClient, PutOutcome};
use super::resolve;
use crate::table::Table;

/// One proxy of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Proxy {
    pub(crate) region: String,
    pub(crate) addr: String,
    /// Set when the region's `dns:` entry did not resolve: `addr` is the entry, and this
    /// is why there is no proxy behind it (it counts as one that does not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unresolved: Option<String>,
}

/// Every proxy of every region, `dns:` entries expanded now.
pub(crate) async fn proxies(fleet: &FleetFile) -> Result<Vec<Proxy>, String> {
    let mut out = Vec::new();
    for (region, r) in &fleet.regions {
        for addr in resolve::expand(&r.admin).await.map_err(|e| format!("regions.{region}.admin: {e}"))? {
            out.push(Proxy { region: region.clone(), addr, unresolved: None });
        }
    }
    Ok(out)
}

/// Like [`proxies`], but a region whose names do not resolve (its DNS is down with it,
/// or it has no ready pod) stays in the list as one proxy that does not answer, instead
/// of blinding the caller to the whole fleet: an outage's evacuation and the autopilot
/// must see the other regions exactly then.
pub(crate) async fn proxies_or_unresolved(fleet: &FleetFile) -> Vec<Proxy> {
    let mut out = Vec::new();
    for (region, r) in &fleet.regions {
        for entry in &r.admin {
            match resolve::expand(std::slice::from_ref(entry)).await {
                Ok(addrs) => out.extend(addrs.into_iter().map(|addr| Proxy {
                    region: region.clone(),
                    addr,
                    unresolved: None,
                })),
                Err(e) => out.push(Proxy {
                    region: region.clone(),
                    addr: entry.clone(),
                    unresolved: Some(format!("regions.{region}.admin: {e}")),
                }),
            }
        }
    }
    out
}

/// What one proxy answered to a push.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PushResult {
    pub(crate) region: String,
    pub(crate) addr: String,
    /// The version it had before, when its answer says.
    pub(crate) before: Option<u64>,
    /// The version it has now, when its answer says.
    pub(crate) after: Option<u64>,
    /// `applied`, `unchanged`, `refused`, `moved` (a conditional push found another
    /// version in force) or `unreachable`.
    pub(crate) answer: &'static str,
    pub(crate) detail: String,
    pub(crate) millis: u128,
    /// Refused with 401 or 403: the token, not the table, is at fault.
    #[serde(skip)]
    pub(crate) unauthorized: bool,
}

impl PushResult {
    /// Applied it, or already had it.
    pub(crate) fn ok(&self) -> bool {
        self.answer == "applied" || self.answer == "unchanged"
    }
}

/// One line for a push some proxies refused for the token, naming the first of them and
/// the variable to set: a wrong token is the same fault at every proxy, said once.
pub(crate) fn auth_refusal(results: &[PushResult]) -> Option<String> {
    let refused: Vec<&PushResult> = results.iter().filter(|r| r.unauthorized).collect();
    let first = refused.first()?;
    let mut line = format!("proxy {} ({}): {}", first.addr, first.region, first.detail);
    if refused.len() > 1 {
        line.push_str(&format!(" ({} of {} proxies refused it)", refused.len(), results.len()));
    }
    Some(line)
}

/// Pushes `table` to every proxy in parallel.
pub(crate) async fn push(client: &AdminClient, proxies: &[Proxy], table: &Table) -> Vec<PushResult> {
    push_if(client, proxies, table, None).await
}

/// Pushes `table` to every proxy in parallel, each only over version `if_match` when
/// given (a proxy elsewhere answers `moved`).
pub(crate) async fn push_if(
    client: &AdminClient,
    proxies: &[Proxy],
    table: &Table,
    if_match: Option<u64>,
) -> Vec<PushResult> {
    let work = proxies.iter().map(|p| async move {
        let t0 = Instant::now();
        let result = match &p.unresolved {
            Some(why) => {
                Err(super::client::ClientError::Connect { addr: p.addr.clone(), message: why.clone() })
            }
            None => client.put_table_if(&p.addr, table, if_match).await,
        };
        let mut unauthorized = false;
        let (before, after, answer, detail) = match result {
            Ok(PutOutcome::Applied { version, previous }) => {
                (Some(previous), Some(version), "applied", String::new())
            }
            Ok(PutOutcome::Unchanged { version }) => {
                (Some(version), Some(version), "unchanged", String::new())
            }
            Ok(PutOutcome::Refused { status, body }) => match client.auth_refused(status) {
                Some(why) => {
                    unauthorized = true;
                    (None, None, "refused", why)
                }
                None => {
                    let current = serde_json::from_str::<crate::wire::Refusal>(&body)
                        .ok()
                        .and_then(|r| r.current_version);
                    let answer = if status == 412 { "moved" } else { "refused" };
                    (current, current, answer, format!("{status}: {}", one_line(&body)))
                }
            },
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
            unauthorized,
        }
    });
    futures_util::future::join_all(work).await
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table for people.
pub(crate) fn render(results: &[PushResult]) -> String {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_region_that_does_not_resolve_stays_listed_as_unreachable() {
        let text = r#"
[regions.a]
admin = ["127.0.0.1:1"]
capacity_rps = 10
[regions.b]
admin = ["dns:no-such-name.invalid:9901"]
capacity_rps = 10
"#;
        let fleet = FleetFile::parse(std::path::Path::new("fleet.toml"), text).unwrap();
        assert!(proxies(&fleet).await.is_err(), "the strict listing refuses");
        let listed = proxies_or_unresolved(&fleet).await;
        assert_eq!(listed.len(), 2, "{listed:?}");
        let b = listed.iter().find(|p| p.region == "b").unwrap();
        assert!(b.unresolved.as_deref().unwrap_or("").contains("regions.b.admin"), "{b:?}");
        let client = AdminClient::new(None, Duration::from_millis(300));
        let st = super::super::status::gather(&client, &listed, 10).await;
        assert_eq!(st.regions["b"].proxies, 1);
        assert_eq!(st.regions["b"].reachable, 0);
        let r = push(&client, &listed, &Table::local_only()).await;
        let rb = r.iter().find(|x| x.region == "b").unwrap();
        assert_eq!(rb.answer, "unreachable");
        assert!(rb.detail.contains("no-such-name.invalid"), "{rb:?}");
    }
}
