//! The evacuation planner: a pure function from the table in force, each region's demand
//! and capacity to the sequence of tables that moves a region's traffic away.
//!
//! Shares are worked out as fractions and written as weights in basis points (each row
//! sums to 10,000), so a row is exact to 0.01 %. The final state sends a region nothing:
//! every row's share for it goes to the other regions in proportion to their spare
//! capacity (`max_utilization × capacity − load`), which by construction keeps every one
//! of them under its limit; the steps interpolate linearly from now to there, so each
//! moves `1/steps` of every row and, loads being linear in the shares, no intermediate
//! step can exceed a limit that the two ends respect. When the spare capacity is short,
//! the planner refuses before anything moves and says, per region, how much capacity to
//! add.

use std::collections::{BTreeMap, BTreeSet};

use crate::table::{Row, Table};

mod evacuated;
pub(crate) use evacuated::evacuated;

/// Weight of a whole row: shares in basis points.
pub(crate) const SCALE: u64 = 10_000;

/// Everything the planner looks at.
#[derive(Debug, Clone)]
pub(crate) struct PlanInput<'a> {
    /// The table in force fleet-wide.
    pub(crate) table: &'a Table,
    /// Client requests per second arriving in each region (its proxies' `source_rps`).
    pub(crate) demand: &'a BTreeMap<String, f64>,
    /// Requests per second each region can serve at 100 %.
    pub(crate) capacity: &'a BTreeMap<String, f64>,
    pub(crate) steps: u32,
    pub(crate) max_utilization: f64,
}

/// A planned sequence of tables.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) tables: Vec<Table>,
    /// Load served by each region now and after the last step (requests per second).
    pub(crate) load_before: BTreeMap<String, f64>,
    pub(crate) load_after: BTreeMap<String, f64>,
    /// Requests per second that change region by the end.
    pub(crate) moved_rps: f64,
    /// Set when only part of the region's traffic fits (a partial evacuation, asked for
    /// with [`EvacuateOptions::partial`]): what would have been needed.
    pub(crate) shortfall: Option<Shortfall>,
}

impl Plan {
    /// The same plan over `base` (the run's claim: the same shares a version or two up,
    /// carrying the operation): every table moves up by as many versions and carries it.
    pub(crate) fn rebased(mut self, from: &Table, base: &Table) -> Plan {
        let up = base.version.saturating_sub(from.version);
        for t in &mut self.tables {
            t.version += up;
            t.operation = base.operation.clone();
        }
        self
    }
}

/// What a partial evacuation left behind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shortfall {
    /// Share of the region's traffic (0 to 1) that stays on it at the end.
    pub(crate) kept_share: f64,
    /// Requests per second that stay.
    pub(crate) kept_rps: f64,
    /// Per receiving region: capacity to add for the whole evacuation to fit.
    pub(crate) missing: BTreeMap<String, f64>,
}

