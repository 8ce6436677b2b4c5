use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::autopilot::judge::{Evidence, Reading};

fn evidence(own_view: &[&str]) -> Evidence {
    Evidence {
        proxies: 2,
        proxies_answering: 2,
        proxies_ready: 2,
        demand_rps: 10.0,
        served_rps: 10.0,
        served_error_ratio: 0.0,
        success_rps: 10.0,
        success_baseline_rps: None,
        own_view: own_view.iter().map(|s| s.to_string()).collect(),
        observers: BTreeMap::new(),
        quorum: 2,
        failing_votes: 0,
        healthy_votes: 2,
    }
}

fn readings(failing: &[&str]) -> BTreeMap<String, (Evidence, Reading)> {
    ["a", "b", "c"]
        .iter()
        .map(|r| {
            let reading = if failing.contains(r) {
                Reading::Failing { why: format!("{r} is down") }
            } else {
                Reading::Healthy
            };
            (r.to_string(), (evidence(&[]), reading))
        })
        .collect()
}

fn rails() -> Rails {
    Rails { confirm: Duration::from_secs(10), min_healthy_regions: 2, auto_restore: None }
}

fn find<'a>(out: &'a [(Decision, bool)], r: &str) -> &'a Decision {
    &out.iter().find(|(d, _)| d.region == r).expect("decision").0
}

#[test]
fn a_failure_shorter_than_confirm_changes_nothing() {
    let mut c = Controller::default();
    let t0 = Instant::now();
    let out = c.round(t0, &readings(&["a"]), &Context::default(), &rails());
    assert_eq!((find(&out, "a").verdict, find(&out, "a").action), (Verdict::Suspect, Action::None));
    let out = c.round(t0 + Duration::from_secs(5), &readings(&[]), &Context::default(), &rails());
    assert_eq!(find(&out, "a").action, Action::None);
    // It comes back: the timer starts over, so 9 s later it is still only confirming.
    c.round(t0 + Duration::from_secs(6), &readings(&["a"]), &Context::default(), &rails());
    let out = c.round(t0 + Duration::from_secs(15), &readings(&["a"]), &Context::default(), &rails());
    assert_eq!(find(&out, "a").rule, "confirming");
    let out = c.round(t0 + Duration::from_secs(16), &readings(&["a"]), &Context::default(), &rails());
    assert_eq!((find(&out, "a").verdict, find(&out, "a").action), (Verdict::Failing, Action::Evacuate));
}

#[test]
fn two_failing_regions_never_leave_fewer_healthy_than_the_minimum() {
    let mut c = Controller::default();
    let t0 = Instant::now();
    c.round(t0, &readings(&["a", "b"]), &Context::default(), &rails());
    let out = c.round(t0 + Duration::from_secs(11), &readings(&["a", "b"]), &Context::default(), &rails());
    for r in ["a", "b"] {
        let d = find(&out, r);
        assert_eq!(
            (d.verdict, d.action, d.rule),
            (Verdict::Failing, Action::Held, "min-healthy-regions"),
            "{r}"
        );
        assert!(d.why.contains("leave 1 healthy region(s) (c)"), "{}", d.why);
    }
    // With a lower minimum, one goes and the other is held, named.
    let one = Rails { min_healthy_regions: 1, ..rails() };
    let out = c.round(t0 + Duration::from_secs(12), &readings(&["a", "b"]), &Context::default(), &one);
    assert_eq!(find(&out, "a").action, Action::Evacuate);
    assert_eq!((find(&out, "b").action, find(&out, "b").rule), (Action::Held, "one-at-a-time"));
    // Once a is ours, b is held for it.
    let ctx = Context { ours: Some("a".into()), evacuated: ["a".to_string()].into(), ..Default::default() };
    let out = c.round(t0 + Duration::from_secs(13), &readings(&["a", "b"]), &ctx, &one);
    assert_eq!(find(&out, "a").rule, "evacuated");
    assert!(find(&out, "b").why.contains("one region at a time: a is evacuated"), "{}", find(&out, "b").why);
}

#[test]
fn pause_and_cooldown_hold_and_news_is_told_once() {
    let mut c = Controller::default();
    let t0 = Instant::now();
    c.round(t0, &readings(&["a"]), &Context::default(), &rails());
    let paused = Context { paused: true, ..Default::default() };
    let out = c.round(t0 + Duration::from_secs(11), &readings(&["a"]), &paused, &rails());
    assert_eq!((find(&out, "a").action, find(&out, "a").rule), (Action::Held, "paused"));
    assert!(out.iter().any(|(d, news)| d.region == "a" && *news));
    let out = c.round(t0 + Duration::from_secs(12), &readings(&["a"]), &paused, &rails());
    assert!(out.iter().all(|(d, news)| d.region != "a" || !*news), "a repeated decision is not news");
    let cooling = Context { cooldown_left: Some(Duration::from_secs(30)), ..Default::default() };
    let out = c.round(t0 + Duration::from_secs(13), &readings(&["a"]), &cooling, &rails());
    assert_eq!(find(&out, "a").rule, "cooldown");
}

#[test]
fn a_lone_own_view_is_held_for_want_of_quorum() {
    let mut c = Controller::default();
    let mut r = readings(&[]);
    r.insert(
        "a".into(),
        (
            evidence(&["none of its 2 proxies answers the autopilot"]),
            Reading::Suspect { why: "quorum not met".into(), quorum_missing: true },
        ),
    );
    let out = c.round(Instant::now(), &r, &Context::default(), &rails());
    let d = find(&out, "a");
    assert_eq!((d.verdict, d.action, d.rule), (Verdict::Suspect, Action::Held, "quorum-missing"));
}

#[test]
fn restore_waits_for_auto_restore_or_says_it_is_manual() {
    let t0 = Instant::now();
    let ctx = Context { ours: Some("a".into()), evacuated: ["a".to_string()].into(), ..Default::default() };
    let mut manual = Controller::default();
    manual.round(t0, &readings(&[]), &ctx, &rails());
    let out = manual.round(t0 + Duration::from_secs(11), &readings(&[]), &ctx, &rails());
    assert_eq!(find(&out, "a").rule, "restore-manual");
    let auto = Rails { auto_restore: Some(Duration::from_secs(20)), ..rails() };
    let mut c = Controller::default();
    c.round(t0, &readings(&[]), &ctx, &auto);
    let out = c.round(t0 + Duration::from_secs(11), &readings(&[]), &ctx, &auto);
    assert_eq!(find(&out, "a").action, Action::None);
    let out = c.round(t0 + Duration::from_secs(21), &readings(&[]), &ctx, &auto);
    assert_eq!(find(&out, "a").action, Action::Restore);
}
