//! The autopilot's own listener: `GET /healthz`, `GET /metrics` (prefix
//! `flowgate_autopilot_`), `GET /v1/decisions` (newest first), `GET /v1/state`, `GET /`
//! (a page of the whole fleet, rendered on the server and reloading itself), and
//! `POST /v1/pause` / `POST /v1/resume` (bearer token of the fleet file) for operators
//! who reach the autopilot over the network rather than its state file.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::switch;
use crate::vocab::html::esc;

/// How many decisions `/v1/decisions` and the page keep.
pub(crate) const DECISIONS_KEPT: usize = 200;

/// One region as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RegionRow {
    pub(crate) region: String,
    pub(crate) verdict: String,
    pub(crate) rule: String,
    pub(crate) why: String,
    pub(crate) proxies: usize,
    pub(crate) answering: usize,
    pub(crate) ready: usize,
    pub(crate) versions: Vec<u64>,
    pub(crate) served_rps: f64,
    pub(crate) served_error_ratio: f64,
    /// Share of its own clients' traffic it serves itself (its own row), when known.
    pub(crate) keeps_share: Option<f64>,
}

/// What the page and `/v1/state` show; written by the control loop once a round.
#[derive(Debug, Default, Serialize)]
pub(crate) struct View {
    pub(crate) regions: Vec<RegionRow>,
    pub(crate) operation: Option<String>,
    pub(crate) paused: bool,
    pub(crate) evacuated_by_autopilot: Option<String>,
    pub(crate) dry_run: bool,
    /// `alone` (no store), `leader`, or `standby (...)`.
    pub(crate) role: String,
    pub(crate) last_round: String,
    pub(crate) unreachable: Vec<String>,
    #[serde(skip)]
    pub(crate) decisions: VecDeque<serde_json::Value>,
}

/// The `flowgate_autopilot_` families.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    /// `{region, verdict}`: 1 for the region's current verdict.
    pub(crate) verdict: IntGaugeVec,
    /// `{action}`: decisions logged.
    pub(crate) decisions: IntCounterVec,
    /// `{action, outcome}`: evacuations and restores run, by how they ended.
    pub(crate) actions: IntCounterVec,
    pub(crate) paused: IntGauge,
    pub(crate) operation_in_progress: IntGauge,
    pub(crate) proxies_unreachable: IntGauge,
    /// `{region}`: error ratio of what the region's origins served, in parts per million.
    pub(crate) region_error_ppm: IntGaugeVec,
    pub(crate) rounds: IntCounterVec,
    /// 1 while this autopilot acts (the leader, or alone without a store).
    pub(crate) leader: IntGauge,
}

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let o = |n: &str, h: &str| Opts::new(n, h).namespace("flowgate_autopilot");
        let m = Metrics {
            registry: Registry::new(),
            verdict: IntGaugeVec::new(
                o("region_verdict", "1 for each region's current verdict."),
                &["region", "verdict"],
            )?,
            decisions: IntCounterVec::new(o("decisions_total", "Decisions logged, by action."), &["action"])?,
            actions: IntCounterVec::new(
                o("actions_total", "Evacuations and restores run, by outcome."),
                &["action", "outcome"],
            )?,
            paused: IntGauge::with_opts(o("paused", "1 while the autopilot is paused."))?,
            operation_in_progress: IntGauge::with_opts(o(
                "operation_in_progress",
                "1 while an evacuation or restore runs.",
            ))?,
            proxies_unreachable: IntGauge::with_opts(o(
                "proxies_unreachable",
                "Proxies that did not answer the last round.",
            ))?,
            region_error_ppm: IntGaugeVec::new(
                o(
                    "region_error_ratio_ppm",
                    "Error ratio of what each region's origins served, parts per million.",
                ),
                &["region"],
            )?,
            rounds: IntCounterVec::new(
                o("rounds_total", "Rounds of reading the fleet, by result."),
                &["result"],
            )?,
            leader: IntGauge::with_opts(o(
                "leader",
                "1 while this autopilot acts: the elected leader, or alone without a store.",
            ))?,
        };
        m.registry.register(Box::new(m.verdict.clone()))?;
        m.registry.register(Box::new(m.decisions.clone()))?;
        m.registry.register(Box::new(m.actions.clone()))?;
        m.registry.register(Box::new(m.paused.clone()))?;
        m.registry.register(Box::new(m.operation_in_progress.clone()))?;
        m.registry.register(Box::new(m.proxies_unreachable.clone()))?;
        m.registry.register(Box::new(m.region_error_ppm.clone()))?;
        m.registry.register(Box::new(m.rounds.clone()))?;
        m.registry.register(Box::new(m.leader.clone()))?;
        for action in ["none", "evacuate", "restore", "held"] {
            m.decisions.with_label_values(&[action]);
        }
        for action in ["evacuate", "restore"] {
            for outcome in ["done", "rolled-back", "held", "refused", "moved", "failed"] {
                m.actions.with_label_values(&[action, outcome]);
            }
        }
        for result in ["ok", "failed"] {
            m.rounds.with_label_values(&[result]);
        }
        Ok(m)
    }
}