/// How an evacuation may bend.
#[derive(Debug, Clone, Default)]
pub(crate) struct EvacuateOptions {
    /// Regions that must not receive any of the traffic (they are failing themselves).
    pub(crate) avoid: BTreeSet<String>,
    /// When the spare capacity is short, move what fits instead of refusing (the
    /// autopilot in an outage: part of the traffic saved beats none).
    pub(crate) partial: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum PlanError {
    #[error("unknown region `{0}` (not in the fleet file)")]
    UnknownRegion(String),
    #[error("steps must be at least 1")]
    NoSteps,
    #[error("max utilization must be in (0, 1], not {0}")]
    BadUtilization(f64),
    #[error("no other region has capacity to take {0}'s traffic")]
    Alone(String),
    #[error("{}", capacity_message(.needed_rps, .spare_rps, .missing))]
    NotEnoughCapacity {
        /// Requests per second that must move.
        needed_rps: f64,
        /// Spare capacity under the utilization limit, summed over the other regions.
        spare_rps: f64,
        /// Per region: capacity (requests per second at 100 %) to add before trying again.
        missing: BTreeMap<String, f64>,
    },
}

fn capacity_message(needed: &f64, spare: &f64, missing: &BTreeMap<String, f64>) -> String {
    let per: Vec<String> = missing
        .iter()
        .filter(|(_, m)| **m > 0.0)
        .map(|(r, m)| format!("{r} needs {:.0} rps more capacity", m.ceil()))
        .collect();
    format!(
        "not enough capacity: {needed:.0} rps must move but the other regions have {spare:.0} rps spare under the \
         utilization limit; pre-scale: {}",
        per.join(", ")
    )
}

/// A row as fractions; a region without a row serves itself.
pub(crate) fn shares(row: Option<&Row>, source: &str) -> BTreeMap<String, f64> {
    match row {
        Some(r) => {
            let sum: u64 = r.values().sum();
            if sum == 0 {
                return BTreeMap::from([(source.to_owned(), 1.0)]);
            }
            r.iter().map(|(k, w)| (k.clone(), *w as f64 / sum as f64)).collect()
        }
        None => BTreeMap::from([(source.to_owned(), 1.0)]),
    }
}

/// Load each region serves: `sum over sources of demand × share`.
pub(crate) fn loads(
    table: &Table,
    demand: &BTreeMap<String, f64>,
    regions: &BTreeSet<String>,
) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = regions.iter().map(|r| (r.clone(), 0.0)).collect();
    for (src, d) in demand {
        for (t, sh) in shares(table.weights.get(src), src) {
            *out.entry(t).or_insert(0.0) += d * sh;
        }
    }
    out
}

/// Fractions → integer weights summing to `SCALE` (largest remainder, ties by name).
pub(crate) fn to_row(fr: &BTreeMap<String, f64>) -> Row {
    let total: f64 = fr.values().filter(|v| **v > 0.0).sum();
    if total <= 0.0 {
        return Row::new();
    }
    let mut floors: Vec<(String, u64, f64)> = fr
        .iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(k, v)| {
            let exact = v / total * SCALE as f64;
            (k.clone(), exact.floor() as u64, exact - exact.floor())
        })
        .collect();
    let assigned: u64 = floors.iter().map(|f| f.1).sum();
    let mut left = SCALE.saturating_sub(assigned);
    let mut order: Vec<usize> = (0..floors.len()).collect();
    order.sort_by(|&a, &b| floors[b].2.total_cmp(&floors[a].2).then(floors[a].0.cmp(&floors[b].0)));
    for i in order {
        if left == 0 {
            break;
        }
        floors[i].1 += 1;
        left -= 1;
    }
    floors.into_iter().filter(|f| f.1 > 0).map(|f| (f.0, f.1)).collect()
}

fn mix(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>, t: f64) -> BTreeMap<String, f64> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .map(|k| {
            let (x, y) = (a.get(k).copied().unwrap_or(0.0), b.get(k).copied().unwrap_or(0.0));
            (k.clone(), x + (y - x) * t)
        })
        .collect()
}

fn check_input(input: &PlanInput<'_>, region: &str) -> Result<BTreeSet<String>, PlanError> {
    if input.steps == 0 {
        return Err(PlanError::NoSteps);
    }
    if !(input.max_utilization > 0.0 && input.max_utilization <= 1.0) {
        return Err(PlanError::BadUtilization(input.max_utilization));
    }
    if !input.capacity.contains_key(region) {
        return Err(PlanError::UnknownRegion(region.to_owned()));
    }
    Ok(input.capacity.keys().cloned().collect())
}

/// The largest share a step may move, as pushed in `max_shift`: `1/steps` plus the
/// rounding of basis points.
pub(crate) fn step_shift(steps: u32) -> f64 {
    (1.0 / steps as f64 + 0.001).min(1.0)
}

/// Plans the evacuation of `region`.
#[cfg(test)]
pub(crate) fn evacuate(input: &PlanInput<'_>, region: &str) -> Result<Plan, PlanError> {
    evacuate_with(input, region, &EvacuateOptions::default())
}

