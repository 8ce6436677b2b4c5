//! The admin dashboard (`GET /`): rendered server-side (no JavaScript needed), and live in
//! headless Chromium with no network but loopback.
//!
//! Two regions on loopback, each a real proxy in front of a real origin; the proxy of
//! `us-east-1` takes table pushes with a bearer token from `[admin] token_file`.

mod browser;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use support::admin::{put_str, status};
use support::config::free_addr;
use support::origin::{self, Origin};
use support::wait::wait_for;
use support::{ProxyConfig, TestProxy};

const A: &str = "us-east-1";
const B: &str = "us-west-2";
const TOKEN: &str = "dashboard-test-token";
const MAX_PAGE: usize = 200 * 1024;

const TABLE_V1: &str = r#"{"version": 1, "weights": {"us-east-1": {"us-east-1": 60, "us-west-2": 40}},
  "note": "dashboard test: start"}"#;
const TABLE_V2: &str = r#"{"version": 2, "weights": {"us-east-1": {"us-east-1": 20, "us-west-2": 80}},
  "note": "dashboard test: shift to us-west-2"}"#;

struct Pair {
    a: TestProxy,
    b: TestProxy,
    _origins: (Origin, Origin),
    _dir: tempfile::TempDir,
}

fn config(
    name: &str,
    peer: SocketAddr,
    origin: SocketAddr,
    other: &str,
    other_peer: SocketAddr,
    admin: &str,
) -> ProxyConfig {
    let mut cfg = ProxyConfig::new(name, origin)
        .peer_listen(Some(peer))
        .admin("token_env = \"FLOWGATE_DASHBOARD_TEST_UNSET\"")
        .peer(other, &[other_peer])
        .health("200ms", "100ms");
    if !admin.is_empty() {
        cfg = cfg.top("table = \"table.json\"").admin(admin);
    }
    cfg
}

impl Pair {
    async fn start() -> Pair {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, format!("dashboard-test {TOKEN}\n")).expect("tokens");
        std::fs::write(dir.path().join("table.json"), TABLE_V1).expect("table");
        let (oa, ob) = (origin::start().await, origin::start().await);
        let (pa, pb) = (free_addr(), free_addr());
        let b_cfg = config(B, pb, ob.addr, A, pa, "").load_in(dir.path(), B);
        let token_file = format!("token_file = {:?}", tokens.display().to_string());
        let a_cfg = config(A, pa, oa.addr, B, pb, &token_file).load_in(dir.path(), A);
        let b = TestProxy::start_with(b_cfg).await;
        let a = TestProxy::start_with(a_cfg).await;
        Pair { a, b, _origins: (oa, ob), _dir: dir }
    }

    fn dashboard(&self) -> String {
        format!("http://{}/", self.a.addrs.admin)
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
    }
}

async fn request(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut req = Request::builder().method(method).uri(url).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).expect("request");
    let (status, headers, body) = support::admin::request(req).await;
    (StatusCode::from_u16(status).expect("status"), headers, body)
}

async fn push(pair: &Pair, table: &str) {
    let (status, body) = put_str(pair.a.addrs.admin, TOKEN, table).await;
    assert_eq!(status, 200, "push: {body}");
}

/// Waits until the proxies see each other healthy, so that shares and health are settled.
async fn settled(pair: &Pair) {
    wait_for("the regions to see each other healthy", Duration::from_secs(10), || async {
        let st = status(pair.a.addrs.admin).await;
        if st["targets"][B]["healthy"] == true && st["targets"][A]["healthy"] == true {
            Ok(())
        } else {
            Err(st)
        }
    })
    .await;
}

