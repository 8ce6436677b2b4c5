use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::control::shift::row_shift;

fn table(rows: &[(&str, &[(&str, u64)])]) -> Table {
    let mut t = Table::local_only();
    t.version = 10;
    for (src, row) in rows {
        t.weights.insert(src.to_string(), row.iter().map(|(k, v)| (k.to_string(), *v)).collect());
    }
    t
}

fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn evacuation_spreads_by_spare_capacity_in_equal_steps() {
    let t = table(&[]);
    let demand = map(&[("a", 300.0), ("b", 100.0), ("c", 100.0)]);
    let capacity = map(&[("a", 1000.0), ("b", 1000.0), ("c", 500.0)]);
    let input = PlanInput { table: &t, demand: &demand, capacity: &capacity, steps: 3, max_utilization: 0.8 };
    let plan = evacuate(&input, "a").unwrap();
    assert_eq!(plan.tables.len(), 3);
    assert_eq!(plan.tables[0].version, 11);
    assert_eq!(plan.tables[2].version, 13);
    // Spare: b 700, c 300 → a's 300 rps go 70 / 30.
    let last = &plan.tables[2];
    assert_eq!(last.weights["a"], Row::from([("b".to_string(), 7000), ("c".to_string(), 3000)]));
    assert!((plan.load_after["b"] - 310.0).abs() < 0.1, "{:?}", plan.load_after);
    assert!((plan.load_after["c"] - 190.0).abs() < 0.1);
    assert_eq!(plan.load_after["a"], 0.0);
    let first = &plan.tables[0];
    assert_eq!(first.weights["a"]["a"], 6667);
    assert!(first.note.as_deref().unwrap_or("").starts_with("evacuate a: step 1 of 3"));
    assert_eq!(first.max_shift, Some(step_shift(3)));
}

#[test]
fn each_refusal_says_why() {
    let t = table(&[]);
    let demand = map(&[("a", 900.0), ("b", 700.0)]);
    let capacity = map(&[("a", 1000.0), ("b", 1000.0)]);
    let mut input =
        PlanInput { table: &t, demand: &demand, capacity: &capacity, steps: 0, max_utilization: 0.8 };
    assert_eq!(evacuate(&input, "a").unwrap_err().to_string(), "steps must be at least 1");
    input.steps = 2;
    input.max_utilization = 1.5;
    assert!(evacuate(&input, "a").unwrap_err().to_string().contains("max utilization must be in (0, 1]"));
    input.max_utilization = 0.8;
    assert!(evacuate(&input, "mars").unwrap_err().to_string().contains("unknown region `mars`"));
    let err = evacuate(&input, "a").unwrap_err();
    let msg = err.to_string();
    // b may take 800 - 700 = 100 of a's 900: it needs (700 + 900) / 0.8 - 1000 = 1000 more.
    assert!(msg.contains("900 rps must move") && msg.contains("100 rps spare"), "{msg}");
    assert!(msg.contains("b needs 1000 rps more capacity"), "{msg}");
    match err {
        PlanError::NotEnoughCapacity { missing, .. } => assert!((missing["b"] - 1000.0).abs() < 1e-6),
        other => panic!("{other:?}"),
    }
    let alone = map(&[("a", 1000.0)]);
    let input = PlanInput { table: &t, demand: &demand, capacity: &alone, steps: 2, max_utilization: 0.8 };
    assert!(evacuate(&input, "a").unwrap_err().to_string().contains("no other region"));
}

#[test]
fn restore_returns_to_the_saved_shares() {
    let before = table(&[("a", &[("a", 100)])]);
    let demand = map(&[("a", 100.0), ("b", 100.0)]);
    let capacity = map(&[("a", 1000.0), ("b", 1000.0)]);
    let input =
        PlanInput { table: &before, demand: &demand, capacity: &capacity, steps: 4, max_utilization: 0.8 };
    let evac = evacuate(&input, "a").unwrap();
    let now = evac.tables.last().unwrap().clone();
    let input =
        PlanInput { table: &now, demand: &demand, capacity: &capacity, steps: 4, max_utilization: 0.8 };
    let back = restore(&input, "a", &before).unwrap();
    let last = back.tables.last().unwrap();
    assert_eq!(last.weights, before.weights);
    assert_eq!(last.version, now.version + 4);
    for pair in back.tables.windows(2) {
        let s = row_shift(pair[0].weights.get("a"), pair[1].weights.get("a"), "a");
        assert!(s <= step_shift(4) + 1e-9, "{s}");
    }
    let small = map(&[("a", 100.0), ("b", 1000.0)]);
    let input = PlanInput { table: &now, demand: &demand, capacity: &small, steps: 4, max_utilization: 0.5 };
    let err = restore(&input, "a", &before).unwrap_err().to_string();
    assert!(err.contains("a needs 100 rps more capacity"), "{err}");
}

const NAMES: [&str; 4] = ["r0", "r1", "r2", "r3"];