/// What the listener shares with the control loop.
pub(crate) struct Shared {
    pub(crate) view: Mutex<View>,
    pub(crate) metrics: Metrics,
    pub(crate) state_path: PathBuf,
    pub(crate) token: Option<String>,
    pub(crate) liveness: Liveness,
}

/// Whether the control loop still turns: `/healthz` fails once no round has completed
/// for `stale_after`, unless an action is running (a ramp has no rounds) and has not
/// outlived its generous bound, so a wedged loop gets the process restarted.
#[derive(Debug)]
pub(crate) struct Liveness {
    last_round_ms: std::sync::atomic::AtomicU64,
    busy_until_ms: std::sync::atomic::AtomicU64,
    stale_after: std::time::Duration,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Liveness {
    pub(crate) fn new(stale_after: std::time::Duration) -> Liveness {
        Liveness { last_round_ms: unix_ms().into(), busy_until_ms: 0.into(), stale_after }
    }

    pub(crate) fn round_done(&self) {
        self.last_round_ms.store(unix_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// An action starts that may take up to `bound` (`None`: it ended).
    pub(crate) fn busy(&self, bound: Option<std::time::Duration>) {
        let until = bound.map(|b| unix_ms() + b.as_millis() as u64).unwrap_or(0);
        self.busy_until_ms.store(until, std::sync::atomic::Ordering::Relaxed);
    }

    /// `Err` with why when the loop looks wedged.
    pub(crate) fn check(&self) -> Result<(), String> {
        let now = unix_ms();
        let last = self.last_round_ms.load(std::sync::atomic::Ordering::Relaxed);
        let busy = self.busy_until_ms.load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(last) <= self.stale_after.as_millis() as u64 || now <= busy {
            Ok(())
        } else {
            Err(format!("no round completed for {} s", now.saturating_sub(last) / 1000))
        }
    }
}

/// Serves until `stop` fires.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "autopilot listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(v: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    reply(StatusCode::OK, "application/json", body)
}

fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => match shared.liveness.check() {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ok\n"),
            Err(why) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("{why}\n")),
        },
        (&Method::GET, "/metrics") => {
            let mut buf = Vec::new();
            let _ = TextEncoder::new().encode(&shared.metrics.registry.gather(), &mut buf);
            reply(StatusCode::OK, "text/plain; version=0.0.4", buf)
        }
        (&Method::GET, "/v1/decisions") => match shared.view.lock() {
            Ok(v) => json(&v.decisions.iter().collect::<Vec<_>>()),
            Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "state unavailable\n"),
        },
        (&Method::GET, "/v1/state") => match shared.view.lock() {
            Ok(v) => json(&*v),
            Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "state unavailable\n"),
        },
        (&Method::GET, "/") => match shared.view.lock() {
            Ok(v) => {
                let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", page(&v));
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
                );
                r
            }
            Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "state unavailable\n"),
        },
        (&Method::POST, p @ ("/v1/pause" | "/v1/resume")) => {
            let offered = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let ok = match (&shared.token, offered) {
                (Some(t), Some(o)) => {
                    use subtle::ConstantTimeEq;
                    bool::from(
                        ring::digest::digest(&ring::digest::SHA256, t.as_bytes())
                            .as_ref()
                            .ct_eq(ring::digest::digest(&ring::digest::SHA256, o.as_bytes()).as_ref()),
                    )
                }
                _ => false,
            };
            if !ok {
                return reply(
                    StatusCode::UNAUTHORIZED,
                    "application/json",
                    "{\"error\": \"a valid bearer token (the fleet file's token_env) is required\"}\n",
                );
            }
            let paused = p == "/v1/pause";
            match switch::set_paused(&shared.state_path, paused, "api") {
                Ok(s) => json(&serde_json::json!({"paused": s.paused})),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "application/json",
                    serde_json::json!({"error": e.to_string()}).to_string(),
                ),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

/// The page: the whole fleet and the last decisions, without JavaScript.
fn page(v: &View) -> String {
    let mut rows = String::new();
    for r in &v.regions {
        let versions: Vec<String> = r.versions.iter().map(u64::to_string).collect();
        rows.push_str(&format!(
            "<tr class=\"{verdict}\"><td>{region}</td><td>{verdict}</td><td>{answering}/{proxies} ({ready} ready)</td><td>{versions}</td><td class=\"n\">{rps:.1}</td><td class=\"n\">{err}</td><td class=\"n\">{keeps}</td><td>{why}</td></tr>\n",
            region = esc(&r.region),
            verdict = esc(&r.verdict),
            answering = r.answering,
            proxies = r.proxies,
            ready = r.ready,
            versions = esc(&versions.join(", ")),
            rps = r.served_rps,
            err = pct(r.served_error_ratio),
            keeps = r.keeps_share.map(pct).unwrap_or_else(|| "?".into()),
            why = esc(&r.why),
        ));
    }
    let mut decisions = String::new();
    for d in v.decisions.iter().take(30) {
        let field = |k: &str| d.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
        decisions.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&field("time")),
            esc(&field("region")),
            esc(&field("verdict")),
            esc(&field("action")),
            esc(&field("why")),
        ));
    }
    let banner = match (&v.operation, v.paused) {
        (Some(op), _) => format!("<p class=\"op\">in progress: {}</p>", esc(op)),
        (None, true) => {
            "<p class=\"op\">PAUSED: the autopilot decides but does not act (flowgate autopilot resume)</p>"
                .into()
        }
        (None, false) => "<p>no operation in progress</p>".into(),
    };
    let unreachable = if v.unreachable.is_empty() {
        String::new()
    } else {
        format!("<p>not answering: {}</p>", esc(&v.unreachable.join("; ")))
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>flowgate autopilot</title><style>
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#111}} table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}} .n{{text-align:right}}
tr.failing td{{background:#fee2e2}} tr.suspect td{{background:#fef9c3}} .op{{font-weight:bold}}
</style></head><body>
<h1>flowgate autopilot</h1>
<p>last round {last}{dry}; role: {role}; evacuated by the autopilot: {ours}</p>
{banner}{unreachable}
<h2>Regions</h2>
<table><thead><tr><th>region</th><th>verdict</th><th>proxies</th><th>table versions</th><th class="n">served rps</th><th class="n">errors</th><th class="n">keeps own traffic</th><th>why</th></tr></thead><tbody>
{rows}</tbody></table>
<h2>Last decisions</h2>
<table><thead><tr><th>time</th><th>region</th><th>verdict</th><th>action</th><th>why</th></tr></thead><tbody>
{decisions}</tbody></table>
</body></html>"#,
        last = esc(&v.last_round),
        dry = if v.dry_run { " (dry run: nothing is pushed)" } else { "" },
        ours = esc(v.evacuated_by_autopilot.as_deref().unwrap_or("none")),
        role = esc(&v.role),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Liveness;

    #[test]
    fn a_loop_that_stops_turning_fails_its_health_check_unless_an_action_runs() {
        let l = Liveness::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.check().is_err());
        l.busy(Some(Duration::from_secs(60)));
        assert!(l.check().is_ok(), "a long ramp has no rounds");
        l.busy(None);
        assert!(l.check().is_err());
        let fresh = Liveness::new(Duration::from_secs(60));
        fresh.round_done();
        assert!(fresh.check().is_ok());
    }
}
