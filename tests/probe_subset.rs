//! Deterministic subsetting: a proxy probes, and bypasses to, only `[health] peer_subset`
//! of a peer region's proxies, with a stand-in joining while a member is down.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::admin::metric_sum;
use support::fleet::{Fleet, FleetSpec};
use support::wait::wait_for;
use support::{TestProxy, get, h1_client};

const A: &str = "us-east-1";
const B: &str = "us-west-2";

async fn metrics(p: &TestProxy) -> String {
    support::admin::metrics(p.addrs.admin).await
}

async fn status(p: &TestProxy) -> Value {
    support::admin::status(p.addrs.admin).await
}

/// The peer proxies of `region` that `p` exports a verdict for: the ones it probes.
async fn probed(p: &TestProxy, region: &str) -> BTreeSet<String> {
    let want = format!("region=\"{region}\"");
    metrics(p)
        .await
        .lines()
        .filter(|l| {
            l.starts_with("flowgate_endpoint_healthy{") && l.contains("kind=\"proxies\"") && l.contains(&want)
        })
        .filter_map(|l| l.split("endpoint=\"").nth(1).and_then(|r| r.split('"').next()).map(str::to_owned))
        .collect()
}

async fn wait_probed(
    p: &TestProxy,
    region: &str,
    what: impl Fn(&BTreeSet<String>) -> bool,
) -> BTreeSet<String> {
    wait_for("the probed set to settle", Duration::from_secs(10), || async {
        let now = probed(p, region).await;
        if what(&now) { Ok(now) } else { Err(format!("{now:?}")) }
    })
    .await
}

/// Peer requests each of `region`'s proxies served, by peer address.
async fn served_by_peer(fleet: &Fleet, region: &str) -> Vec<(String, f64)> {
    let r = fleet.region(region);
    let mut out = Vec::new();
    for (p, addr) in r.proxies().zip(&r.peer_addrs) {
        out.push((
            addr.to_string(),
            metric_sum(&metrics(p).await, "flowgate_requests_total", &["listener=\"peer\""]),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_probes_and_bypasses_to_a_subset_with_stand_ins_for_members_that_are_down() {
    let table = format!(
        r#"{{"version": 1, "weights": {{"{A}": {{"{B}": 100}}}}, "peer_modes": {{"{B}": "direct"}}}}"#
    );
    let mut fleet = Fleet::start(FleetSpec {
        regions: &[A, B],
        table: Some(&table),
        proxies_per_region: 6,
        health_interval: Duration::from_millis(100),
        // Who gets traffic, not how fast a member that came up late ramps up: without
        // this, a member whose first probe found it still starting would take 5 % of
        // its share for 10 s and might see none of the requests below.
        extra: "[balance]\nslow_start = \"0s\"\n",
        ..FleetSpec::default()
    })
    .await;
    let a = &fleet.region(A).proxy;

    // Three of B's six proxies, and only those, are probed (the default `peer_subset`).
    let subset = wait_probed(a, B, |s| s.len() == 3).await;
    let st = status(a).await;
    assert_eq!(st["targets"][B]["endpoints"]["proxies"]["total"], 3, "{st}");
    let before = metric_sum(&metrics(a).await, "flowgate_probes_total", &["kind=\"proxies\""]);
    // The window over which the probes are counted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probes = metric_sum(&metrics(a).await, "flowgate_probes_total", &["kind=\"proxies\""]) - before;
    // 3 members every 100 ms (± 10 % jitter) is about 30 a second; all six would be 60.
    assert!((15.0..=45.0).contains(&probes), "{probes} probes of B's proxies in 1 s");

    // Bypassed traffic goes to the subset only, once all three have passed their probes.
    wait_for("the whole subset to be usable", Duration::from_secs(10), || async {
        let st = status(a).await;
        if st["targets"][B]["endpoints"]["proxies"]["usable"] == 3 { Ok(()) } else { Err(st) }
    })
    .await;
    let client = h1_client();
    for _ in 0..60 {
        let (status, headers, _) = get(&client, &a.url("/")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-flowgate-region"], B);
    }
    for (addr, n) in served_by_peer(&fleet, B).await {
        if subset.contains(&addr) {
            assert!(n > 0.0, "member {addr} of the subset got nothing");
        } else {
            assert_eq!(n, 0.0, "{addr} is outside the subset {subset:?} but served {n}");
        }
    }

    // A member that dies gets a stand-in; requests keep succeeding meanwhile. (The
    // region's first proxy is not in `more`: pick another member.)
    let b_index = fleet.regions.iter().position(|r| r.name == B).expect("region B");
    let peers = fleet.regions[b_index].peer_addrs.clone();
    let (dead, index) = subset
        .iter()
        .filter_map(|m| peers.iter().position(|a| a.to_string() == *m).map(|i| (m.clone(), i)))
        .find(|(_, i)| *i > 0)
        .expect("a member other than the first proxy");
    fleet.regions[b_index].more.remove(index - 1).stop().await;
    let a = &fleet.region(A).proxy;
    let with_stand_in = wait_probed(a, B, |s| s.len() == 4 && s.contains(&dead)).await;
    let stand_in: Vec<&String> = with_stand_in.difference(&subset).collect();
    assert_eq!(stand_in.len(), 1, "{with_stand_in:?} against {subset:?}");
    wait_for("the stand-in to become usable", Duration::from_secs(10), || async {
        let st = status(a).await;
        if st["targets"][B]["endpoints"]["proxies"]["usable"] == 3 { Ok(()) } else { Err(st) }
    })
    .await;
    for _ in 0..30 {
        let (status, headers, _) = get(&client, &a.url("/")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-flowgate-region"], B);
    }
    fleet.stop().await;
}
