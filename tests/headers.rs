//! The header rules of the contract: hop-by-hop fields never
//! reach the origin; `x-forwarded-for`, `via` and `x-request-id` do; a client's
//! `x-flowgate-*` fields on the public listener never do; every response says its region;
//! a request no route matches gets the proxy's own 404 saying `no-route`.
//!
//! Requests go over raw TCP where a client library would itself drop or rewrite the
//! hop-by-hop fields, so the proxy is the only thing that can remove them.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::{ProxyConfig, TestProxy, config_text, h1_client, origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);
/// A response larger than this is a bug, not something to keep reading.
const MAX_RESPONSE: usize = 1024 * 1024;

/// A parsed HTTP/1.1 response: status, lower-cased header pairs, decoded body.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_slice(&self.body) {
            Ok(serde_json::Value::Object(m)) => m,
            other => panic!("origin /headers did not answer a JSON object: {other:?}"),
        }
    }
}

/// Writes `head` (request line and headers, without the blank line; it must ask for
/// `Connection: close`) on a fresh connection and reads the response to EOF.
async fn raw_request(addr: SocketAddr, head: &str) -> RawResponse {
    let mut s = timeout(LIMIT, TcpStream::connect(addr)).await.expect("connect in time").expect("connect");
    let req = format!("{}\r\n\r\n", head.trim_end().replace('\n', "\r\n"));
    timeout(LIMIT, s.write_all(req.as_bytes())).await.expect("write in time").expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let read_all = async {
        loop {
            let n = s.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            assert!(buf.len() <= MAX_RESPONSE, "response too large");
        }
    };
    timeout(LIMIT, read_all).await.expect("the proxy closes the connection after the response");
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> RawResponse {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("end of response head");
    let head = std::str::from_utf8(&buf[..end]).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let rest = &buf[end + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    if let Some(len) = headers.iter().find(|(k, _)| k == "content-length") {
        assert_eq!(len.1.parse::<usize>().ok(), Some(body.len()), "content-length matches the body");
    }
    RawResponse { status, headers, body }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // Bounded: every round consumes at least the size line, or ends.
    for _ in 0..=rest.len() {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("chunk size");
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("hex size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    panic!("malformed chunked body");
}

/// `GET /headers` over raw HTTP/1.1 with `fields` after `Host` and `Connection: close`:
/// the answer, which must be a 200 (the origin's reflection of what it got).
async fn headers_seen(p: &TestProxy, fields: &str) -> RawResponse {
    let head = format!("GET /headers HTTP/1.1\nHost: example.test\nConnection: close{fields}");
    let resp = raw_request(p.addrs.public, &head).await;
    assert_eq!(resp.status, 200);
    resp
}

#[tokio::test]
async fn hop_by_hop_fields_do_not_reach_the_origin() {
    let (_o, p) = support::fronted("").await;
    let resp = raw_request(
        p.addrs.public,
        "GET /headers HTTP/1.1
Host: example.test
Connection: close, X-Conn-Named, x-other-named
X-Conn-Named: secret
X-Other-Named: secret too
Keep-Alive: timeout=5, max=100
Proxy-Connection: keep-alive
TE: gzip, deflate
Upgrade: websocket
X-End-To-End: kept",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-flowgate-region"), Some("us-east-1"));
    let seen = resp.json();
    // The origin reflects what it got: a plain end-to-end field is there...
    assert_eq!(seen.get("x-end-to-end").and_then(|v| v.as_str()), Some("kept"), "{seen:?}");
    // ...and no hop-by-hop one is.
    for name in
        ["connection", "x-conn-named", "x-other-named", "keep-alive", "proxy-connection", "te", "upgrade"]
    {
        assert!(!seen.contains_key(name), "`{name}` reached the origin: {seen:?}");
    }
    p.stop().await;
}

#[tokio::test]
async fn te_trailers_is_the_only_te_that_passes() {
    let (_o, p) = support::fronted("").await;
    let resp = headers_seen(
        &p,
        "
TE: gzip, trailers",
    )
    .await;
    let seen = resp.json();
    assert_eq!(seen.get("te").and_then(|v| v.as_str()), Some("trailers"), "{seen:?}");
    p.stop().await;
}

#[tokio::test]
async fn forwarding_fields_reach_the_origin() {
    let (_o, p) = support::fronted("").await;

    // Client-supplied values: x-forwarded-for is appended to, via is appended to, the
    // request id is kept.
    let resp = headers_seen(
        &p,
        "
X-Forwarded-For: 203.0.113.7
Via: 1.1 corporate-proxy
X-Request-Id: client-id-42",
    )
    .await;
    let seen = resp.json();
    let get = |k: &str| seen.get(k).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("no `{k}`: {seen:?}"));
    assert_eq!(get("x-forwarded-for"), "203.0.113.7, 127.0.0.1");
    let via = get("via");
    assert!(via.starts_with("1.1 corporate-proxy"), "the client's via is kept: {via}");
    assert!(via.contains("flowgate-us-east-1"), "the proxy adds itself to via: {via}");
    assert_eq!(get("x-request-id"), "client-id-42");
    assert_eq!(get("x-forwarded-proto"), "http");

    // No client values: the proxy makes them.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = headers_seen(&p, "").await;
        let seen = resp.json();
        let get = |k: &str| {
            seen.get(k).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("no `{k}`: {seen:?}")).to_owned()
        };
        assert_eq!(get("x-forwarded-for"), "127.0.0.1");
        assert!(get("via").contains("flowgate-us-east-1"));
        let id = get("x-request-id");
        assert!(!id.trim().is_empty(), "a request id is made when absent");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each request gets its own id");
    p.stop().await;
}

#[tokio::test]
async fn client_flowgate_fields_never_reach_the_origin() {
    let (_o, p) = support::fronted("").await;
    let resp = headers_seen(
        &p,
        "
X-Flowgate-Hops: 0
x-flowgate-source-region: eu-west-1
X-FLOWGATE-Anything: steer-me
X-Flowgateish: not-ours",
    )
    .await;
    let seen = resp.json();
    let leaked: Vec<&String> = seen.keys().filter(|k| k.starts_with("x-flowgate-")).collect();
    assert!(leaked.is_empty(), "x-flowgate-* fields from a public client reached the origin: {leaked:?}");
    // Only the prefix is reserved: a lookalike name passes.
    assert_eq!(seen.get("x-flowgateish").and_then(|v| v.as_str()), Some("not-ours"), "{seen:?}");

    // The same over HTTP/2 (h2c), where there is no hop-by-hop syntax to hide behind.
    let req = http::Request::builder()
        .uri(p.url("/headers"))
        .header("x-flowgate-hops", "0")
        .header("x-flowgate-source-region", "eu-west-1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = timeout(LIMIT, support::h2c_client().request(req)).await.expect("in time").expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = timeout(LIMIT, resp.into_body().collect()).await.expect("in time").expect("body").to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let seen = seen.as_object().expect("object");
    assert!(seen.keys().all(|k| !k.starts_with("x-flowgate-")), "{seen:?}");
    assert!(seen.contains_key("x-request-id"), "{seen:?}");
    p.stop().await;
}

#[tokio::test]
async fn every_response_names_the_region() {
    let o = origin::start().await;
    let dead = origin::refusing_addr().await;
    let extra = format!(
        r#"
[origins.dead]
endpoints = ["{dead}"]

[[routes]]
host = "*"
path_prefix = "/dead"
origin = "dead"
"#
    );
    let p = TestProxy::start(&config_text(o.addr, &extra)).await;
    let client = h1_client();
    // From the origin, streamed and whole, and made by the proxy itself.
    for (path, status) in [("/", 200), ("/headers", 200), ("/bytes/100000", 200), ("/dead/x", 502)] {
        let (s, h, _) = support::get(&client, &p.url(path)).await;
        assert_eq!(s, status, "{path}");
        assert_eq!(h.get("x-flowgate-region").map(|v| v.as_bytes()), Some(&b"us-east-1"[..]), "{path}");
    }
    let (s, h, _) = support::get(&support::h2c_client(), &p.url("/")).await;
    assert_eq!(s, 200);
    assert_eq!(h.get("x-flowgate-region").map(|v| v.as_bytes()), Some(&b"us-east-1"[..]), "over h2c");
    p.stop().await;
}

#[tokio::test]
async fn no_route_is_a_404_made_by_the_proxy() {
    let o = origin::start().await;
    // Only api.example.com is routed, so any other host misses.
    let text = ProxyConfig::new("us-east-1", o.addr).route_host("api.example.com").text();
    assert!(text.contains("host = \"api.example.com\""), "the config routes one host only:\n{text}");
    let p = TestProxy::start(&text).await;

    let miss =
        raw_request(p.addrs.public, "GET /headers HTTP/1.1\nHost: other.example.com\nConnection: close")
            .await;
    assert_eq!(miss.status, 404);
    assert_eq!(miss.header("x-flowgate-error"), Some("no-route"));
    assert_eq!(miss.header("x-flowgate-region"), Some("us-east-1"));
    assert_eq!(o.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "a miss never reaches the origin");

    // The routed host still works, so the 404 above is the route miss and nothing else.
    let hit =
        raw_request(p.addrs.public, "GET /headers HTTP/1.1\nHost: api.example.com\nConnection: close").await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.header("x-flowgate-error"), None);
    assert_eq!(hit.json().get("host").and_then(|v| v.as_str()), Some("api.example.com"));
    assert_eq!(o.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    p.stop().await;
}

/// An origin that gives every request on a connection the same `answer`, byte for byte.
async fn fixed_origin(answer: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind raw origin");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                // Bounded by the connection: every round reads bytes or ends.
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&chunk[..n]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        head.drain(..end + 4);
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Every field of an origin's answer reaches the client but the hop-by-hop ones and the
/// fleet's, whichever of the proxy's ways to carry them the answer took.
#[tokio::test]
async fn an_origins_answer_reaches_the_client_without_its_hop_by_hop_fields() {
    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    let plain = "HTTP/1.1 200 OK\r\nServer: Raw/1\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                 Set-Cookie: a=1\r\nX-Flowgate-Region: forged\r\nKeep-Alive: timeout=5\r\n\
                 set-cookie: b=2\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
    let naming = "HTTP/1.1 200 OK\r\nX-Named: secret\r\nServer: Raw/1\r\nConnection: X-Named\r\n\
                  Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
                  Keep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok";
    for answer in [plain, naming] {
        let origin = fixed_origin(answer).await;
        let p = TestProxy::start(&config_text(origin, "")).await;
        let resp =
            raw_request(p.addrs.public, "GET /x HTTP/1.1\nHost: example.test\nConnection: close").await;
        assert_eq!(resp.status, 200, "{answer:?}");
        assert_eq!(resp.body, b"ok");
        let all = |name: &str| -> Vec<&str> {
            resp.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
        };
        assert_eq!(all("server"), ["Raw/1"], "{:?}", resp.headers);
        assert_eq!(all("date"), [DATE], "{:?}", resp.headers);
        assert_eq!(all("set-cookie"), ["a=1", "b=2"], "{:?}", resp.headers);
        assert_eq!(all("x-flowgate-region"), ["us-east-1"], "{:?}", resp.headers);
        assert_eq!(all("connection"), ["close"], "{:?}", resp.headers);
        for name in ["keep-alive", "x-named"] {
            assert!(all(name).is_empty(), "`{name}` reached the client: {:?}", resp.headers);
        }
        p.stop().await;
    }
}
