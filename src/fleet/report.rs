//! The exercise report: one self-contained HTML file (inline CSS and SVG, no script, no
//! font, nothing fetched) that opens from disk with no connection.
//!
//! It leads with the verdict ([`verdict`]) and the shift in three figures (the evacuated
//! region's share before, during the hold, at the end), then three charts ([`chart`],
//! fed by [`series`]): each region's share of the requests the fleet served (the
//! evacuated region's going to 0 and back), requests/s served and the error ratio, with
//! every step marked and the hold shaded; then every step, the peaks and the log.

mod chart;
mod series;
#[cfg(test)]
mod tests;
mod verdict;

use std::collections::BTreeMap;
use std::fmt::Write;

use super::evacuate::journal::Journal;
use crate::vocab::html::esc;
pub use verdict::Verdict;
use verdict::summarize;

fn pct(v: f64) -> String {
    format!("{:.0} %", v * 100.0)
}

/// `us-east-1 served 33 % of the fleet's requests before the first step, 0 % at the
/// lowest during the hold and 33 % at the end.`
fn shift_line(journal: &Journal, region: &str) -> String {
    match series::shift(journal, region) {
        Some((before, during, end)) => {
            let hold =
                during.map(|d| format!(", {} at its lowest during the hold", pct(d))).unwrap_or_default();
            format!(
                "{} served {} of the fleet's requests before the first step{hold} and {} at the end.",
                esc(region),
                pct(before),
                pct(end)
            )
        }
        None => format!("No request was served anywhere while {} was watched.", esc(region)),
    }
}

fn charts(journal: &Journal, region: &str) -> String {
    let times = series::times(journal);
    let markers = series::markers(journal);
    let hold = series::hold(journal);
    let specs = [
        (
            chart::Spec {
                name: "share",
                title: "share of the fleet's served requests, per region",
                y_title: "share of requests (%)",
                scale: 100.0,
                min_top: 100.0,
                fixed_top: Some(100.0),
                region,
            },
            series::share(journal),
        ),
        (
            chart::Spec {
                name: "rps",
                title: "requests per second served, per region",
                y_title: "requests/s (req/s)",
                scale: 1.0,
                min_top: 1.0,
                fixed_top: None,
                region,
            },
            series::rps(journal),
        ),
        (
            chart::Spec {
                name: "errors",
                title: "error ratio of the answers of each region's proxies",
                y_title: "error ratio (% 5xx)",
                scale: 100.0,
                min_top: 1.0,
                fixed_top: None,
                region,
            },
            series::errors(journal),
        ),
    ];
    specs.iter().map(|(spec, s)| chart::render(spec, &times, s, &markers, hold)).collect()
}

fn step_rows(journal: &Journal) -> String {
    let mut steps = String::new();
    for s in &journal.steps {
        let gate: Vec<String> =
            s.gate.iter().map(|(r, e)| format!("{} {:.2} %", esc(r), e * 100.0)).collect();
        let _ = write!(
            steps,
            "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td>{:.1} s</td><td>{:.1} %</td><td>{}</td><td>{}</td></tr>",
            esc(&s.phase),
            s.step,
            s.of,
            s.version,
            s.at,
            s.region_share * 100.0,
            gate.join(", "),
            esc(&summarize(&s.outcome))
        );
    }
    steps
}

fn peak_rows(journal: &Journal) -> String {
    let mut totals: BTreeMap<&String, (f64, f64)> = BTreeMap::new();
    for s in &journal.samples {
        for (r, (rps, err)) in &s.regions {
            let e = totals.entry(r).or_default();
            e.0 = e.0.max(*rps);
            e.1 = e.1.max(*err);
        }
    }
    totals
        .iter()
        .map(|(r, (rps, err))| {
            format!("<tr><td>{}</td><td>{rps:.1}</td><td>{:.2} %</td></tr>", esc(r), err * 100.0)
        })
        .collect()
}

/// The whole report. `verdict` is the run's verdict as text (a [`Verdict`], or a
/// caller's own): a list of proxies that answered alike is said once with a count.
pub fn render(region: &str, verdict: &str, journal: &Journal, started: &str) -> String {
    let verdict = summarize(verdict);
    let notes: String = journal.notes.iter().map(|n| format!("<li>{}</li>", esc(&summarize(n)))).collect();
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>flowgate exercise: {region}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#111;max-width:60rem}}
h1{{font-size:1.4rem}} .verdict{{padding:.5rem 1rem;border-radius:.4rem;display:inline-block;font-weight:600;overflow-wrap:anywhere}}
.pass{{background:#dcfce7;color:#14532d}} .fail{{background:#fee2e2;color:#7f1d1d}} .idle{{background:#fef3c7;color:#78350f}}
table{{border-collapse:collapse;width:100%;margin:1rem 0;font-size:.9rem}} td,th{{border-bottom:1px solid #e5e7eb;padding:.3rem .5rem;text-align:left;overflow-wrap:anywhere}}
.chart-box{{margin:1rem 0}} .chart{{width:100%;height:auto;max-width:760px;display:block}}
.legend{{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;margin:.3rem 0 0;padding:0 0 0 64px;font-size:.85rem}}
.legend span{{white-space:nowrap}} .legend .sw{{display:inline-block;width:1.2em;height:.3em;margin-right:.4em;vertical-align:middle;border-radius:2px}}
</style></head><body>
<h1>Chaos exercise: evacuate and restore {region}</h1>
<p>Started {started}. Verdict: <span id="verdict" class="verdict {cls}">{verdict_text}</span></p>
<p id="shift">{shift}</p>
<h2>Traffic</h2>
{charts}
<h2>Steps</h2>
<table id="steps"><thead><tr><th>phase</th><th>step</th><th>version</th><th>at</th><th>{region} keeps</th><th>gate saw (error ratio)</th><th>outcome</th></tr></thead><tbody>{steps}</tbody></table>
<h2>Peaks per region</h2>
<table><thead><tr><th>region</th><th>max rps</th><th>max error ratio</th></tr></thead><tbody>{peaks}</tbody></table>
<h2>Log</h2><ul>{notes}</ul>
</body></html>
"##,
        cls = Verdict::class_of(&verdict),
        verdict_text = esc(&verdict),
        shift = shift_line(journal, region),
        charts = charts(journal, region),
        steps = step_rows(journal),
        peaks = peak_rows(journal),
        region = esc(region),
        started = esc(started),
    )
}
