//! What an operator's monitoring reads, on the built binary: every metric family of the
//! contract is in a fresh proxy's first scrape, its known label values at 0; and every
//! metric that the alerting rules and the Grafana dashboard of `deploy/monitoring` read is
//! one the binary exports (a proxy's `/metrics`, or the autopilot's), with the labels
//! they match on.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use support::ProxyConfig;
use support::config::free_addr;
use support::outage::{AutopilotProcess, FAST, TOKEN};
use support::wait::{poll, wait_until};

/// The families of the operator contract (README, Metrics), with their type.
const CONTRACT: &[(&str, &str)] = &[
    ("flowgate_requests_total", "counter"),
    ("flowgate_request_duration_seconds", "histogram"),
    ("flowgate_inflight_requests", "gauge"),
    ("flowgate_table_version", "gauge"),
    ("flowgate_table_applied_total", "counter"),
    ("flowgate_table_rejected_total", "counter"),
    ("flowgate_endpoint_healthy", "gauge"),
    ("flowgate_bypass_active", "gauge"),
    ("flowgate_retries_total", "counter"),
    ("flowgate_retry_budget_exhausted_total", "counter"),
    ("flowgate_shed_total", "counter"),
];

/// The families a proxy exports beyond the contract's list.
const ADDED: &[(&str, &str)] = &[
    ("flowgate_probes_total", "counter"),
    ("flowgate_region_outlier_share", "gauge"),
    ("flowgate_table_digest_info", "gauge"),
    ("flowgate_table_conflicts", "gauge"),
    ("flowgate_store_connected", "gauge"),
    ("flowgate_store_state", "gauge"),
    ("flowgate_proxy_info", "gauge"),
];

/// Families whose children the proxy's loops make once they run (each endpoint's probe
/// loop, the outlier watch), just after the admin listener starts answering: they are
/// checked in the scrape taken when the proxy reports ready.
const MADE_BY_LOOPS: &[&str] = &["flowgate_endpoint_healthy", "flowgate_region_outlier_share"];

const RETRY_REASONS: [&str; 3] = ["connect-failure", "reset", "retriable-status"];
const SHED_REASONS: [&str; 5] =
    ["overload-low", "overload-normal", "overload-high", "overload-critical", "origin-concurrency"];
const REJECT_REASONS: [&str; 8] = [
    "unauthorized",
    "unsupported_media_type",
    "too_large",
    "invalid",
    "max_shift",
    "stale",
    "precondition",
    "internal",
];

type Labels = BTreeMap<String, String>;

/// A scrape in the text exposition format: each family's type, and every sample.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<(String, Labels, f64)>,
    text: String,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition { text: text.to_owned(), ..Default::default() };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
                e.types.insert(name.to_owned(), ty.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, Labels::new()),
                Some((name, rest)) => (name, label_pairs(rest.strip_suffix('}').expect("labels closed"))),
            };
            e.samples.push((name.to_owned(), labels, value));
        }
        e
    }

    /// The value of the sample `name{labels}` (exactly those labels).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.iter().find(|(n, l, _)| n == name && *l == want).map(|s| s.2)
    }

    fn assert_value(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let got = self.value(name, labels);
        assert_eq!(got, Some(want), "{name}{labels:?}: want {want}, got {got:?} in\n{}", self.text);
    }

    /// The family a sample or query name belongs to: itself, or a histogram's (summary's)
    /// `_bucket`, `_sum` or `_count` series.
    fn family_of(&self, name: &str) -> Option<String> {
        if self.types.contains_key(name) {
            return Some(name.to_owned());
        }
        for (suffix, types) in [
            ("_bucket", &["histogram"][..]),
            ("_sum", &["histogram", "summary"]),
            ("_count", &["histogram", "summary"]),
        ] {
            if let Some(base) = name.strip_suffix(suffix)
                && self.types.get(base).is_some_and(|t| types.contains(&t.as_str()))
            {
                return Some(base.to_owned());
            }
        }
        None
    }

    /// Every label name and the values seen, over the samples of `family` (`le` left out).
    fn labels_of(&self, family: &str) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (n, labels, _) in &self.samples {
            if self.family_of(n).as_deref() == Some(family) {
                for (k, v) in labels.iter().filter(|(k, _)| *k != "le") {
                    out.entry(k.clone()).or_default().insert(v.clone());
                }
            }
        }
        out
    }

    fn merge(mut self, other: Exposition) -> Exposition {
        self.types.extend(other.types);
        self.samples.extend(other.samples);
        self.text.push_str(&other.text);
        self
    }
}

