//! The exercise report: written to a file by
//! `flowgate::fleet::report::render`, it opens in headless Chromium with no network and
//! shows its charts and every step; and a real `flowgate exercise` against a small fleet
//! under load writes a report whose share chart shows the evacuated region going to 0
//! during the hold and back, with labelled step markers and the legends off the plots.

mod browser;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
        j.samples.push(Sample { at, regions, ..Sample::default() });
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

    // Three charts (share, requests/s, error ratio), each drawn on the page with one line
    // per region across the whole run.
    let charts = v["charts"].as_array().expect("charts");
    assert_eq!(charts.len(), 3, "{v}");
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

const A: &str = "us-east-1";
const TOKEN: &str = "report-browser-test-token";

/// Client GETs spread over every proxy's public listener until told to stop (at most
/// 120 s and 60 000 requests); (answered 200, failed).
fn load(publics: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(usize, usize)> {
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = publics
        .into_iter()
        .map(|public| {
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                let client = support::h1_client();
                let deadline = Instant::now() + Duration::from_secs(120);
                for i in 0..20_000u32 {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    let url = format!("http://{public}/get/{i}");
                    let req =
                        http::Request::get(&url).body(http_body_util::Full::default()).expect("request");
                    match support::exchange(&client, req).await {
                        Ok((status, _, _)) if status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                    // The pace of each worker.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    tokio::spawn(async move {
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(20), w).await;
        }
        (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs chromium (installed by .ci/run)"]
async fn a_real_exercise_reports_the_shift_with_labelled_steps_and_legends_off_the_plot() {
    tokio::time::timeout(Duration::from_secs(240), real_exercise())
        .await
        .expect("the whole test within 240 s");
}

/// What the browser reads of the report: per chart the plot area, the legend and the
/// marker labels' boxes, and every series' data.
const READ_REPORT: &str = r#"
const box = (e) => { const b = e.getBoundingClientRect(); return {l: b.left, t: b.top, r: b.right, b: b.bottom}; };
return Array.from(document.querySelectorAll('figure.chart-box'), (fig) => {
  const svg = fig.querySelector('svg.chart');
  const hold = svg.querySelector('rect.hold');
  return {
    chart: svg.dataset.chart,
    plot: box(svg.querySelector('rect.plot')),
    legend: box(fig.querySelector('.legend')),
    legend_items: Array.from(fig.querySelectorAll('.legend [data-region]'), (e) => e.textContent),
    hold: hold ? {from: Number(hold.dataset.from), to: Number(hold.dataset.to)} : null,
    grid: Array.from(svg.querySelectorAll('line.grid'), (l) => Number(l.dataset.value)),
    markers: Array.from(svg.querySelectorAll('g.marker'), (g) => ({
      kind: g.dataset.kind, label: g.dataset.label, at: Number(g.dataset.at),
      text: g.querySelector('text').textContent, box: box(g.querySelector('text')),
    })),
    series: Array.from(svg.querySelectorAll('polyline[data-series]'), (p) => ({
      region: p.dataset.region, series: p.dataset.series,
      times: p.dataset.times.split(' ').map(Number),
      values: p.dataset.values.split(' ').map((v) => v === '-' ? null : Number(v)),
    })),
  };
});"#;

fn overlap(a: &Value, b: &Value) -> bool {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    f(a, "l") < f(b, "r") && f(b, "l") < f(a, "r") && f(a, "t") < f(b, "b") && f(b, "t") < f(a, "b")
}

async fn real_exercise() {
    use support::fleet::{Fleet, FleetSpec};
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("report-test {TOKEN}\n")).expect("token file");
    let admin_extra = format!("token_file = {:?}\n", tokens.display().to_string());
    // Every region serves its own clients.
    let rows: Vec<String> = REGIONS.iter().map(|r| format!(r#""{r}": {{"{r}": 100}}"#)).collect();
    let table = format!(r#"{{"version": 1, "weights": {{{}}}}}"#, rows.join(", "));
    let fleet = Fleet::start(FleetSpec {
        regions: &[A, "us-west-2", "eu-west-1"],
        table: Some(&table),
        proxies_per_region: 1,
        admin_extra: &admin_extra,
        health_interval: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    fleet.wait_settled().await;
    let mut fleet_text = String::from("token_env = \"FLOWGATE_ADMIN_TOKEN\"\n");
    for r in &fleet.regions {
        fleet_text.push_str(&format!(
            "\n[regions.{}]\nadmin = [\"{}\"]\ncapacity_rps = 100000\n",
            r.name, r.proxy.addrs.admin
        ));
    }
    let fleet_file = dir.path().join("fleet.toml");
    std::fs::write(&fleet_file, fleet_text).expect("fleet file");

    let stop = Arc::new(AtomicBool::new(false));
    let publics: Vec<String> = fleet.regions.iter().map(|r| r.proxy.addrs.public.to_string()).collect();
    let load = load(publics, stop.clone());
    support::wait::wait_until("every proxy to see client demand", Duration::from_secs(15), || async {
        for a in fleet.admins() {
            if support::admin::status(a).await["source_rps"].as_f64().unwrap_or(0.0) <= 10.0 {
                return false;
            }
        }
        true
    })
    .await;

    let report = dir.path().join("exercise.html");
    let args = [
        "exercise",
        A,
        "--fleet",
        fleet_file.to_str().expect("utf-8"),
        "--hold",
        "5s",
        "--steps",
        "3",
        "--interval",
        "1s",
        "--yes",
        "--report",
        report.to_str().expect("utf-8"),
    ];
    let run = support::run::flowgate_as(TOKEN, &args, Duration::from_secs(90)).await;
    eprintln!("--- flowgate exercise → {:?} in {:?}\n{}{}", run.code, run.took, run.stdout, run.stderr);
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = load.await.expect("load");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(ok > 500, "only {ok} client requests answered");
    assert_eq!(failed, 0, "client requests failed during the exercise");
    let html = std::fs::read_to_string(&report).expect("the report was written");
    std::fs::write(browser::target_dir().join("report-real.html"), &html).expect("keep a copy under target/");

    let b = browser::Browser::start(true, 1000, 1800).await;
    let url = format!("file://{}", report.display());
    b.goto(&url).await.expect("the report opens from disk");
    let v = b.js(READ_REPORT).await;
    let charts = v.as_array().expect("charts");
    assert_eq!(
        charts.iter().map(|c| c["chart"].as_str().unwrap_or("")).collect::<Vec<_>>(),
        ["share", "rps", "errors"],
        "{v}"
    );
    for c in charts {
        // The legend is off the plot area, and names the evacuated region as such.
        assert!(!overlap(&c["legend"], &c["plot"]), "the legend overlaps the plot: {c}");
        assert!(c["legend_items"].as_array().is_some_and(|l| l.len() == 3), "{c}");
        assert!(c["legend_items"].to_string().contains("us-east-1 (evacuated)"), "{c}");
        // Ticks at round values, with gridlines: at least three, evenly spaced from 0.
        let grid: Vec<f64> = c["grid"].as_array().expect("grid").iter().filter_map(Value::as_f64).collect();
        assert!(grid.len() >= 3 && grid[0] == 0.0, "{c}");
        let step = grid[1] - grid[0];
        assert!(grid.windows(2).all(|w| ((w[1] - w[0]) - step).abs() < 1e-9), "{c}");
        let mag = 10f64.powf(step.log10().floor());
        assert!(
            [1.0, 2.0, 2.5, 5.0, 10.0].iter().any(|m| ((step / mag) - m).abs() < 1e-9),
            "step {step}: {c}"
        );
        // Every step marked and labelled, the hold too, no label over another.
        let markers = c["markers"].as_array().expect("markers");
        let labels: Vec<&str> = markers.iter().map(|m| m["text"].as_str().unwrap_or("")).collect();
        assert_eq!(
            labels,
            ["step 1/3", "step 2/3", "step 3/3", "hold", "restore 1/3", "restore 2/3", "restore 3/3"],
            "{c}"
        );
        for m in markers {
            assert_eq!(m["text"], m["label"], "{m}");
        }
        for (i, m) in markers.iter().enumerate() {
            for n in &markers[i + 1..] {
                assert!(!overlap(&m["box"], &n["box"]), "marker labels overlap: {m} {n}");
            }
        }
    }

    // The evacuated region's share of what the fleet served: there at the start, 0 during
    // the hold, back at the end.
    let share = &charts[0];
    let hold = &share["hold"];
    let (from, to) = (hold["from"].as_f64().expect("hold from"), hold["to"].as_f64().expect("hold to"));
    assert!(to - from >= 4.0, "the hold lasts 5 s: {hold}");
    let east = share["series"]
        .as_array()
        .expect("series")
        .iter()
        .find(|s| s["region"] == A && s["series"] == "share")
        .unwrap_or_else(|| panic!("no share series for {A}: {share}"));
    let points: Vec<(f64, Option<f64>)> = east["times"]
        .as_array()
        .expect("times")
        .iter()
        .zip(east["values"].as_array().expect("values"))
        .map(|(t, v)| (t.as_f64().unwrap_or(f64::NAN), v.as_f64()))
        .collect();
    let first = points.iter().find_map(|p| p.1).expect("a share at the start");
    assert!(first > 0.2, "{A} served a third before the exercise, not {first}: {points:?}");
    let during: Vec<f64> = points.iter().filter(|(t, _)| *t > from && *t < to).filter_map(|p| p.1).collect();
    assert!(during.len() >= 3, "samples during the hold: {points:?}");
    assert!(during.contains(&0.0), "{A}'s share never reached 0 during the hold: {points:?}");
    let last = points.iter().rev().find_map(|p| p.1).expect("a share at the end");
    assert!(last > 0.2, "{A}'s share did not come back: {points:?}");
    let verdict = b.js("return document.getElementById('verdict').textContent;").await;
    assert!(verdict.as_str().is_some_and(|t| t.starts_with("pass")), "{verdict}");
    let shot = b.screenshot("report-real.png").await;
    eprintln!("screenshot: {}", shot.display());
    b.close().await;
    fleet.stop().await;
}
