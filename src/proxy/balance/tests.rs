//! The endpoint set: p2c, health in both directions, ejection and slow start.

use super::*;
use rand::SeedableRng;

fn policy() -> SetPolicy {
    SetPolicy {
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        consecutive_failures: 3,
        base_ejection: Duration::from_secs(5),
        max_ejection: Duration::from_secs(60),
        max_ejected_percent: 50,
        panic_threshold_percent: 50,
        slow_start: Duration::ZERO,
    }
}

fn set(n: usize, p: SetPolicy) -> EndpointSet {
    EndpointSet::new((0..n).map(|i| format!("10.0.0.{i}:80").parse().unwrap()).collect(), p)
}

#[test]
fn p2c_prefers_the_less_loaded() {
    let s = set(2, policy());
    let _busy: Vec<_> = (0..10).map(|_| s.start(0).unwrap()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..100 {
        assert_eq!(s.pick(&mut rng, None), Some(1));
    }
}

#[test]
fn unhealthy_endpoints_are_skipped_until_panic() {
    let s = set(4, policy());
    for _ in 0..2 {
        s.probe_result(0, false);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..200 {
        assert_ne!(s.pick(&mut rng, None), Some(0));
    }
    for i in 1..3 {
        s.probe_result(i, false);
        s.probe_result(i, false);
    }
    // 1 of 4 usable is below the 50 % panic threshold: all four are used again.
    let mut seen = [false; 4];
    for _ in 0..400 {
        seen[s.pick(&mut rng, None).unwrap()] = true;
    }
    assert_eq!(seen, [true; 4]);
}

#[tokio::test(start_paused = true)]
async fn outliers_are_ejected_with_growing_backoff_and_a_cap_on_share() {
    let s = set(4, policy());
    for _ in 0..3 {
        s.record(0, false);
    }
    assert_eq!(s.usable_count(), 3);
    for _ in 0..3 {
        s.record(1, false);
    }
    assert_eq!(s.usable_count(), 2);
    for _ in 0..3 {
        s.record(2, false);
    }
    assert_eq!(s.usable_count(), 2, "never more than half ejected");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(s.usable_count(), 4);
    for _ in 0..3 {
        s.record(0, false);
    }
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(s.usable_count(), 3, "second ejection lasts twice as long");
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(s.usable_count(), 4);
}

#[test]
fn probe_thresholds() {
    let s = set(1, policy());
    assert_eq!(s.probe_result(0, false), None);
    assert_eq!(s.probe_result(0, false), Some(false));
    assert!(!s.any_usable());
    assert_eq!(s.probe_result(0, true), None);
    assert_eq!(s.probe_result(0, true), Some(true));
    assert!(s.any_usable());
}

#[test]
fn a_refused_connection_takes_the_endpoint_out_until_probes_pass() {
    let s = set(1, policy());
    assert!(s.mark_down(0));
    assert!(!s.any_usable(), "out at once, even as the only endpoint of its set");
    assert!(!s.mark_down(0), "already down");
    assert_eq!(s.probe_result(0, true), None);
    assert_eq!(s.probe_result(0, true), Some(true), "back after healthy_threshold probes");
    let two = set(2, policy());
    assert!(two.usable_besides(0));
    two.mark_down(1);
    assert!(!two.usable_besides(0));
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_warmth() {
    let mut p = policy();
    p.slow_start = Duration::from_secs(10);
    let s = set(1, p);
    assert_eq!(s.warmth(), 1.0);
    s.probe_result(0, false);
    s.probe_result(0, false);
    s.probe_result(0, true);
    s.probe_result(0, true);
    assert!(s.warmth() < 0.1);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!((s.warmth() - 0.5).abs() < 0.05, "{}", s.warmth());
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(s.warmth(), 1.0);
}