/// `a="x",b="y"` (values with `\"`, `\\` and `\n` escapes).
fn label_pairs(s: &str) -> Labels {
    let mut out = Labels::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("label: {s:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    if let Some((_, c)) = chars.next() {
                        value.push(if c == 'n' { '\n' } else { c });
                    }
                }
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("label value not closed: {s:?}"),
            }
        };
        out.insert(key.trim_start_matches(',').to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    out
}

fn root(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

async fn scrape(url: &str) -> Option<Exposition> {
    let req = http::Request::get(url).body(http_body_util::Full::new(bytes::Bytes::new())).ok()?;
    let resp =
        tokio::time::timeout(Duration::from_secs(2), support::h1_client().request(req)).await.ok()?.ok()?;
    if resp.status() != 200 {
        return None;
    }
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.ok()?.to_bytes();
    Some(Exposition::parse(&String::from_utf8_lossy(&body)))
}

async fn wait_ready(admin: SocketAddr) {
    wait_until("the proxy to report ready", Duration::from_secs(20), || async move {
        support::admin::readyz(admin).await == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_proxy_shows_every_family_with_its_known_label_values_at_zero() {
    let origin = support::origin::start().await;
    // A peer region known from the config, where nothing listens.
    let west_peer = free_addr();
    let proxy = ProxyConfig::new("us-east-1", origin.addr)
        .peer("us-west-2", &[west_peer])
        .extra("[fleet]\nsync_timeout = \"1s\"\n")
        .spawn(&[]);
    // The first scrape: as soon as the admin listener is up, before any request.
    let first = Exposition::parse(&support::admin::metrics(proxy.admin).await);
    for (family, ty) in CONTRACT.iter().chain(ADDED) {
        if MADE_BY_LOOPS.contains(family) {
            continue;
        }
        assert_eq!(first.types.get(*family).map(String::as_str), Some(*ty), "{family}:\n{}", first.text);
        assert!(
            first.samples.iter().any(|(n, ..)| first.family_of(n).as_deref() == Some(*family)),
            "{family} has no sample in the first scrape:\n{}",
            first.text
        );
    }
    for reason in RETRY_REASONS {
        first.assert_value("flowgate_retries_total", &[("reason", reason)], 0.0);
    }
    for reason in SHED_REASONS {
        first.assert_value("flowgate_shed_total", &[("reason", reason)], 0.0);
    }
    for reason in REJECT_REASONS {
        first.assert_value("flowgate_table_rejected_total", &[("reason", reason)], 0.0);
    }
    for target in ["us-east-1", "us-west-2"] {
        first.assert_value(
            "flowgate_requests_total",
            &[("listener", "public"), ("origin", "api"), ("target_region", target), ("code", "200")],
            0.0,
        );
        let by = [("origin", "api"), ("target_region", target)];
        first.assert_value("flowgate_request_duration_seconds_count", &by, 0.0);
        first.assert_value("flowgate_request_duration_seconds_sum", &by, 0.0);
    }
    first.assert_value("flowgate_bypass_active", &[("region", "us-west-2")], 0.0);
    for name in [
        "flowgate_inflight_requests",
        "flowgate_table_version",
        "flowgate_table_applied_total",
        "flowgate_retry_budget_exhausted_total",
        "flowgate_table_conflicts",
        "flowgate_store_connected",
    ] {
        first.assert_value(name, &[], 0.0);
    }
    for (state, v) in [("none", 1.0), ("connected", 0.0), ("disconnected", 0.0)] {
        first.assert_value("flowgate_store_state", &[("state", state)], v);
    }
    first.assert_value(
        "flowgate_proxy_info",
        &[("region", "us-east-1"), ("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    for kind in ["origin", "lb", "proxies"] {
        assert!(first.value("flowgate_probes_total", &[("kind", kind)]).is_some(), "probes_total{{{kind}}}");
    }

    // Ready (the peer compared with, or `[fleet] sync_timeout` over): the loops run.
    wait_ready(proxy.admin).await;
    let ready = Exposition::parse(&support::admin::metrics(proxy.admin).await);
    let (origin_ep, peer_ep) = (origin.addr.to_string(), west_peer.to_string());
    for labels in [
        [("kind", "origin"), ("region", "us-east-1"), ("endpoint", origin_ep.as_str())],
        [("kind", "proxies"), ("region", "us-west-2"), ("endpoint", peer_ep.as_str())],
    ] {
        assert!(ready.value("flowgate_endpoint_healthy", &labels).is_some(), "{labels:?}:\n{}", ready.text);
    }
    for region in ["us-east-1", "us-west-2"] {
        ready.assert_value("flowgate_region_outlier_share", &[("region", region)], 1.0);
    }
    assert_eq!(ready.types.get("flowgate_endpoint_healthy").map(String::as_str), Some("gauge"));
}

/// A metric in a query, and the label matchers written on it (`name{a="x", b=~"y"}`).
#[derive(Debug)]
struct Use {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// Every `flowgate_...` metric an expression reads, with its matchers.
fn uses(expr: &str) -> Vec<Use> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = expr[i..].find("flowgate_").map(|a| a + i) {
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        if at > 0 && (word(bytes[at - 1]) || bytes[at - 1] == b'"') {
            i = at + 1;
            continue;
        }
        let end = expr[at..].find(|c: char| !word(c as u8)).map_or(expr.len(), |e| e + at);
        let mut u = Use { name: expr[at..end].to_owned(), matchers: Vec::new() };
        if expr[end..].starts_with('{') {
            let close = expr[end..].find('}').expect("matchers closed") + end;
            for m in expr[end + 1..close].split(',').map(str::trim).filter(|m| !m.is_empty()) {
                let op_at = m.find(['=', '!']).unwrap_or_else(|| panic!("matcher {m:?} in {expr}"));
                let op_len = if m[op_at..].starts_with("=~") || m[op_at..].starts_with("!") { 2 } else { 1 };
                let value = m[op_at + op_len..].trim().trim_matches('"');
                u.matchers.push((
                    m[..op_at].trim().to_owned(),
                    m[op_at..op_at + op_len].to_owned(),
                    value.into(),
                ));
            }
        }
        out.push(u);
        i = end;
    }
    out
}

/// The expressions of the rules file, each with the name of its alert.
fn rule_exprs() -> Vec<(String, String)> {
    let path = root("deploy/monitoring/prometheus-rules.yaml");
    let text = std::fs::read_to_string(&path).expect("rules file");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("rules YAML");
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name =
                rule["alert"].as_str().or(rule["record"].as_str()).expect("alert or record").to_owned();
            out.push((name, rule["expr"].as_str().expect("expr").to_owned()));
        }
    }
    out
}

/// The dashboard's query expressions (panels, rows' panels, the template variables).
fn dashboard_exprs() -> Vec<(String, String)> {
    let path = root("deploy/monitoring/grafana-dashboard.json");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    fn panels(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in v.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((title.to_owned(), t["expr"].as_str().expect("target expr").to_owned()));
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&d["panels"], &mut out);
    for var in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = var["query"]["query"].as_str().or(var["definition"].as_str()) {
            out.push((format!("variable {}", var["name"]), q.to_owned()));
        }
    }
    out
}

#[test]
fn the_rules_carry_what_an_on_call_needs() {
    let path = root("deploy/monitoring/prometheus-rules.yaml");
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("rules file")).expect("YAML");
    let mut alerts = BTreeSet::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert");
            assert!(rule["for"].as_str().is_some_and(|f| !f.is_empty()), "{name}: for:");
            let severity = rule["labels"]["severity"].as_str();
            assert!(matches!(severity, Some("critical" | "warning")), "{name}: severity {severity:?}");
            for a in ["summary", "description"] {
                assert!(rule["annotations"][a].as_str().is_some_and(|t| t.len() > 20), "{name}: {a}");
            }
            alerts.insert(name.to_owned());
        }
    }
    for want in [
        "FlowgateTableVersionDisagreement",
        "FlowgateRegionErrorRatioHigh",
        "FlowgateBypassActive",
        "FlowgateRetryBudgetExhausted",
        "FlowgateStoreDisconnected",
        "FlowgateAutopilotPaused",
    ] {
        assert!(alerts.contains(want), "{want} missing from {alerts:?}");
    }
    let panels = dashboard_exprs();
    assert!(panels.len() >= 15, "{panels:?}");
}