/// Plans the evacuation of `region`, with the regions to avoid and whether a shortfall
/// of capacity may leave part of the traffic behind.
pub(crate) fn evacuate_with(
    input: &PlanInput<'_>,
    region: &str,
    opts: &EvacuateOptions,
) -> Result<Plan, PlanError> {
    let regions = check_input(input, region)?;
    let others: Vec<&String> = regions.iter().filter(|r| *r != region && !opts.avoid.contains(*r)).collect();
    if others.is_empty() {
        return Err(PlanError::Alone(region.to_owned()));
    }
    let load_before = loads(input.table, input.demand, &regions);
    let moving = load_before.get(region).copied().unwrap_or(0.0);
    let spare: BTreeMap<&String, f64> = others
        .iter()
        .map(|r| {
            let limit = input.max_utilization * input.capacity.get(*r).copied().unwrap_or(0.0);
            (*r, (limit - load_before.get(*r).copied().unwrap_or(0.0)).max(0.0))
        })
        .collect();
    let spare_total: f64 = spare.values().sum();
    // The fraction of the region's shares that moves: all of it, unless it does not fit
    // and a partial move was asked for.
    let mut fraction = 1.0;
    let mut shortfall = None;
    if moving > spare_total * (1.0 + 1e-9) + 1e-9 || spare_total <= 0.0 {
        if moving <= 0.0 && spare_total <= 0.0 {
            // Nothing to move and nowhere to move it: shares still go to the others,
            // in proportion to capacity.
        } else {
            let cap_total: f64 = others.iter().map(|r| input.capacity.get(*r).copied().unwrap_or(0.0)).sum();
            let missing: BTreeMap<String, f64> = others
                .iter()
                .map(|r| {
                    let c = input.capacity.get(*r).copied().unwrap_or(0.0);
                    let share = if cap_total > 0.0 { c / cap_total } else { 1.0 / others.len() as f64 };
                    let needed = (load_before.get(*r).copied().unwrap_or(0.0) + moving * share)
                        / input.max_utilization;
                    ((*r).clone(), (needed - c).max(0.0))
                })
                .collect();
            if !opts.partial || spare_total <= 0.0 {
                return Err(PlanError::NotEnoughCapacity {
                    needed_rps: moving,
                    spare_rps: spare_total,
                    missing,
                });
            }
            fraction = (spare_total / moving).clamp(0.0, 1.0);
            shortfall =
                Some(Shortfall { kept_share: 1.0 - fraction, kept_rps: moving - spare_total, missing });
        }
    }
    // Where the region's shares go: in proportion to spare capacity (or to capacity when
    // no traffic moves and nothing is spare, which only happens with zero demand).
    let weights: BTreeMap<String, f64> = if spare_total > 0.0 {
        spare.iter().map(|(r, s)| ((*r).clone(), s / spare_total)).collect()
    } else {
        let cap_total: f64 = others.iter().map(|r| input.capacity[*r]).sum();
        others.iter().map(|r| ((*r).clone(), input.capacity[*r] / cap_total)).collect()
    };
    let away = |row: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        let e = row.get(region).copied().unwrap_or(0.0);
        let mut out: BTreeMap<String, f64> =
            row.iter().filter(|(k, _)| *k != region).map(|(k, v)| (k.clone(), *v)).collect();
        for (r, w) in &weights {
            *out.entry(r.clone()).or_insert(0.0) += e * fraction * w;
        }
        if fraction < 1.0 {
            out.insert(region.to_owned(), e * (1.0 - fraction));
        }
        out
    };
    let base = input.table.version;
    let steps = input.steps;
    // Rows that send the region anything: its own (explicit or implicit) and any other.
    let sources: BTreeSet<String> = regions
        .iter()
        .filter(|s| shares(input.table.weights.get(*s), s).get(region).copied().unwrap_or(0.0) > 0.0)
        .cloned()
        .collect();
    let mut tables = Vec::with_capacity(steps as usize);
    for k in 1..=steps {
        let t = k as f64 / steps as f64;
        let mut next = input.table.clone();
        next.version = base + k as u64;
        next.note = Some(format!("evacuate {region}: step {k} of {steps} (from version {base})"));
        next.max_shift = Some(step_shift(steps));
        for src in &sources {
            let now = shares(input.table.weights.get(src), src);
            next.weights.insert(src.clone(), to_row(&mix(&now, &away(&now), t)));
        }
        for rows in next.origins.values_mut() {
            let srcs: Vec<String> = rows.keys().cloned().collect();
            for src in srcs {
                let now = shares(rows.get(&src), &src);
                if now.get(region).copied().unwrap_or(0.0) > 0.0 {
                    rows.insert(src, to_row(&mix(&now, &away(&now), t)));
                }
            }
        }
        tables.push(next);
    }
    let load_after =
        tables.last().map(|t| loads(t, input.demand, &regions)).unwrap_or_else(|| load_before.clone());
    Ok(Plan { tables, load_before, load_after, moved_rps: moving * fraction, shortfall })
}

