//! What an operator gets to drive the demo's fleet by hand (`demo --keep-running`): the
//! fleet file (the contract's format, the real addresses), a table to push, and the exact
//! commands, printed before the show so the dashboards can be watched while it runs.
//!
//! The printed lines are found by scripts and tests, so their shape is fixed:
//! `dashboard REGION X: http://ADDR/` (X = a, b, ... per proxy), `public REGION X: http://ADDR/`,
//! `fleet file: PATH`, `table file: PATH`, `admin token: TOKEN`, `demo folder: PATH`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use crate::server::BoundAddrs;

/// The fleet file for `regions` (name, every proxy's admin address), each able to serve
/// `capacity_rps`.
pub(crate) fn fleet_toml(regions: &[(&str, Vec<SocketAddr>)], capacity_rps: f64) -> String {
    let mut s = String::from(
        "# The fleet of `flowgate demo`: every proxy's admin address, and what each region\n\
         # can serve (the capacity the demo's own evacuation plans with).\n\
         token_env = \"FLOWGATE_ADMIN_TOKEN\"\n",
    );
    for (name, admins) in regions {
        let admins: Vec<String> = admins.iter().map(|a| format!("\"{a}\"")).collect();
        let _ =
            write!(s, "\n[regions.{name}]\nadmin = [{}]\ncapacity_rps = {capacity_rps}\n", admins.join(", "));
    }
    s
}

/// A table for `push` that keeps the state the show ends in (`evacuated` served by the
/// other regions, the others serving their own clients). Its version is `version`: the
/// seconds since the epoch at the demo's start, above any version the show pushes.
pub(crate) fn table_json(regions: &[&str], evacuated: &str, version: u64) -> String {
    let mut weights = serde_json::Map::new();
    for name in regions {
        let row: serde_json::Map<String, serde_json::Value> = if *name == evacuated {
            regions.iter().filter(|r| *r != name).map(|r| ((*r).to_owned(), 50.into())).collect()
        } else {
            [((*name).to_owned(), 100.into())].into_iter().collect()
        };
        weights.insert((*name).to_owned(), row.into());
    }
    let table = serde_json::json!({
        "version": version,
        "weights": weights,
        "note": format!("pushed by hand: {evacuated} stays evacuated, the others serve their own clients"),
    });
    serde_json::to_string_pretty(&table).unwrap_or_default() + "\n"
}

/// `path` as one shell word.
fn shell(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What an operator is told about the running fleet.
pub(crate) struct Handoff<'a> {
    /// Each region's proxies, in the order of the fleet file.
    pub(crate) regions: Vec<(&'a str, Vec<BoundAddrs>)>,
    pub(crate) dir: &'a Path,
    pub(crate) fleet: &'a Path,
    pub(crate) table: &'a Path,
    pub(crate) token: &'a str,
    /// The region the suggested `evacuate` and `exercise` move.
    pub(crate) exercised: &'a str,
}

/// Everything an operator needs, printed before the show.
pub(crate) fn print_start(h: &Handoff<'_>) {
    let Handoff { dir, token, table, exercised, .. } = *h;
    crate::outln!(
        "flowgate demo: the fleet stays up after the show, under the same load, until Ctrl-C or SIGTERM"
    );
    for (name, proxies) in &h.regions {
        for (i, p) in proxies.iter().enumerate() {
            let x = char::from(b'a' + (i % 26) as u8);
            crate::outln!("dashboard {name} {x}: http://{}/", p.admin);
            crate::outln!("public {name} {x}: http://{}/", p.public);
        }
    }
    let fleet = shell(h.fleet);
    crate::outln!("demo folder: {}", dir.display());
    crate::outln!("fleet file: {}", h.fleet.display());
    crate::outln!("table file: {}", table.display());
    crate::outln!("admin token: {token}");
    crate::outln!("try, in another shell (status at any time; the others once the show has ended):");
    crate::outln!("  export FLOWGATE_ADMIN_TOKEN={token}");
    crate::outln!("  flowgate status --fleet {fleet}");
    crate::outln!("  flowgate push --fleet {fleet} {}", shell(table));
    crate::outln!("  flowgate evacuate {exercised} --fleet {fleet} --dry-run");
    crate::outln!(
        "  flowgate exercise {exercised} --fleet {fleet} --steps 3 --interval 5s --hold 10s --report {}",
        shell(&dir.join("exercise.html"))
    );
}

#[cfg(test)]
mod tests;