/// No family is feature-gated: the store's (`store_connected`, `store_state`) are
/// registered in every build, at 0 and `none` without `--features etcd` or `[store]`; so
/// one build's scrape holds every name, whichever build runs this test.
#[test]
fn no_metric_family_depends_on_a_cargo_feature() {
    for file in ["src/metrics.rs", "src/metrics/known.rs", "src/autopilot/server.rs"] {
        let text = std::fs::read_to_string(root(file)).expect(file);
        assert!(
            !text.contains("cfg(feature"),
            "{file}: a feature-gated family needs the test run in that build too"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_read_is_exported() {
    // Two regions, each one proxy, peers of each other, and the autopilot watching them.
    let (east_origin, west_origin) = (support::origin::start().await, support::origin::start().await);
    let (east_peer, west_peer) = (free_addr(), free_addr());
    let env = [("FLOWGATE_ADMIN_TOKEN", TOKEN)];
    let east = ProxyConfig::new("us-east-1", east_origin.addr)
        .peer_listen(Some(east_peer))
        .peer("us-west-2", &[west_peer])
        .admin("token_env = \"FLOWGATE_ADMIN_TOKEN\"")
        .spawn(&env);
    let west = ProxyConfig::new("us-west-2", west_origin.addr)
        .peer_listen(Some(west_peer))
        .peer("us-east-1", &[east_peer])
        .admin("token_env = \"FLOWGATE_ADMIN_TOKEN\"")
        .spawn(&env);
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet_file = dir.path().join("fleet.toml");
    let fleet = format!(
        "token_env = \"FLOWGATE_ADMIN_TOKEN\"\n\n[regions.us-east-1]\nadmin = [\"{}\"]\ncapacity_rps = 1000\n\n\
         [regions.us-west-2]\nadmin = [\"{}\"]\ncapacity_rps = 1000\n",
        east.admin, west.admin
    );
    std::fs::write(&fleet_file, fleet).expect("fleet file");
    wait_ready(east.admin).await;
    wait_ready(west.admin).await;
    let pilot = AutopilotProcess::spawn(&fleet_file, &FAST);
    let pilot_url = format!("http://{}/metrics", pilot.listen);
    // The per-region families have children once the first round has judged the regions.
    let pilot_scrape = poll(Duration::from_secs(15), Duration::from_millis(100), || async {
        match scrape(&pilot_url).await {
            Some(s) if s.types.contains_key("flowgate_autopilot_region_verdict") => Ok(s),
            _ => Err(()),
        }
    })
    .await;
    let pilot_scrape = pilot_scrape.unwrap_or_else(|()| panic!("no autopilot verdicts:\n{}", pilot.dump()));
    let proxy_scrape = scrape(&format!("http://{}/metrics", east.admin)).await.expect("proxy /metrics");
    let exported = proxy_scrape.merge(pilot_scrape);

    let mut checked = BTreeSet::new();
    for (source, exprs) in
        [("prometheus-rules.yaml", rule_exprs()), ("grafana-dashboard.json", dashboard_exprs())]
    {
        assert!(!exprs.is_empty(), "{source}: no expression");
        for (what, expr) in exprs {
            let used = uses(&expr);
            assert!(!used.is_empty(), "{source}: {what}: reads no flowgate metric: {expr}");
            for u in used {
                let family = exported.family_of(&u.name).unwrap_or_else(|| {
                    panic!("{source}: {what}: {} is not exported by a proxy or the autopilot", u.name)
                });
                let labels = exported.labels_of(&family);
                for (label, op, value) in &u.matchers {
                    let seen = labels.get(label).unwrap_or_else(|| {
                        panic!("{source}: {what}: {} has no label {label} (it has {labels:?})", u.name)
                    });
                    // An exact value must be one the binary writes (a typo matches nothing).
                    if op == "=" && !value.contains('$') {
                        assert!(
                            seen.contains(value),
                            "{source}: {what}: {}{{{label}=\"{value}\"}}: seen {seen:?}",
                            u.name
                        );
                    }
                }
                checked.insert(family);
            }
        }
    }
    for family in ["flowgate_request_duration_seconds", "flowgate_autopilot_paused", "flowgate_store_state"] {
        assert!(checked.contains(family), "{family} is read: {checked:?}");
    }
}

#[test]
fn the_query_reader_finds_every_name_and_its_matchers() {
    let u = uses(
        "sum by (le) (rate(flowgate_x_bucket{a=\"1\", b=~\"p.*\",c!=\"z\"}[5m])) / on () flowgate_y \
         + count_values(\"flowgate_not_a_metric\", flowgate_z)",
    );
    let names: Vec<&str> = u.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["flowgate_x_bucket", "flowgate_y", "flowgate_z"]);
    let m: Vec<(&str, &str, &str)> =
        u[0].matchers.iter().map(|(l, o, v)| (l.as_str(), o.as_str(), v.as_str())).collect();
    assert_eq!(m, [("a", "=", "1"), ("b", "=~", "p.*"), ("c", "!=", "z")]);
    let e = Exposition::parse(
        "# TYPE flowgate_h histogram\nflowgate_h_bucket{le=\"1\"} 0\n# TYPE flowgate_total_count counter\nflowgate_total_count 0\n",
    );
    assert_eq!(e.family_of("flowgate_h_bucket").as_deref(), Some("flowgate_h"));
    assert_eq!(e.family_of("flowgate_total_count").as_deref(), Some("flowgate_total_count"));
    assert_eq!(e.family_of("flowgate_total"), None, "a counter's name is no histogram's base");
}
