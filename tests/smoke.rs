//! One GET through one proxy to its origin.

mod support;

use support::{get, h1_client};

#[tokio::test]
async fn get_through_proxy() {
    let (_o, p) = support::fronted("").await;
    let (status, headers, body) = get(&h1_client(), &p.url("/")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-flowgate-region"], "us-east-1");
    assert_eq!(&body[..], b"ok");
    p.stop().await;
}
