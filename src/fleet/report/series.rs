//! What the report's charts draw, read out of a journal: per region series over the
//! run's samples, the step markers and the hold.

use std::collections::BTreeSet;

use crate::fleet::evacuate::journal::{Journal, Sample};

/// One region's values at the journal's sample times (`None`: nothing to say then, e.g.
/// a share while the fleet served nothing).
pub(super) struct Series {
    pub(super) region: String,
    pub(super) values: Vec<Option<f64>>,
}

/// What a chart's marker stands for: a step pushed, or the hold beginning.
pub(super) struct Marker {
    pub(super) at: f64,
    pub(super) label: String,
    /// `step`, `hold` or `restore` (a phase other than evacuate or restore: its name).
    pub(super) kind: String,
}

/// Every region a sample names, in name order (the colors follow it).
pub(super) fn regions(journal: &Journal) -> Vec<String> {
    let names: BTreeSet<&String> =
        journal.samples.iter().flat_map(|s| s.regions.keys().chain(s.served.keys())).collect();
    names.into_iter().cloned().collect()
}

pub(super) fn times(journal: &Journal) -> Vec<f64> {
    journal.samples.iter().map(|s| s.at).collect()
}

/// What the region's origins served, or, in a sample without those figures, what its
/// proxies answered.
fn served(s: &Sample, region: &str) -> Option<f64> {
    if s.served.is_empty() { s.regions.get(region).map(|v| v.0) } else { s.served.get(region).map(|v| v.0) }
}

fn each(journal: &Journal, value: impl Fn(&Sample, &str) -> Option<f64>) -> Vec<Series> {
    regions(journal)
        .into_iter()
        .map(|r| Series { values: journal.samples.iter().map(|s| value(s, &r)).collect(), region: r })
        .collect()
}

/// Each region's share (0 to 1) of the requests the fleet served.
pub(super) fn share(journal: &Journal) -> Vec<Series> {
    let names = regions(journal);
    each(journal, |s, r| {
        let total: f64 = names.iter().filter_map(|n| served(s, n)).sum();
        (total > 0.0).then(|| served(s, r).unwrap_or(0.0) / total)
    })
}

/// Requests/s each region served.
pub(super) fn rps(journal: &Journal) -> Vec<Series> {
    each(journal, served)
}

/// The error ratio (0 to 1) of what each region's proxies answered: what its clients saw.
pub(super) fn errors(journal: &Journal) -> Vec<Series> {
    each(journal, |s, r| s.regions.get(r).map(|v| v.1))
}

/// The hold: from the evacuation's last step to the restore's first push (or the last
/// sample when no restore began). `None` when the evacuation did not finish.
pub(super) fn hold(journal: &Journal) -> Option<(f64, f64)> {
    let done = journal.steps.iter().rposition(|s| s.phase == "evacuate" && s.step == s.of)?;
    let from = journal.steps[done].at;
    let to = journal
        .steps
        .iter()
        .enumerate()
        .skip(done + 1)
        .find(|(_, s)| s.phase == "restore")
        .map(|(i, _)| journal.step_pushed_at(i))
        .or_else(|| journal.samples.last().map(|s| s.at))
        .unwrap_or(from);
    (to > from).then_some((from, to))
}

/// A marker at each step's push (`step 2/3`, `restore 1/3`) and one where the hold begins.
pub(super) fn markers(journal: &Journal) -> Vec<Marker> {
    let mut out: Vec<Marker> = journal
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (kind, label) = match s.phase.as_str() {
                "evacuate" => ("step".to_owned(), format!("step {}/{}", s.step, s.of)),
                phase => (phase.to_owned(), format!("{phase} {}/{}", s.step, s.of)),
            };
            Marker { at: journal.step_pushed_at(i), label, kind }
        })
        .collect();
    if let Some((from, _)) = hold(journal) {
        out.push(Marker { at: from, label: "hold".to_owned(), kind: "hold".to_owned() });
    }
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

/// `region`'s share before the first step, at its lowest during the hold, and at the
/// end: the shift in three figures.
pub(super) fn shift(journal: &Journal, region: &str) -> Option<(f64, Option<f64>, f64)> {
    let shares = share(journal);
    let series = shares.iter().find(|s| s.region == region)?;
    let first_push = (!journal.steps.is_empty()).then(|| journal.step_pushed_at(0));
    let points: Vec<(f64, f64)> =
        times(journal).into_iter().zip(&series.values).filter_map(|(t, v)| v.map(|v| (t, v))).collect();
    let before =
        points.iter().take_while(|(t, _)| first_push.is_none_or(|p| *t < p)).last().or(points.first())?;
    let during = hold(journal).and_then(|(from, to)| {
        points.iter().filter(|(t, _)| *t >= from && *t <= to).map(|(_, v)| *v).reduce(f64::min)
    });
    let end = points.last()?;
    Some((before.1, during, end.1))
}
