//! The exercise report: one self-contained HTML file (inline CSS and SVG, no script, no
//! font, nothing fetched) that opens from disk with no connection.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::evacuate::journal::Journal;
use crate::vocab::html::esc;

const COLORS: [&str; 6] = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

/// An SVG line chart of one value per region over time.
fn chart(journal: &Journal, title: &str, pick: impl Fn((f64, f64)) -> f64, unit: &str) -> String {
    let (w, h, pad) = (760.0, 220.0, 40.0);
    let regions: BTreeSet<&String> = journal.samples.iter().flat_map(|s| s.regions.keys()).collect();
    let t_max = journal.samples.last().map(|s| s.at).unwrap_or(1.0).max(1.0);
    let v_max = journal
        .samples
        .iter()
        .flat_map(|s| s.regions.values().map(|v| pick(*v)))
        .fold(0.0f64, f64::max)
        .max(if unit == "%" { 1.0 } else { 1e-9 });
    let x = |t: f64| pad + t / t_max * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / v_max * (h - 2.0 * pad);
    let mut svg = format!(
        r##"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{title}"><title>{title}</title>
<rect x="{pad}" y="{pad}" width="{}" height="{}" fill="none" stroke="#ccc"/>
<text x="{pad}" y="{}" font-size="12">{title}</text>
<text x="4" y="{}" font-size="10">{:.1}{unit}</text><text x="4" y="{}" font-size="10">0</text>
<text x="{}" y="{}" font-size="10" text-anchor="end">{t_max:.0} s</text>"##,
        w - 2.0 * pad,
        h - 2.0 * pad,
        pad - 8.0,
        pad + 4.0,
        v_max,
        h - pad,
        w - pad,
        h - pad + 14.0
    );
    for step in &journal.steps {
        let sx = x(step.at);
        let _ = write!(
            svg,
            r##"<line x1="{sx:.1}" y1="{pad}" x2="{sx:.1}" y2="{}" stroke="#999" stroke-dasharray="3,3"/>"##,
            h - pad
        );
    }
    for (i, r) in regions.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = journal
            .samples
            .iter()
            .filter_map(|s| s.regions.get(*r).map(|v| format!("{:.1},{:.1}", x(s.at), y(pick(*v)))))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><text x="{}" y="{}" font-size="11" fill="{color}">{}</text>"#,
            points.join(" "),
            w - pad - 120.0,
            pad + 14.0 + 14.0 * i as f64,
            esc(r)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The whole report.
pub fn render(region: &str, verdict: &str, journal: &Journal, started: &str) -> String {
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
            esc(&s.outcome)
        );
    }
    let notes: String = journal.notes.iter().map(|n| format!("<li>{}</li>", esc(n))).collect();
    let mut totals: BTreeMap<&String, (f64, f64)> = BTreeMap::new();
    for s in &journal.samples {
        for (r, (rps, err)) in &s.regions {
            let e = totals.entry(r).or_default();
            e.0 = e.0.max(*rps);
            e.1 = e.1.max(*err);
        }
    }
    let peaks: String = totals
        .iter()
        .map(|(r, (rps, err))| {
            format!("<tr><td>{}</td><td>{rps:.1}</td><td>{:.2} %</td></tr>", esc(r), err * 100.0)
        })
        .collect();
    let ok = verdict.starts_with("pass");
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>flowgate exercise: {region}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#111;max-width:60rem}}
h1{{font-size:1.4rem}} .verdict{{padding:.5rem 1rem;border-radius:.4rem;display:inline-block;font-weight:600}}
.pass{{background:#dcfce7;color:#14532d}} .fail{{background:#fee2e2;color:#7f1d1d}}
table{{border-collapse:collapse;width:100%;margin:1rem 0;font-size:.9rem}} td,th{{border-bottom:1px solid #e5e7eb;padding:.3rem .5rem;text-align:left}}
.chart{{width:100%;height:auto;max-width:760px;display:block;margin:1rem 0}}
</style></head><body>
<h1>Chaos exercise: evacuate and restore {region}</h1>
<p>Started {started}. Verdict: <span id="verdict" class="verdict {cls}">{verdict}</span></p>
<h2>Traffic</h2>
{rps}
{err}
<h2>Steps</h2>
<table id="steps"><thead><tr><th>phase</th><th>step</th><th>version</th><th>at</th><th>{region} keeps</th><th>gate saw (error ratio)</th><th>outcome</th></tr></thead><tbody>{steps}</tbody></table>
<h2>Peaks per region</h2>
<table><thead><tr><th>region</th><th>max rps</th><th>max error ratio</th></tr></thead><tbody>{peaks}</tbody></table>
<h2>Log</h2><ul>{notes}</ul>
</body></html>
"##,
        region = esc(region),
        started = esc(started),
        cls = if ok { "pass" } else { "fail" },
        verdict = esc(verdict),
        rps = chart(journal, "requests per second by region", |v| v.0, ""),
        err = chart(journal, "error ratio by region", |v| v.1 * 100.0, "%"),
    )
}
