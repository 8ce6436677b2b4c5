//! Deadlines across regions: a forwarded request tells the peer how long the sender will
//! still wait (`x-flowgate-deadline-ms`), and the peer never waits longer than that.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::fleet::{Fleet, FleetSpec};
use support::{get, h1_client};

#[tokio::test]
async fn the_remaining_time_travels_and_bounds_the_peer() {
    let table = r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 100}}}"#;
    let fleet = Fleet::start(FleetSpec {
        regions: &["us-east-1", "us-west-2"],
        table: Some(table),
        extra: "[timeouts]\nrequest = \"2s\"\n",
        ..Default::default()
    })
    .await;
    let (a, b) = (fleet.region("us-east-1"), fleet.region("us-west-2"));
    fleet.wait_settled().await;

    // Through A: B's origin sees the budget A gave it, at most A's request timeout.
    let (status, headers, body) = get(&h1_client(), &a.proxy.url("/headers")).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(headers["x-flowgate-region"], "us-west-2");
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let ms: u64 =
        seen["x-flowgate-deadline-ms"].as_str().and_then(|v| v.parse().ok()).expect("a deadline header");
    assert!(ms > 0 && ms <= 2000, "deadline {ms} ms");

    // Straight at B's peer listener: a 300 ms deadline cuts a 1.5 s origin wait short,
    // although B's own request timeout is 2 s.
    let client = h1_client();
    let req = http::Request::get(format!("http://{}/slow/1500", b.peer_addr))
        .header("x-flowgate-hops", "1")
        .header("x-flowgate-deadline-ms", "300")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let t0 = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .expect("in time")
        .expect("answer");
    let took = t0.elapsed();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-flowgate-error"], "timeout");
    let _ = resp.into_body().collect().await;
    assert!(took < Duration::from_millis(1000), "the peer waited {took:?} despite a 300 ms deadline");
    assert!(took >= Duration::from_millis(250), "{took:?}");

    // A public client cannot set one: the header is stripped and the full timeout applies.
    let req = http::Request::get(a.proxy.url("/slow/500"))
        .header("x-flowgate-deadline-ms", "1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .expect("in time")
        .expect("answer");
    assert_eq!(resp.status(), 200);
    fleet.stop().await;
}
