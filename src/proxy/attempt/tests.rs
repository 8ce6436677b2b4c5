//! How the attempts of one request proceed: which failures are retried, and where the
//! retry goes (with target choice over a fixed world and a seeded generator).

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::proxy::choose::tests::{World, table};

const A: Target = Target::Local;
const B: Target = Target::Peer(0);
const C: Target = Target::Peer(1);

const GET: bool = true;
const POST: bool = false;

fn answered(status: u16) -> Seen {
    Seen::Answered { status: StatusCode::from_u16(status).expect("status"), kept_low: false }
}

#[test]
fn only_what_is_safe_to_send_again_is_retried() {
    let get = Attempts::new(GET, 0);
    let post = Attempts::new(POST, 0);
    assert_eq!(get.reason(Seen::Failed(ProxyError::ConnectFailed)), Some(Reason::Connect));
    assert_eq!(post.reason(Seen::Failed(ProxyError::ConnectFailed)), Some(Reason::Connect));
    assert_eq!(post.reason(Seen::Failed(ProxyError::UpstreamRefused)), Some(Reason::Connect));
    assert_eq!(get.reason(Seen::Failed(ProxyError::UpstreamReset)), Some(Reason::Reset));
    assert_eq!(post.reason(Seen::Failed(ProxyError::UpstreamReset)), None);
    assert_eq!(get.reason(Seen::Failed(ProxyError::Timeout)), None);
    for status in [502, 503, 504] {
        assert_eq!(get.reason(answered(status)), Some(Reason::Status), "{status}");
        assert_eq!(post.reason(answered(status)), None, "{status}");
    }
    assert_eq!(get.reason(answered(500)), None);
    assert_eq!(get.reason(answered(200)), None);
}

#[test]
fn a_500_from_a_region_kept_low_goes_to_another_region() {
    let t = table(&[("a", 1), ("b", 1)]);
    let mut world = World::healthy();
    world.kept[1] = 0.5;
    let chooser = Chooser { row: t.row(0), local_only: false, world };
    let mut state = Attempts::new(GET, 0);
    let seen = Seen::Answered { status: StatusCode::INTERNAL_SERVER_ERROR, kept_low: true };
    assert_eq!(state.reason(seen), Some(Reason::Status));
    assert_eq!(Attempts::new(POST, 0).reason(seen), None);
    state.retrying(Tried { target: B, path: Path::Lb, endpoint: 0 }, seen, Reason::Status, false);
    assert_eq!(state.steer, Steer { local_full: false, avoid: Some(B), unreachable: Some(B) });
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..100 {
        assert_eq!(chooser.choose(&mut rng, state.steer), Ok(A));
    }
}

#[test]
fn a_request_from_a_peer_is_retried_here_only_when_it_reached_no_upstream() {
    let forwarded = Attempts::new(GET, 1);
    assert_eq!(forwarded.reason(Seen::Failed(ProxyError::ConnectFailed)), Some(Reason::Connect));
    assert_eq!(forwarded.reason(Seen::Failed(ProxyError::UpstreamReset)), None);
    assert_eq!(forwarded.reason(answered(503)), None);
}

#[test]
fn a_crashed_local_origin_sends_the_retry_to_another_region_at_once() {
    // The row names only this region, and its origin refused the connection with no
    // other endpoint left: the retry goes to a healthy peer in the same request.
    let t = table(&[("a", 1)]);
    let chooser = Chooser { row: t.row(0), local_only: false, world: World::healthy() };
    let mut rng = StdRng::seed_from_u64(5);
    let mut state = Attempts::new(POST, 0);
    assert_eq!(chooser.choose(&mut rng, state.steer), Ok(A));
    let seen = Seen::Failed(ProxyError::ConnectFailed);
    let tried = Tried { target: A, path: Path::Direct, endpoint: 0 };
    let reason = state.reason(seen).expect("a refused connection is retried");
    state.retrying(tried, seen, reason, true);
    assert_eq!(state.steer.unreachable, Some(A));
    let next = chooser.choose(&mut rng, state.steer).expect("a target");
    assert!(next == B || next == C, "{next:?}");
    // Its second attempt lands on a peer that resets it: a POST stops there.
    let tried = Tried { target: next, path: Path::Direct, endpoint: 0 };
    assert_eq!(state.reason(Seen::Failed(ProxyError::UpstreamReset)), None, "{tried:?}");
}

#[test]
fn with_another_endpoint_left_the_local_origin_is_tried_again_on_it() {
    let t = table(&[("a", 1)]);
    let chooser = Chooser { row: t.row(0), local_only: false, world: World::healthy() };
    let mut state = Attempts::new(GET, 0);
    let seen = Seen::Failed(ProxyError::ConnectFailed);
    state.retrying(Tried { target: A, path: Path::Direct, endpoint: 2 }, seen, Reason::Connect, false);
    assert_eq!(state.steer.unreachable, None);
    assert_eq!(chooser.choose(&mut StdRng::seed_from_u64(5), state.steer), Ok(A));
    assert_eq!(state.exclude(A, Path::Direct), Some(2), "not the endpoint that refused");
}

#[test]
fn a_failed_load_balancer_sends_the_retry_through_the_region_s_proxies() {
    let mut state = Attempts::new(GET, 0);
    let seen = Seen::Failed(ProxyError::UpstreamReset);
    state.retrying(Tried { target: B, path: Path::Lb, endpoint: 1 }, seen, Reason::Reset, false);
    assert_eq!(state.avoid_lb, Some(0));
    assert_eq!(state.steer, Steer { local_full: false, avoid: Some(B), unreachable: None });
    assert_eq!(state.exclude(B, Path::Lb), Some(1));
    assert_eq!(state.exclude(B, Path::Direct), None, "another set: any endpoint");
    // The region's proxies reset it too: now the region itself is unreachable.
    state.retrying(Tried { target: B, path: Path::Direct, endpoint: 0 }, seen, Reason::Reset, false);
    assert_eq!(state.steer.unreachable, Some(B));
    assert_eq!(state.avoid_lb, Some(0));
}

#[test]
fn a_region_failing_by_both_paths_is_left_for_another_one() {
    // The row sends everything to b. Its load balancer refuses the connection: b again,
    // through its proxies. They reset the request: another healthy region.
    let t = table(&[("b", 1)]);
    let chooser = Chooser { row: t.row(0), local_only: false, world: World::healthy() };
    let mut rng = StdRng::seed_from_u64(9);
    let mut state = Attempts::new(GET, 0);
    let mut went = Vec::new();
    for seen in
        [Seen::Failed(ProxyError::ConnectFailed), Seen::Failed(ProxyError::UpstreamReset), answered(200)]
    {
        let target = chooser.choose(&mut rng, state.steer).expect("a target");
        // As `Attempts::path` decides for a peer whose two paths are both usable.
        let path = match target {
            Target::Peer(i) if state.avoid_lb != Some(i) => Path::Lb,
            _ => Path::Direct,
        };
        went.push((target, path));
        let Some(reason) = state.reason(seen) else { break };
        state.retrying(Tried { target, path, endpoint: 0 }, seen, reason, false);
    }
    assert_eq!(went, [(B, Path::Lb), (B, Path::Direct), (C, Path::Lb)]);
}
