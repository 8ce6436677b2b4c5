use super::*;
use crate::fleet::fixtures::{down, proxy};
use crate::fleet::status::summarize;

const R: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
const EAST: &str = "us-east-1";

fn th() -> Thresholds {
    Thresholds::default()
}

fn healthy_other(region: &str) -> crate::fleet::status::ProxyStatus {
    proxy(&R, region, &format!("{region}:1"), 50.0, 0.0).build()
}

#[test]
fn a_dead_origin_seen_by_both_other_regions_is_failing() {
    let st = summarize(vec![
        proxy(&R, EAST, "e:1", 0.0, 0.0).origins_down().build(),
        proxy(&R, "us-west-2", "w:1", 50.0, 0.0).sees_unhealthy(&[EAST]).build(),
        proxy(&R, "eu-west-1", "eu:1", 50.0, 0.0).sees_unhealthy(&[EAST]).build(),
    ]);
    let (ev, reading) = judge(&st, EAST, Some(40.0), &th());
    assert!(matches!(reading, Reading::Failing { .. }), "{reading:?}");
    assert_eq!((ev.failing_votes, ev.quorum), (2, 2));
    assert!(ev.own_view.iter().any(|v| v.contains("no usable endpoint")), "{:?}", ev.own_view);
    assert!(ev.own_view.iter().any(|v| v.contains("fell to 0.0/s")), "{:?}", ev.own_view);
    // The other regions are not touched by it.
    assert_eq!(judge(&st, "us-west-2", Some(50.0), &th()).1, Reading::Healthy);
}

#[test]
fn errors_behind_passing_health_checks_reach_the_others_through_health_answers() {
    // 30 % errors; /healthz passes so the probes see the region healthy, but its health
    // answers carry its own figures.
    let st = summarize(vec![
        proxy(&R, EAST, "e:1", 40.0, 0.3).build(),
        proxy(&R, "us-west-2", "w:1", 50.0, 0.0).heard(EAST, 40.0, 0.3).build(),
        proxy(&R, "eu-west-1", "eu:1", 50.0, 0.0).heard(EAST, 40.0, 0.3).build(),
    ]);
    let (ev, reading) = judge(&st, EAST, None, &th());
    assert!(matches!(reading, Reading::Failing { .. }), "{reading:?} {ev:?}");
    // A trickle of errors is noise, not a signal.
    let quiet = summarize(vec![
        proxy(&R, EAST, "e:1", 0.5, 0.4).build(),
        proxy(&R, "us-west-2", "w:1", 50.0, 0.0).heard(EAST, 0.5, 0.4).build(),
        proxy(&R, "eu-west-1", "eu:1", 50.0, 0.0).heard(EAST, 0.5, 0.4).build(),
    ]);
    assert_eq!(judge(&quiet, EAST, None, &th()).1, Reading::Healthy);
}

#[test]
fn a_controller_cut_off_from_a_region_holds_for_want_of_quorum() {
    let st = summarize(vec![
        down(EAST, "e:1"),
        down(EAST, "e:2"),
        healthy_other("us-west-2"),
        healthy_other("eu-west-1"),
    ]);
    let (ev, reading) = judge(&st, EAST, Some(40.0), &th());
    let Reading::Suspect { why, quorum_missing } = reading else { panic!("{reading:?}") };
    assert!(quorum_missing);
    assert!(why.contains("quorum not met") && why.contains("eu-west-1, us-west-2 see it healthy"), "{why}");
    assert_eq!(ev.healthy_votes, 2);
}

#[test]
fn one_observer_is_not_a_quorum_of_three_regions_but_is_of_two() {
    let st = summarize(vec![
        proxy(&R, EAST, "e:1", 0.0, 0.0).origins_down().build(),
        proxy(&R, "us-west-2", "w:1", 50.0, 0.0).sees_unhealthy(&[EAST]).build(),
        healthy_other("eu-west-1"),
    ]);
    assert!(matches!(judge(&st, EAST, None, &th()).1, Reading::Suspect { quorum_missing: true, .. }));
    let two = ["us-east-1", "us-west-2"];
    let st2 = summarize(vec![
        proxy(&two, EAST, "e:1", 0.0, 0.0).origins_down().build(),
        proxy(&two, "us-west-2", "w:1", 50.0, 0.0).sees_unhealthy(&[EAST]).build(),
    ]);
    assert!(matches!(judge(&st2, EAST, None, &th()).1, Reading::Failing { .. }));
}

#[test]
fn a_region_serving_well_by_its_own_account_is_not_failing() {
    // The others cannot reach its peer listener, but it serves its own clients fine.
    let st = summarize(vec![
        proxy(&R, EAST, "e:1", 40.0, 0.0).build(),
        proxy(&R, "us-west-2", "w:1", 50.0, 0.0).sees_unhealthy(&[EAST]).build(),
        proxy(&R, "eu-west-1", "eu:1", 50.0, 0.0).sees_unhealthy(&[EAST]).build(),
    ]);
    let reading = judge(&st, EAST, Some(40.0), &th()).1;
    assert!(matches!(reading, Reading::Suspect { quorum_missing: false, .. }), "{reading:?}");
    // An unready proxy of its own is a reason to doubt that account.
    let st = summarize(vec![
        proxy(&R, EAST, "e:1", 40.0, 0.0).unready().build(),
        proxy(&R, "us-west-2", "w:1", 50.0, 0.0).sends(EAST, 10.0, 0.5).build(),
        proxy(&R, "eu-west-1", "eu:1", 50.0, 0.0).sees_unhealthy(&[EAST]).build(),
    ]);
    let (ev, reading) = judge(&st, EAST, None, &th());
    assert!(matches!(reading, Reading::Failing { .. }), "{reading:?}");
    assert!(ev.observers["us-west-2"].because[0].contains("50.0 % of the requests sent"), "{ev:?}");
}