fn arb_case() -> impl Strategy<Value = (Table, BTreeMap<String, f64>, BTreeMap<String, f64>, usize, u32, f64)>
{
    (2usize..=4).prop_flat_map(|n| {
        (
            proptest::collection::vec(proptest::option::of(proptest::collection::vec(0u64..100, n)), n),
            proptest::collection::vec(0.0f64..2000.0, n),
            proptest::collection::vec(100.0f64..20000.0, n),
            0..n,
            1u32..=10,
            0.3f64..=1.0,
        )
            .prop_map(move |(rows, demand, capacity, e, steps, u)| {
                let mut t = Table::local_only();
                t.version = 5;
                for (i, row) in rows.into_iter().enumerate() {
                    if let Some(ws) = row
                        && ws.iter().sum::<u64>() > 0
                    {
                        t.weights.insert(
                            NAMES[i].to_string(),
                            ws.iter().enumerate().map(|(j, w)| (NAMES[j].to_string(), *w)).collect(),
                        );
                    }
                }
                let d = (0..n).map(|i| (NAMES[i].to_string(), demand[i])).collect();
                let c = (0..n).map(|i| (NAMES[i].to_string(), capacity[i])).collect();
                (t, d, c, e, steps, u)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn planned_evacuations_are_safe((t, demand, capacity, e, steps, u) in arb_case()) {
        let region = NAMES[e];
        let regions: BTreeSet<String> = capacity.keys().cloned().collect();
        let input = PlanInput { table: &t, demand: &demand, capacity: &capacity, steps, max_utilization: u };
        let total: f64 = demand.values().sum();
        let before = loads(&t, &demand, &regions);
        match evacuate(&input, region) {
            Err(PlanError::NotEnoughCapacity { needed_rps, spare_rps, missing }) => {
                // A refusal is only ever for a real shortage, and says what to add.
                prop_assert!(needed_rps > spare_rps);
                prop_assert!(missing.values().any(|m| *m > 0.0));
            }
            Err(other) => prop_assert!(false, "unexpected refusal: {other}"),
            Ok(plan) => {
                prop_assert_eq!(plan.tables.len(), steps as usize);
                let mut prev = t.clone();
                for (k, step) in plan.tables.iter().enumerate() {
                    prop_assert_eq!(step.version, t.version + k as u64 + 1);
                    let l = loads(step, &demand, &regions);
                    // Traffic is conserved.
                    let sum: f64 = l.values().sum();
                    prop_assert!((sum - total).abs() <= 1e-6 * total.max(1.0), "{sum} vs {total}");
                    // No other region is planned above its limit (or above where it
                    // already was, if it started there); rounding to 0.01 % is allowed.
                    for r in regions.iter().filter(|r| r.as_str() != region) {
                        let limit = (u * capacity[r]).max(before[r]);
                        prop_assert!(l[r] <= limit + total * 2e-4 + 1e-6, "{r}: {} > {limit}", l[r]);
                    }
                    // Each step moves at most 1/steps of every row.
                    for src in &regions {
                        let s = row_shift(prev.weights.get(src), step.weights.get(src), src);
                        prop_assert!(s <= 1.0 / steps as f64 + 1e-3, "step {k}: {src} moved {s}");
                    }
                    prev = step.clone();
                }
                // The last step leaves the region nothing.
                let last = plan.tables.last().unwrap();
                for src in &regions {
                    prop_assert_eq!(shares(last.weights.get(src), src).get(region).copied().unwrap_or(0.0), 0.0);
                }
                prop_assert!(plan.load_after[region] == 0.0);
            }
        }
    }
}

#[test]
fn an_outage_evacuation_avoids_failing_regions_and_moves_what_fits() {
    let t = table(&[]);
    let demand = map(&[("a", 300.0), ("b", 100.0), ("c", 100.0)]);
    let capacity = map(&[("a", 1000.0), ("b", 1000.0), ("c", 250.0)]);
    let input = PlanInput { table: &t, demand: &demand, capacity: &capacity, steps: 2, max_utilization: 0.8 };
    // b is failing: everything goes to c, which has 100 rps spare of the 300 that must move.
    let avoid = EvacuateOptions { avoid: BTreeSet::from(["b".to_string()]), partial: false };
    let refused = evacuate_with(&input, "a", &avoid).unwrap_err();
    assert!(matches!(refused, PlanError::NotEnoughCapacity { .. }), "{refused}");
    let partial = EvacuateOptions { partial: true, ..avoid };
    let plan = evacuate_with(&input, "a", &partial).unwrap();
    let last = plan.tables.last().unwrap();
    assert_eq!(last.weights["a"].get("b"), None, "nothing may go to a failing region");
    let short = plan.shortfall.clone().expect("a shortfall");
    assert!((short.kept_share - 2.0 / 3.0).abs() < 1e-3, "{short:?}");
    assert!((short.kept_rps - 200.0).abs() < 1e-6);
    assert!(short.missing["c"] > 0.0);
    // c ends at its limit, not above it.
    assert!((plan.load_after["c"] - 200.0).abs() < 0.5, "{:?}", plan.load_after);
    assert!((plan.moved_rps - 100.0).abs() < 1e-6);
    // Every region failing but the evacuated one: nowhere to go.
    let all = EvacuateOptions { avoid: BTreeSet::from(["b".to_string(), "c".to_string()]), partial: true };
    assert!(matches!(evacuate_with(&input, "a", &all), Err(PlanError::Alone(_))));
}
