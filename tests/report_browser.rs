//! The exercise report: written to a file by
//! `flowgate::fleet::report::render`, it opens in headless Chromium with no network and
//! shows its charts and every step.

mod browser;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use flowgate::fleet::evacuate::journal::{Journal, Sample, StepRecord};
use serde_json::{Value, json};

const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "us-west-2"];

/// An evacuation of us-east-1 in 3 steps, a hold, a restore in 3 steps, with samples
/// every 2 s: us-east-1's rate falls to zero and comes back, the others take it.
fn journal() -> Journal {
    let mut j = Journal::default();
    let mut steps = Vec::new();
    for (i, (phase, step, share)) in [
        ("evacuate", 1, 2.0 / 3.0),
        ("evacuate", 2, 1.0 / 3.0),
        ("evacuate", 3, 0.0),
        ("restore", 1, 1.0 / 3.0),
        ("restore", 2, 2.0 / 3.0),
        ("restore", 3, 1.0),
    ]
    .into_iter()
    .enumerate()
    {
        let at = 6.0 + 8.0 * i as f64 + if phase == "restore" { 10.0 } else { 0.0 };
        steps.push(StepRecord {
            phase: phase.to_owned(),
            step,
            of: 3,
            version: 2 + i as u64,
            at,
            region_share: share,
            outcome: "ok".to_owned(),
            rule: "receiving-regions-ok".to_owned(),
            unreached: Vec::new(),
            ignored: Vec::new(),
            gate: REGIONS.iter().map(|r| (r.to_string(), 0.001 * i as f64)).collect(),
        });
    }
    let share_at = |t: f64| steps.iter().rev().find(|s| s.at <= t).map(|s| s.region_share).unwrap_or(1.0);
    for k in 0..=40 {
        let at = k as f64 * 2.0;
        let share = share_at(at);
        let mut regions = BTreeMap::new();
        regions.insert("us-east-1".to_owned(), (100.0 * share, 0.0));
        regions.insert("us-west-2".to_owned(), (100.0 + 60.0 * (1.0 - share), 0.002));
        regions.insert("eu-west-1".to_owned(), (80.0 + 40.0 * (1.0 - share), 0.0));
        j.samples.push(Sample { at, regions });
    }
    j.steps = steps;
    j.notes.push("evacuate us-east-1: 3 steps <checked>".to_owned());
    j.notes.push("restore us-east-1: done".to_owned());
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (installed by .ci/run)"]
async fn report_opens_offline_with_charts_and_every_step() {
    tokio::time::timeout(Duration::from_secs(120), report()).await.expect("the whole test within 120 s");
}

async fn report() {
    let journal = journal();
    let html = flowgate::fleet::report::render(
        "us-east-1",
        "pass: 0 failed requests",
        &journal,
        "2026-01-01T00:00:00Z",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("exercise report.html");
    std::fs::write(&path, &html).expect("write report");
    std::fs::write(browser::target_dir().join("report.html"), &html).expect("keep a copy under target/");

    let b = browser::Browser::start(true, 1000, 1800).await;
    assert!(b.goto("http://flowgate-offline-check.invalid/").await.is_err(), "the browser is not offline");
    let url = format!("file://{}", path.display().to_string().replace(' ', "%20"));
    b.goto(&url).await.expect("the report opens from disk");
    let v = b
        .js(r#"
const charts = Array.from(document.querySelectorAll('svg.chart'), (svg) => {
  const box = svg.getBoundingClientRect();
  return {
    width: box.width, height: box.height,
    lines: Array.from(svg.querySelectorAll('polyline'), (p) => {
      const bb = p.getBBox();
      return {points: p.points.numberOfItems, width: bb.width, stroke: p.getAttribute('stroke')};
    }),
  };
});
const rows = Array.from(document.querySelectorAll('#steps tbody tr'),
  (tr) => Array.from(tr.cells, (td) => td.textContent));
return {
  title: document.title, verdict: document.getElementById('verdict').textContent, charts, rows,
  scripts: document.scripts.length,
  fetched: performance.getEntriesByType('resource').map((r) => r.name),
  notes: Array.from(document.querySelectorAll('ul li'), (li) => li.textContent),
};"#)
        .await;
    assert_eq!(v["title"], "flowgate exercise: us-east-1", "{v}");
    assert_eq!(v["verdict"], "pass: 0 failed requests", "{v}");
    assert_eq!(v["scripts"], 0, "{v}");
    assert_eq!(v["fetched"], json!([]), "the report fetched something: {v}");
    assert_eq!(v["notes"][0], "evacuate us-east-1: 3 steps <checked>", "{v}");

    // Two charts, each drawn on the page with one line per region across the whole run.
    let charts = v["charts"].as_array().expect("charts");
    assert_eq!(charts.len(), 2, "{v}");
    for c in charts {
        assert!(
            c["width"].as_f64().unwrap_or(0.0) > 300.0 && c["height"].as_f64().unwrap_or(0.0) > 80.0,
            "{c}"
        );
        let lines = c["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), REGIONS.len(), "{c}");
        for l in lines {
            assert_eq!(l["points"], journal.samples.len(), "{c}");
            assert!(l["width"].as_f64().unwrap_or(0.0) > 100.0, "a line not drawn across: {c}");
        }
    }

    // Every step, in order, with its phase, step, version and time.
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), journal.steps.len(), "{v}");
    for (row, step) in rows.iter().zip(&journal.steps) {
        let cells: Vec<&str> =
            row.as_array().expect("cells").iter().map(|c| c.as_str().unwrap_or("")).collect();
        assert_eq!(cells[0], step.phase, "{row}");
        assert_eq!(cells[1], format!("{}/{}", step.step, step.of), "{row}");
        assert_eq!(cells[2], step.version.to_string(), "{row}");
        assert_eq!(cells[3], format!("{:.1} s", step.at), "{row}");
        assert_eq!(cells[6], step.outcome, "{row}");
    }

    let overflow: Value = b.js("return document.documentElement.scrollWidth - window.innerWidth;").await;
    assert!(overflow.as_i64().unwrap_or(1) <= 0, "wider than the window by {overflow}px");
    let shot = b.screenshot("report.png").await;
    eprintln!("screenshot: {}", shot.display());
    b.close().await;
}
