use std::collections::BTreeMap;

use super::*;
use crate::fleet::evacuate::journal::{Sample, StepRecord};

const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "us-west-2"];

fn step(phase: &str, step: u32, at: f64, share: f64) -> StepRecord {
    StepRecord {
        phase: phase.to_owned(),
        step,
        of: 2,
        version: u64::from(step) + if phase == "restore" { 10 } else { 1 },
        at,
        region_share: share,
        outcome: "ok".to_owned(),
        rule: "receiving-regions-ok".to_owned(),
        gate: BTreeMap::new(),
        unreached: Vec::new(),
        ignored: Vec::new(),
    }
}

/// Evacuate us-east-1 in 2 steps (pushed at 2 s and 6 s), hold from 10 s to 20 s,
/// restore in 2 steps (pushed at 20 s and 24 s); `rps` is what us-east-1 served at full
/// share (0: an idle fleet).
fn journal(rps: f64) -> Journal {
    let mut j = Journal::default();
    j.steps = vec![step("evacuate", 1, 6.0, 0.5), step("evacuate", 2, 10.0, 0.0)];
    j.steps.extend([step("restore", 1, 24.0, 0.5), step("restore", 2, 28.0, 1.0)]);
    j.pushed_at = vec![2.0, 6.0, 20.0, 24.0];
    let share = |t: f64| match t {
        t if t < 2.0 => 1.0,
        t if t < 6.0 => 0.5,
        t if t < 20.0 => 0.0,
        t if t < 24.0 => 0.5,
        _ => 1.0,
    };
    for k in 0..=15 {
        let at = 2.0 * f64::from(k);
        let mut s = Sample { at, ..Sample::default() };
        for r in REGIONS {
            let served = if r == "us-east-1" { rps * share(at) } else { rps + rps * (1.0 - share(at)) / 2.0 };
            s.regions.insert(r.to_owned(), (if r == "us-east-1" { rps } else { served }, 0.0));
            s.served.insert(r.to_owned(), (served, 0.0));
            s.clients.insert(r.to_owned(), rps);
        }
        j.samples.push(s);
    }
    j
}

#[test]
fn an_idle_fleet_says_no_traffic_not_pass() {
    let idle = journal(0.0);
    assert!(!idle.saw_traffic());
    let verdict = Verdict::judge(None, &idle);
    assert_eq!(verdict, Verdict::NoTraffic);
    let text = verdict.to_string();
    assert!(text.starts_with("no traffic: the exercise saw no client requests"), "{text}");
    let html = render("us-east-1", &text, &idle, "2026-01-01T00:00:00Z");
    assert!(html.contains(r#"<span id="verdict" class="verdict idle">no traffic: "#), "{html}");
    assert!(!html.contains("class=\"verdict pass\""), "{html}");
    assert!(html.contains("No request was served anywhere"), "{html}");
}

#[test]
fn a_fleet_under_load_passes_and_a_failure_fails_even_under_load() {
    let busy = journal(100.0);
    assert_eq!(Verdict::judge(None, &busy), Verdict::Pass);
    assert!(Verdict::judge(None, &busy).to_string().starts_with("pass"));
    assert_eq!(Verdict::judge(Some("gate failed"), &busy), Verdict::Fail("gate failed".to_owned()));
    assert_eq!(Verdict::judge(Some("gate failed"), &journal(0.0)).to_string(), "fail: gate failed");
}

#[test]
fn twelve_proxies_with_the_same_answer_read_as_one_with_a_count() {
    let items: Vec<String> = (1..=12)
        .map(|i| {
            format!(
                "127.0.0.1:{} (us-west-2): refused 401: {{\"error\": \"a valid bearer token is required\"}}",
                9000 + i
            )
        })
        .collect();
    let why = format!("12 proxies of receiving regions did not apply version 3: {}", items.join("; "));
    let said = summarize(&why);
    assert_eq!(
        said,
        format!(
            "12 proxies of receiving regions did not apply version 3: {} (the same from 11 more)",
            items[0]
        )
    );
    assert_eq!(said.matches("401").count(), 1, "{said}");
    // Different answers are all kept, in order; text that is no list is kept as it is.
    let mixed = "a:1 (r): refused 401: x; b:2 (r): unreachable; c:3 (r): refused 401: x";
    assert_eq!(summarize(mixed), "a:1 (r): refused 401: x (the same from 1 more); b:2 (r): unreachable");
    let plain = "receiving region r is unreachable (0 of 2 proxies answer); nothing pushed: a:1 (r): down";
    assert_eq!(summarize(plain), plain);
}

#[test]
fn ticks_are_round_values() {
    assert_eq!(chart::ticks(100.0), (20.0, 100.0));
    assert_eq!(chart::ticks(137.0), (50.0, 150.0));
    assert_eq!(chart::ticks(1.0), (0.2, 1.0));
    assert_eq!(chart::ticks(12.0), (2.5, 12.5));
    assert_eq!(chart::ticks(0.0), (0.2, 1.0));
    assert_eq!(chart::tick_label(0.6000000001, 0.2), "0.6");
    assert_eq!(chart::tick_label(7.5, 2.5), "7.5");
    assert_eq!(chart::tick_label(150.0, 50.0), "150");
}

#[test]
fn the_share_chart_shows_the_region_going_to_zero_and_back_with_labelled_steps() {
    let j = journal(100.0);
    let shares = series::share(&j);
    let east = shares.iter().find(|s| s.region == "us-east-1").expect("us-east-1");
    let (from, to) = series::hold(&j).expect("a hold");
    assert_eq!((from, to), (10.0, 20.0));
    for (t, v) in series::times(&j).iter().zip(&east.values) {
        if (from..=to).contains(t) && *t < 20.0 {
            assert_eq!(*v, Some(0.0), "at {t} s");
        }
    }
    assert!(east.values[0].is_some_and(|v| (v - 1.0 / 3.0).abs() < 1e-9), "{:?}", east.values);
    assert!(east.values.last().copied().flatten().is_some_and(|v| (v - 1.0 / 3.0).abs() < 1e-9));
    let labels: Vec<(f64, String)> = series::markers(&j).into_iter().map(|m| (m.at, m.label)).collect();
    let want =
        [(2.0, "step 1/2"), (6.0, "step 2/2"), (10.0, "hold"), (20.0, "restore 1/2"), (24.0, "restore 2/2")];
    assert_eq!(labels, want.map(|(t, l)| (t, l.to_owned())));

    let html = render("us-east-1", "pass: ok", &j, "2026-01-01T00:00:00Z");
    assert!(
        html.contains("us-east-1 served 33 % of the fleet's requests before the first step, 0 % at its lowest during the hold and 33 % at the end."),
        "{html}"
    );
    assert_eq!(html.matches(r#"<svg class="chart""#).count(), 3);
    assert!(
        html.contains(
            r#"data-region="us-east-1" data-series="share" data-values="0.3333 0.1667 0.1667 0.0000"#
        ),
        "{html}"
    );
    assert!(html.contains(r#"data-kind="restore" data-at="20.0" data-label="restore 1/2""#), "{html}");
    assert!(html.contains(r#"<rect class="hold" data-from="10.0" data-to="20.0""#), "{html}");
    assert!(html.contains(r#"<line class="grid" data-value="25""#), "{html}");
    assert!(html.contains("share of requests (%)") && html.contains("requests/s (req/s)"), "{html}");
    assert!(html.contains("us-east-1 (evacuated)"), "{html}");
}
