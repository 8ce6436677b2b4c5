mod support;

use support::{TestProxy, config_text, get, h1_client, origin};

#[tokio::test]
async fn get_through_proxy() {
    let o = origin::start().await;
    let p = TestProxy::start(&config_text(o.addr, "")).await;
    let (status, headers, body) = get(&h1_client(), &p.url("/")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-flowgate-region"], "us-east-1");
    assert_eq!(&body[..], b"ok");
    p.stop().await;
}
