//! A row of the traffic table sends a region's traffic to a peer region, through its
//! load balancer, with the hop and source region marked for the origin.

mod support;

use support::fleet::{Fleet, FleetSpec};
use support::{get, h1_client};

#[tokio::test]
async fn a_row_sends_traffic_to_a_peer_region() {
    let table = r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 100}}}"#;
    let fleet = Fleet::start(FleetSpec { table: Some(table), lbs: true, ..Default::default() }).await;
    let a = fleet.region("us-east-1");
    fleet.wait_settled().await;
    let client = h1_client();
    for _ in 0..20 {
        let (status, headers, body) = get(&client, &a.proxy.url("/headers")).await;
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(headers["x-flowgate-region"], "us-west-2");
        let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(seen["x-flowgate-hops"], "1");
        assert_eq!(seen["x-flowgate-source-region"], "us-east-1");
    }
    assert_eq!(a.origin.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    fleet.stop().await;
}
