//! A crashed origin costs no request: three regions of two proxy processes (the built
//! binary), every row local, a steady client load into every region; us-east-1's origin
//! killed (its listener and every connection). Requests that find it gone go to another
//! region within the same request, and the refused connection takes the endpoint out of
//! use at once, so only the first requests need a retry.

mod support;

use std::time::Duration;

use support::admin::{metric_sum, metrics};
use support::outage::{self, Load, OutageFleet};
use support::wait::within;

const EAST: &str = "us-east-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_origin_fails_no_request_and_is_out_of_use_after_its_first_refusal() {
    let fleet = OutageFleet::start(2).await;
    let load = Load::start(outage::targets(&fleet, &[]), 40);
    load.wait_flowing(40).await;
    let killed_at = load.started.elapsed();
    fleet.region(EAST).origin.kill();
    // Out of use on every proxy of the region well before the probes (every 200 ms, two
    // failures needed) could have said so.
    let east: Vec<_> = fleet.region(EAST).proxies.iter().map(|p| p.admin).collect();
    let out_at = within(Duration::from_secs(5), || async {
        let mut all = true;
        for a in &east {
            let st = outage::status(*a).await.expect("status");
            all &= st["origins"]["api"]["healthy"] == false;
        }
        all
    })
    .await;
    let out_at = out_at.expect("the dead origin stayed in use");
    // The load runs on for a while after the kill: what it meets is the test.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let answers = load.stop().await;
    let entering_east: Vec<_> = answers.iter().filter(|a| a.region == EAST && a.sent >= killed_at).collect();
    let failed: Vec<_> = answers.iter().filter(|a| !a.ok).collect();
    let mut retries = 0.0;
    for a in &east {
        let m = metrics(*a).await;
        retries += metric_sum(&m, "flowgate_retries_total", &["reason=\"connect-failure\""])
            + metric_sum(&m, "flowgate_retries_total", &["reason=\"reset\""]);
    }
    println!(
        "origin killed under {} requests/s into each region: {} of {} requests entering {EAST} after the kill failed, {retries} retries, endpoint out of use on both proxies after {out_at:?}",
        40,
        failed.len(),
        entering_east.len()
    );
    assert!(failed.is_empty(), "{} requests failed: {:?}", failed.len(), failed.first());
    assert!(entering_east.len() > 100, "the load kept going: {}", entering_east.len());
    // Each proxy retries what was in flight and what it sent before its first refusal,
    // not every request until a probe catches up.
    assert!(retries <= 20.0, "{retries} retries: the endpoint was not taken out at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_post_refused_by_a_dead_origin_is_answered_by_another_region_in_the_same_request() {
    let fleet = OutageFleet::start(1).await;
    let east = &fleet.region(EAST).proxies[0];
    fleet.region(EAST).origin.kill();
    // The first request after the crash meets the refusal itself.
    let req = http::Request::post(format!("http://{}/orders", east.public))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{\"order\": 1}")))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), support::h1_client().request(req))
        .await
        .expect("in time")
        .expect("answered");
    assert_eq!(resp.status(), 200);
    let region = resp.headers()["x-flowgate-region"].to_str().expect("region").to_owned();
    assert_ne!(region, EAST, "answered by another region");
    assert_eq!(resp.headers()["x-flowgate-attempts"], "2", "the refused attempt, then another region");
}
