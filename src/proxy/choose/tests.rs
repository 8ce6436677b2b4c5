//! Target choice over a fixed world with a seeded generator: which region each situation
//! sends a request to.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::table::Table;
use crate::table::compile::Regions;

const A: Target = Target::Local;

/// Three regions (`a` is this one), each with a usable share, room, and what outlier
/// detection leaves it; index as [`Target::index`].
#[derive(Clone)]
pub(in crate::proxy) struct World {
    pub(in crate::proxy) share: [f64; 3],
    pub(in crate::proxy) room: [bool; 3],
    pub(in crate::proxy) kept: [f64; 3],
    pub(in crate::proxy) local_endpoints: bool,
}

impl World {
    pub(in crate::proxy) fn healthy() -> World {
        World { share: [1.0; 3], room: [true; 3], kept: [1.0; 3], local_endpoints: true }
    }
}

impl Capacity for World {
    fn share(&self, t: Target, room: bool, local_full: bool) -> f64 {
        let i = t.index();
        let full = !self.room[i] || (t == Target::Local && local_full);
        if room && full { 0.0 } else { self.share[i] }
    }

    fn kept(&self, t: Target) -> f64 {
        self.kept[t.index()]
    }

    fn peers(&self) -> usize {
        2
    }

    fn local_has_endpoints(&self) -> bool {
        self.local_endpoints
    }
}

/// The compiled table of region `a` whose row is `pairs`, for one origin.
pub(in crate::proxy) fn table(pairs: &[(&str, u64)]) -> CompiledTable {
    let mut t = Table::local_only();
    t.version = 1;
    t.weights.insert("a".into(), pairs.iter().map(|(n, w)| (n.to_string(), *w)).collect());
    let regions = Regions { names: vec!["a".into(), "b".into(), "c".into()] };
    CompiledTable::compile(t, &regions, &["api".into()], &[])
}

fn chooser(table: &CompiledTable, world: World) -> Chooser<'_, World> {
    Chooser { row: table.row(0), local_only: false, world }
}

/// How often each region is chosen in `n` choices from seed 7.
fn counts(c: &Chooser<'_, World>, steer: Steer, n: usize) -> [usize; 3] {
    let mut rng = StdRng::seed_from_u64(7);
    let mut seen = [0; 3];
    for _ in 0..n {
        seen[c.choose(&mut rng, steer).expect("a target").index()] += 1;
    }
    seen
}

#[test]
fn the_row_weights_the_choice_and_a_seed_repeats_it() {
    let t = table(&[("a", 3), ("b", 1)]);
    let c = chooser(&t, World::healthy());
    let [a, b, other] = counts(&c, Steer::default(), 4000);
    assert_eq!(other, 0, "c is not in the row");
    assert!((2800..=3200).contains(&a) && a + b == 4000, "a {a}, b {b}");
    let draw = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..50).map(|_| c.choose(&mut rng, Steer::default())).collect::<Vec<_>>()
    };
    assert_eq!(draw(11), draw(11));
}

#[test]
fn the_last_target_is_passed_over_while_the_row_has_another() {
    let t = table(&[("a", 1), ("b", 1)]);
    let c = chooser(&t, World::healthy());
    let steer = Steer { avoid: Some(A), ..Steer::default() };
    assert_eq!(counts(&c, steer, 200), [0, 200, 0]);
}

#[test]
fn a_row_of_one_target_tries_it_again_unless_it_is_unreachable() {
    let t = table(&[("a", 1)]);
    let c = chooser(&t, World::healthy());
    let again = Steer { avoid: Some(A), ..Steer::default() };
    assert_eq!(counts(&c, again, 100), [100, 0, 0], "after an answer, capacity spills only within the row");
    let unreachable = Steer { avoid: Some(A), unreachable: Some(A), ..Steer::default() };
    let [a, b, other] = counts(&c, unreachable, 1000);
    assert_eq!(a, 0);
    assert!(b > 400 && other > 400, "any other healthy region: b {b}, c {other}");
    let mut c_down = World::healthy();
    c_down.share[2] = 0.0;
    assert_eq!(counts(&chooser(&t, c_down), unreachable, 100), [0, 100, 0]);
}

#[test]
fn a_full_row_sheds_rather_than_spilling_elsewhere() {
    let t = table(&[("a", 1)]);
    let c = chooser(&t, World::healthy());
    let mut rng = StdRng::seed_from_u64(1);
    let full = Steer { local_full: true, ..Steer::default() };
    assert_eq!(c.choose(&mut rng, full), Err(ProxyError::OriginBusy));
    let mut no_room = World::healthy();
    no_room.room[0] = false;
    assert_eq!(chooser(&t, no_room).choose(&mut rng, Steer::default()), Err(ProxyError::OriginBusy));
}

#[test]
fn when_the_row_is_down_any_healthy_region_serves() {
    let t = table(&[("a", 1)]);
    let mut world = World::healthy();
    world.share[0] = 0.0;
    let [a, b, other] = counts(&chooser(&t, world), Steer::default(), 1000);
    assert_eq!(a, 0);
    assert!(b > 400 && other > 400, "b {b}, c {other}");
}

#[test]
fn when_nothing_looks_healthy_the_local_origin_is_tried() {
    let t = table(&[("a", 1), ("b", 1)]);
    let mut world = World::healthy();
    world.share = [0.0; 3];
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(chooser(&t, world.clone()).choose(&mut rng, Steer::default()), Ok(A));
    let full = Steer { local_full: true, ..Steer::default() };
    assert_eq!(chooser(&t, world.clone()).choose(&mut rng, full), Err(ProxyError::OriginBusy));
    world.local_endpoints = false;
    assert_eq!(chooser(&t, world).choose(&mut rng, Steer::default()), Err(ProxyError::NoEndpoint));
}

#[test]
fn a_local_only_request_stays_or_is_shed() {
    let t = table(&[("b", 1)]);
    let c = Chooser { row: t.row(0), local_only: true, world: World::healthy() };
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(c.choose(&mut rng, Steer::default()), Ok(A));
    assert_eq!(
        c.choose(&mut rng, Steer { local_full: true, ..Steer::default() }),
        Err(ProxyError::OriginBusy)
    );
    let unrouted = Chooser { row: None, local_only: false, world: World::healthy() };
    assert_eq!(unrouted.choose(&mut rng, Steer::default()), Err(ProxyError::NoRoute));
}

#[test]
fn a_region_kept_low_keeps_only_its_share_of_what_the_row_gives_it() {
    let mut world = World::healthy();
    world.kept[0] = 0.1;
    // Half the row's traffic, a tenth of it kept: about 5 %; the rest goes to b.
    let t = table(&[("a", 1), ("b", 1)]);
    let [a, b, other] = counts(&chooser(&t, world.clone()), Steer::default(), 10_000);
    assert!((300..=700).contains(&a), "a kept {a} of 10000");
    assert_eq!((a + b, other), (10_000, 0));
    // A row naming only a: the rest goes to the other healthy regions at full share.
    let only = table(&[("a", 1)]);
    world.kept[2] = 0.5;
    let [a, b, other] = counts(&chooser(&only, world), Steer::default(), 10_000);
    assert!((800..=1200).contains(&a), "a kept {a} of 10000");
    assert_eq!((a + b, other), (10_000, 0), "c, kept low itself, takes none of a's share");
}
