use std::collections::BTreeMap;

use super::*;
use crate::fleet::fixtures::{self, down};
use crate::fleet::status::{ProxyStatus, summarize};

const REGIONS: [&str; 3] = ["a", "b", "c"];

fn proxy(region: &str, addr: &str, rps: f64, err: f64, unhealthy: &[&str]) -> ProxyStatus {
    fixtures::proxy(&REGIONS, region, addr, rps, err).sees_unhealthy(unhealthy).build()
}

fn caps() -> BTreeMap<String, f64> {
    REGIONS.iter().map(|r| (r.to_string(), 1000.0)).collect()
}

fn fleet(a: Vec<ProxyStatus>, rest: &[(f64, f64, &[&str])]) -> FleetStatus {
    let mut all = a;
    for (i, (rps, err, unhealthy)) in rest.iter().enumerate() {
        let r = REGIONS[1 + i];
        all.push(proxy(r, &format!("{r}:1"), *rps, *err, unhealthy));
    }
    summarize(all)
}

#[test]
fn a_broken_evacuated_region_never_fails_the_gate() {
    let sides = Sides::evacuate("a", ["a", "b", "c"].map(String::from).iter());
    let baseline = fleet(
        vec![proxy("a", "a:1", 100.0, 0.3, &[]), proxy("a", "a:2", 100.0, 0.3, &[])],
        &[(100.0, 0.0, &[]), (100.0, 0.0, &[])],
    );
    // One of a's proxies hung, the other erroring more; the receivers are fine.
    let now = fleet(
        vec![down("a", "a:1"), proxy("a", "a:2", 10.0, 0.9, &["a"])],
        &[(150.0, 0.0, &["a"]), (150.0, 0.001, &["a"])],
    );
    let d = check(&baseline, &now, &sides, &caps(), 0.01);
    assert_eq!(d.rule, PASSED, "{:?}", d.why);
    assert!(d.ignored.iter().any(|i| i.contains("a (draining)")), "{:?}", d.ignored);
    assert!(failing(&now, "a", 0.01).is_some());
    assert!(failing(&now, "b", 0.01).is_none());
}

#[test]
fn each_rule_of_the_receiving_side_stops_the_run_and_names_itself() {
    let sides = Sides::evacuate("a", ["a", "b", "c"].map(String::from).iter());
    let baseline = fleet(vec![proxy("a", "a:1", 100.0, 0.0, &[])], &[(100.0, 0.0, &[]), (100.0, 0.0, &[])]);
    let errors = fleet(vec![proxy("a", "a:1", 50.0, 0.0, &[])], &[(150.0, 0.2, &[]), (150.0, 0.0, &[])]);
    let d = check(&baseline, &errors, &sides, &caps(), 0.01);
    assert_eq!(d.rule, "receiving-error-ratio");
    assert!(d.why.as_deref().unwrap_or("").starts_with("region b: error ratio 20.00 %"), "{:?}", d.why);

    let gone = summarize(vec![
        proxy("a", "a:1", 50.0, 0.0, &[]),
        down("b", "b:1"),
        proxy("c", "c:1", 150.0, 0.0, &[]),
    ]);
    assert_eq!(check(&baseline, &gone, &sides, &caps(), 0.01).rule, "receiving-readiness");

    let sick = fleet(vec![proxy("a", "a:1", 50.0, 0.0, &[])], &[(150.0, 0.0, &[]), (150.0, 0.0, &["b"])]);
    assert_eq!(check(&baseline, &sick, &sides, &caps(), 0.01).rule, "receiving-health");
    // The evacuated region's own proxies seeing b down do not count: they may be the broken side.
    let a_sees = fleet(vec![proxy("a", "a:1", 50.0, 0.0, &["b"])], &[(150.0, 0.0, &[]), (150.0, 0.0, &[])]);
    assert_eq!(check(&baseline, &a_sees, &sides, &caps(), 0.01).rule, PASSED);

    let full = fleet(vec![proxy("a", "a:1", 0.0, 0.0, &[])], &[(1200.0, 0.0, &[]), (150.0, 0.0, &[])]);
    assert_eq!(check(&baseline, &full, &sides, &caps(), 0.01).rule, "receiving-capacity");
}

#[test]
fn a_restore_gates_on_the_region_coming_back() {
    let sides = Sides::restore("a", ["a", "b", "c"].map(String::from).iter());
    let baseline = fleet(vec![proxy("a", "a:1", 0.0, 0.0, &[])], &[(150.0, 0.0, &[]), (150.0, 0.0, &[])]);
    let now = fleet(vec![proxy("a", "a:1", 50.0, 0.5, &[])], &[(100.0, 0.0, &[]), (100.0, 0.0, &[])]);
    assert_eq!(check(&baseline, &now, &sides, &caps(), 0.01).rule, "receiving-error-ratio");
    // The draining side erroring does not stop a restore.
    let others = fleet(vec![proxy("a", "a:1", 50.0, 0.0, &[])], &[(100.0, 0.5, &[]), (100.0, 0.0, &[])]);
    assert_eq!(check(&baseline, &others, &sides, &caps(), 0.01).rule, PASSED);
}