/// Without any browser: the page is HTML with the state rendered in it, small, and
/// refers to nothing outside this listener.
#[tokio::test]
async fn dashboard_is_rendered_server_side() {
    let pair = Pair::start().await;
    settled(&pair).await;
    let (status, headers, body) = support::get(&support::h1_client(), &pair.dashboard()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(csp.starts_with("default-src 'none'; connect-src 'self'"), "{csp}");
    assert!(body.len() < MAX_PAGE, "page is {} bytes", body.len());
    let page = String::from_utf8(body.to_vec()).expect("utf-8");
    for want in [
        r#"<span id="region">us-east-1</span>"#,
        r#"<b id="version">1</b>"#,
        r#"id="share-us-east-1" data-region="us-east-1" data-share="0.6">60%</td>"#,
        r#"id="share-us-west-2" data-region="us-west-2" data-share="0.4">40%</td>"#,
        r#"<span class="seg" data-region="us-west-2""#,
        r#"<tr data-version="1">"#,
        "dashboard test: start",
        r#"data-state="snapshot""#,
        r#"<noscript><meta http-equiv="refresh" content="10"></noscript>"#,
    ] {
        assert!(page.contains(want), "no {want:?} in the page:\n{page}");
    }
    // Self-contained: no src attribute, no stylesheet or font from anywhere, every link
    // relative to this listener, and the only absolute URL the SVG namespace.
    for banned in ["src=", "@import", "url(", "@font-face", "stylesheet", "//cdn"] {
        assert!(!page.contains(banned), "the page has {banned:?}");
    }
    for href in page.split("href=\"").skip(1) {
        assert!(
            href.starts_with("v1/") || href.starts_with("metrics") || href.starts_with("data:image/svg+xml,"),
            "link {:?}",
            &href[..20.min(href.len())]
        );
    }
    let absolute: Vec<&str> =
        page.match_indices("http").map(|(i, _)| &page[i..(i + 30).min(page.len())]).collect();
    assert!(
        absolute.iter().all(|s| s.starts_with("http://www.w3.org/2000/svg") || s.starts_with("http-equiv")),
        "{absolute:?}"
    );

    // After a push, the next page load shows the new table.
    push(&pair, TABLE_V2).await;
    let (_, _, body) = support::get(&support::h1_client(), &pair.dashboard()).await;
    let page = String::from_utf8(body.to_vec()).expect("utf-8");
    assert!(page.contains(r#"<b id="version">2</b>"#));
    assert!(page.contains(r#"id="share-us-west-2" data-region="us-west-2" data-share="0.8">80%</td>"#));
    assert!(page.contains(r#"<tr data-version="2">"#));
    assert!(page.find(r#"<tr data-version="2">"#) < page.find(r#"<tr data-version="1">"#), "newest first");

    // Only reads.
    let (status, headers, _) = request(Method::POST, &pair.dashboard(), Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD");
    pair.stop().await;
}

/// What the page shows now, read from the DOM.
const READ: &str = r#"
const q = (id) => document.getElementById(id);
const shares = {};
for (const td of document.querySelectorAll('#targets td.share[data-region]'))
  shares[td.dataset.region] = {share: Number(td.dataset.share), text: td.textContent};
const bar = q('sharebar').getBoundingClientRect().width;
const segs = {};
for (const s of document.querySelectorAll('#sharebar .seg[data-region]'))
  segs[s.dataset.region] = s.getBoundingClientRect().width / bar;
return {
  region: q('region').textContent, version: q('version').textContent, note: q('note').textContent,
  live: q('live').dataset.state, polls: Number(document.body.dataset.polls || 0), shares, segs,
  history: Array.from(document.querySelectorAll('#history tr[data-version]'), (r) => r.dataset.version),
  title: document.title, rps: Number(q('rps').textContent),
  traffic_lines: document.querySelectorAll('#chart-traffic polyline.l-rps').length,
  share_areas: document.querySelectorAll('#chart-shares polygon.a-share').length,
  markers: Array.from(document.querySelectorAll('#chart-traffic text'), (t) => t.textContent).filter((t) => /^v\d+$/.test(t)),
  marker: window.__flowgateTestMarker || null,
};"#;

fn share(v: &Value, region: &str) -> f64 {
    v["shares"][region]["share"].as_f64().unwrap_or(-1.0)
}

/// Sends GETs through `us-east-1`'s public listener until told to stop (at most 90 s,
/// at most 9000 requests), so that the rates and the chart have something to show.
fn load(pair: &Pair, stop: Arc<AtomicBool>, failed: Arc<AtomicUsize>) -> tokio::task::JoinHandle<usize> {
    let url = pair.a.url("/hello");
    tokio::spawn(async move {
        let client = support::h1_client();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut sent = 0;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && sent < 9000 {
            let ok = match tokio::time::timeout(Duration::from_secs(5), client.get(url.parse().expect("url")))
                .await
            {
                Ok(Ok(r)) => r.status().is_success() && r.into_body().collect().await.is_ok(),
                _ => false,
            };
            if !ok {
                failed.fetch_add(1, Ordering::SeqCst);
            }
            sent += 1;
            // The pace of the load.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (installed by .ci/run)"]
async fn dashboard_goes_live_in_chromium_offline() {
    tokio::time::timeout(Duration::from_secs(240), dashboard_live())
        .await
        .expect("the whole test within 240 s");
}

async fn dashboard_live() {
    let pair = Pair::start().await;
    settled(&pair).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let load = load(&pair, stop.clone(), failed.clone());

    let b = browser::Browser::start(true, 1280, 1000).await;
    // The network is really cut: a name that is not 127.0.0.1 does not load.
    let err = b.goto("http://flowgate-offline-check.invalid/").await;
    assert!(err.is_err(), "a non-loopback page loaded: the browser is not offline");

    let url = pair.dashboard();
    b.goto(&url).await.expect("dashboard loads");
    // Live: the script has polled the status at least twice.
    let v = b
        .wait_for(
            "the dashboard to go live",
            &format!(
                "const v = (() => {{ {READ} }})(); return v.live === 'live' && v.polls >= 2 ? v : null;"
            ),
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(v["region"], A, "{v}");
    assert_eq!(v["version"], "1", "{v}");
    assert_eq!(v["title"], "flowgate us-east-1 · v1", "{v}");
    assert_eq!(share(&v, A), 0.6, "{v}");
    assert_eq!(share(&v, B), 0.4, "{v}");
    assert_eq!(v["shares"][A]["text"], "60%", "{v}");
    assert_eq!(v["shares"][B]["text"], "40%", "{v}");
    assert_eq!(v["history"], serde_json::json!(["1"]), "{v}");
    // The bar is drawn to scale (its width eases in over 0.4 s).
    b.wait_for(
        "the share bar at 60/40",
        &format!(
            "const v = (() => {{ {READ} }})(); return Math.abs(v.segs['{A}'] - 0.6) < 0.02 && Math.abs(v.segs['{B}'] - 0.4) < 0.02;"
        ),
        Duration::from_secs(5),
    )
    .await;
    // The rates come in from the JSON (the load runs through us-east-1).
    b.wait_for(
        "a request rate and a chart line",
        &format!(
            "const v = (() => {{ {READ} }})(); return v.rps > 0 && v.traffic_lines > 0 && v.share_areas >= 2;"
        ),
        Duration::from_secs(15),
    )
    .await;

    // A few more seconds of samples, so that the chart (and the screenshot) shows a line.
    b.wait_for("8 polls", "return Number(document.body.dataset.polls || 0) >= 8;", Duration::from_secs(15))
        .await;

    // Push a new table: the open page follows without a reload.
    b.js("window.__flowgateTestMarker = 'same page'; return true;").await;
    push(&pair, TABLE_V2).await;
    let v = b
        .wait_for(
            "the page to show version 2",
            &format!(
                "const v = (() => {{ {READ} }})(); return v.version === '2' && v.history[0] === '2' && Math.abs(v.segs['{B}'] - 0.8) < 0.02 ? v : null;"
            ),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(v["marker"], "same page", "the page reloaded instead of updating: {v}");
    assert_eq!(share(&v, A), 0.2, "{v}");
    assert_eq!(share(&v, B), 0.8, "{v}");
    assert_eq!(v["shares"][B]["text"], "80%", "{v}");
    assert_eq!(v["note"], "dashboard test: shift to us-west-2", "{v}");
    assert_eq!(v["history"], serde_json::json!(["2", "1"]), "{v}");
    assert_eq!(v["title"], "flowgate us-east-1 · v2", "{v}");
    // The chart marks the table change once a sample after it is in.
    b.wait_for(
        "a v2 marker on the chart",
        &format!("const v = (() => {{ {READ} }})(); return v.markers.includes('v2') && v.polls >= 14;"),
        Duration::from_secs(15),
    )
    .await;

    // Nothing but this listener was asked for, and the page is small.
    let net = b
        .js(r#"
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
return {page: nav.decodedBodySize, transfer: nav.transferSize,
        others: res.filter((r) => !r.name.startsWith(location.origin + '/')).map((r) => r.name),
        json: res.filter((r) => r.name.includes('/v1/')).length,
        assets: res.filter((r) => !r.name.includes('/v1/')).map((r) => r.name)};"#)
        .await;
    let page = net["page"].as_u64().expect("page size");
    assert!(page > 1000 && (page as usize) < MAX_PAGE, "page is {page} bytes: {net}");
    assert_eq!(net["others"], serde_json::json!([]), "fetched from elsewhere: {net}");
    assert_eq!(net["assets"], serde_json::json!([]), "fetched something besides the JSON: {net}");
    assert!(net["json"].as_u64().unwrap_or(0) >= 2, "{net}");
    let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth;").await;
    assert!(overflow.as_i64().unwrap_or(1) <= 0, "wider than the window by {overflow}px");
    let clipped = b
        .js("return Array.from(document.querySelectorAll('#sharebar .seg'))\
             .filter((s) => s.scrollWidth > s.clientWidth + 1).map((s) => s.dataset.region);")
        .await;
    assert_eq!(clipped, serde_json::json!([]), "share labels cut off");
    let shot = b.screenshot("dashboard.png").await;
    eprintln!("screenshot: {}", shot.display());

    // A phone's width: nothing sticks out sideways, the shares still read.
    b.set_size(390, 844).await;
    b.wait_for(
        "the page to fit 390 px",
        "return document.documentElement.scrollWidth <= window.innerWidth && window.innerWidth <= 400 && \
         Array.from(document.querySelectorAll('#sharebar .seg')).every((s) => s.scrollWidth <= s.clientWidth + 1);",
        Duration::from_secs(5),
    )
    .await;
    let v = b.js(&format!("return (() => {{ {READ} }})();")).await;
    assert_eq!(v["shares"][B]["text"], "80%", "{v}");
    b.js("window.scrollTo(0, 0); return true;").await;
    b.screenshot("dashboard-phone.png").await;
    b.close().await;

    // With JavaScript off the page still shows the state, as rendered by the proxy.
    let b = browser::Browser::start_with(true, 800, 1000, false).await;
    b.goto(&url).await.expect("dashboard loads without script");
    // Long enough for the page's script to have polled, were it running: its absence is
    // the point.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = b.js(&format!("return (() => {{ {READ} }})();")).await;
    assert_eq!(v["live"], "snapshot", "the page's script ran: {v}");
    assert_eq!(v["polls"], 0, "{v}");
    assert_eq!(v["region"], A, "{v}");
    assert_eq!(v["version"], "2", "{v}");
    assert_eq!(v["shares"][B]["text"], "80%", "{v}");
    assert_eq!(share(&v, B), 0.8, "{v}");
    assert_eq!(v["history"], serde_json::json!(["2", "1"]), "{v}");
    assert!((v["segs"][B].as_f64().unwrap_or(0.0) - 0.8).abs() < 0.02, "{v}");
    b.screenshot("dashboard-nojs.png").await;
    b.close().await;

    stop.store(true, Ordering::SeqCst);
    let sent = load.await.expect("load task");
    assert!(sent > 0);
    assert_eq!(failed.load(Ordering::SeqCst), 0, "client requests failed");
    pair.stop().await;
}

/// The samples the proxy keeps for the dashboard, as `GET /v1/dashboard/history` reads.
async fn kept(pair: &Pair) -> Value {
    let url = format!("http://{}/v1/dashboard/history", pair.a.addrs.admin);
    let (status, headers, body) = request(Method::GET, &url, None, "").await;
    assert_eq!(status, StatusCode::OK, "read-only, like the page: no token needed");
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_slice(&body).expect("history is JSON")
}

/// Waits until the proxy has kept `n` samples with traffic; the history then.
async fn kept_with_traffic(pair: &Pair, n: usize) -> Value {
    wait_for(&format!("{n} kept samples with traffic"), Duration::from_secs(30), || async {
        let doc = kept(pair).await;
        let busy =
            doc["samples"].as_array().map(|s| s.iter().filter(|p| p["rps"].as_f64() > Some(0.0)).count());
        if busy.unwrap_or(0) >= n { Ok(doc) } else { Err(doc) }
    })
    .await
}

/// Without any browser: the proxy keeps a sample a second for the charts, bounded, with
/// the shares and version of each moment; and the page's HTML carries the current
/// figures for a reader without JavaScript.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_history_is_bounded_and_the_page_reads_without_script() {
    let pair = Pair::start().await;
    settled(&pair).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let load = load(&pair, stop.clone(), failed.clone());
    let doc = kept_with_traffic(&pair, 4).await;
    assert_eq!(doc["interval_seconds"], 1, "{doc}");
    assert_eq!(doc["window_seconds"], 5, "{doc}");
    let capacity = doc["capacity"].as_u64().expect("capacity");
    assert!((600..=900).contains(&capacity), "10 to 15 minutes at one a second: {doc}");
    let samples = doc["samples"].as_array().expect("samples");
    assert!(samples.len() as u64 <= capacity, "{doc}");
    // About one a second since the proxy started, oldest first.
    let uptime = status(pair.a.addrs.admin).await["uptime_seconds"].as_u64().expect("uptime");
    assert!(samples.len() as u64 <= uptime + 2, "{} samples in {uptime} s", samples.len());
    let at: Vec<u64> = samples.iter().map(|s| s["at_ms"].as_u64().expect("at_ms")).collect();
    assert!(at.windows(2).all(|w| w[1] >= w[0] + 500), "{at:?}");
    let last = samples.last().expect("a sample");
    assert_eq!(last["table_version"], 1, "{last}");
    assert_eq!(last["shares"], serde_json::json!({A: 0.6, B: 0.4}), "{last}");
    assert!(last["source_rps"].as_f64() > Some(0.0), "{last}");
    // The ring follows a table change.
    push(&pair, TABLE_V2).await;
    wait_for("a sample of version 2", Duration::from_secs(5), || async {
        let doc = kept(&pair).await;
        let last = doc["samples"].as_array().and_then(|s| s.last().cloned()).unwrap_or_default();
        if last["table_version"] == 2 && last["shares"][B] == 0.8 { Ok(()) } else { Err(last) }
    })
    .await;
    let (status_code, headers, _) = request(
        Method::POST,
        &format!("http://{}/v1/dashboard/history", pair.a.addrs.admin),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status_code, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD");

    // The page as a reader without JavaScript gets it: the figures of now, not a
    // "connecting" placeholder.
    let (_, _, body) = support::get(&support::h1_client(), &pair.dashboard()).await;
    let page = String::from_utf8(body.to_vec()).expect("utf-8");
    let between = |from: &str, to: &str| -> String {
        let start =
            page.find(from).map(|i| i + from.len()).unwrap_or_else(|| panic!("no {from:?} in {page}"));
        page[start..].split(to).next().unwrap_or("").to_owned()
    };
    assert_eq!(between(r#"<b id="version">"#, "<"), "2");
    let rps: f64 = between(r#"<b id="rps">"#, "<").parse().expect("rps is a number");
    assert!(rps > 0.0, "rps {rps} under load");
    assert!(between(r#"<b id="error-ratio""#, "</b>").ends_with("0.00%"), "no errors under this load");
    assert!(between(r#"<b id="source-rps">"#, "<").parse::<f64>().is_ok_and(|v| v > 0.0));
    assert!(page.contains(r#"data-share="0.8">80%</td>"#), "shares in the page");
    assert!(page.contains(r#"data-state="snapshot">snapshot "#), "the snapshot's time, not a placeholder");
    let markup = &page[..page.find("<script>").expect("the page's script")];
    assert!(!markup.contains("connecting"), "the page without script says connecting");
    stop.store(true, Ordering::SeqCst);
    load.await.expect("load task");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "client requests failed");
    pair.stop().await;
}

/// A page opened after some seconds of traffic draws those seconds on its first render,
/// from the samples the proxy kept, and so does a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (installed by .ci/run)"]
async fn dashboard_draws_the_last_minutes_on_first_render() {
    tokio::time::timeout(Duration::from_secs(180), first_render())
        .await
        .expect("the whole test within 180 s");
}

async fn first_render() {
    let pair = Pair::start().await;
    settled(&pair).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let load = load(&pair, stop.clone(), failed.clone());
    kept_with_traffic(&pair, 8).await;

    let b = browser::Browser::start(true, 1280, 1000).await;
    // What the charts hold: points of the traffic line, areas of the shares, and how far
    // back the line starts (the plot's share of the chart's width).
    const CHART: &str = r#"
const svg = document.getElementById('chart-traffic');
const lines = Array.from(svg.querySelectorAll('polyline.l-rps'));
const points = lines.reduce((n, l) => n + l.points.numberOfItems, 0);
const xs = lines.flatMap((l) => Array.from({length: l.points.numberOfItems}, (_, i) => l.points.getItem(i).x));
return {points, polls: Number(document.body.dataset.polls || 0), history: Number(document.body.dataset.history || 0),
        span: xs.length ? Math.max(...xs) - Math.min(...xs) : 0,
        areas: document.querySelectorAll('#chart-shares polygon.a-share').length,
        waiting: Array.from(svg.querySelectorAll('text'), (t) => t.textContent).includes('collecting samples…')};"#;
    for visit in ["first load", "reload"] {
        b.goto(&pair.dashboard()).await.expect("dashboard loads");
        // The first render: drawn once the kept samples are in, before the second poll.
        let v = b
            .wait_for(
                "the first render",
                &format!(
                    "const v = (() => {{ {CHART} }})(); return v.history > 0 || v.polls > 0 ? v : null;"
                ),
                Duration::from_secs(10),
            )
            .await;
        assert!(v["polls"].as_u64().unwrap_or(9) <= 1, "{visit}: not the first render: {v}");
        assert!(v["history"].as_u64().unwrap_or(0) >= 8, "{visit}: the kept samples: {v}");
        assert!(v["points"].as_u64().unwrap_or(0) >= 8, "{visit}: the chart starts empty: {v}");
        assert!(v["span"].as_f64().unwrap_or(0.0) > 50.0, "{visit}: the line covers seconds: {v}");
        assert!(v["areas"].as_u64().unwrap_or(0) >= 2, "{visit}: the share chart starts empty: {v}");
        assert_eq!(v["waiting"], false, "{visit}: {v}");
    }
    b.screenshot("dashboard-first-render.png").await;
    b.close().await;
    stop.store(true, Ordering::SeqCst);
    load.await.expect("load task");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "client requests failed");
    pair.stop().await;
}