/// Plans the ramp from the table in force back to `target` (the shares before an
/// evacuation), with the same capacity rule at the end state.
pub(crate) fn restore(input: &PlanInput<'_>, region: &str, target: &Table) -> Result<Plan, PlanError> {
    let regions = check_input(input, region)?;
    let load_before = loads(input.table, input.demand, &regions);
    let load_after = loads(target, input.demand, &regions);
    let mut missing = BTreeMap::new();
    for r in &regions {
        let limit = input.max_utilization * input.capacity.get(r).copied().unwrap_or(0.0);
        let after = load_after.get(r).copied().unwrap_or(0.0);
        let before = load_before.get(r).copied().unwrap_or(0.0);
        // Only a region that gains load can be pushed over its limit by the restore.
        if after > before && after > limit {
            missing.insert(
                r.clone(),
                after / input.max_utilization - input.capacity.get(r).copied().unwrap_or(0.0),
            );
        }
    }
    if !missing.is_empty() {
        let needed: f64 = missing.values().sum();
        return Err(PlanError::NotEnoughCapacity { needed_rps: needed, spare_rps: 0.0, missing });
    }
    let base = input.table.version;
    let steps = input.steps;
    let sources: BTreeSet<String> =
        input.table.weights.keys().chain(target.weights.keys()).cloned().collect();
    let mut tables = Vec::with_capacity(steps as usize);
    for k in 1..=steps {
        let t = k as f64 / steps as f64;
        let mut next = if k == steps { target.clone() } else { input.table.clone() };
        next.version = base + k as u64;
        next.note = Some(format!(
            "restore {region}: step {k} of {steps} (to the shares of version {})",
            target.version
        ));
        next.max_shift = Some(step_shift(steps));
        if k < steps {
            for src in &sources {
                let a = shares(input.table.weights.get(src), src);
                let b = shares(target.weights.get(src), src);
                next.weights.insert(src.clone(), to_row(&mix(&a, &b, t)));
            }
            next.origins = target.origins.clone();
            if !input.table.origins.is_empty() || !target.origins.is_empty() {
                for (origin, rows) in next.origins.iter_mut() {
                    for (src, row) in rows.iter_mut() {
                        let a = input.table.origins.get(origin).and_then(|r| r.get(src));
                        let a = shares(a.or_else(|| input.table.weights.get(src)), src);
                        let b = shares(Some(&*row), src);
                        *row = to_row(&mix(&a, &b, t));
                    }
                }
            }
        }
        tables.push(next);
    }
    let moved_rps = regions
        .iter()
        .map(|r| {
            (load_after.get(r).copied().unwrap_or(0.0) - load_before.get(r).copied().unwrap_or(0.0)).max(0.0)
        })
        .sum();
    Ok(Plan { tables, load_before, load_after, moved_rps, shortfall: None })
}

#[cfg(test)]
mod tests;
