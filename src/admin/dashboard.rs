//! `GET /`: the live dashboard of one proxy.
//!
//! One self-contained page: the HTML is rendered here from the current status and table
//! history, so that it shows the state with JavaScript off (it then reloads itself every
//! 10 s); the CSS and the script (`dashboard.css`, `dashboard.js` beside this file) are
//! compiled into the binary and inlined. The script first reads the last minutes of
//! samples the proxy kept ([`history`], `v1/dashboard/history`), so a reload draws them
//! at once, then polls `v1/status` every second and `v1/table/history` when the version
//! changes, and draws the charts as inline SVG. Nothing is fetched from anywhere else: no
//! CDN, no font, no image, and the Content-Security-Policy sent with the page forbids it.
//!
//! Stable element ids for people's scripts and the browser tests: `#region`, `#version`,
//! `#note`, `#state`, `#rps`, `#error-ratio`, `#source-rps`, `#inflight`, `#live`
//! (`data-state`: `snapshot` as rendered here, `live` or `offline` once the script runs),
//! `#sharebar` (one `.seg[data-region]` per target), `#targets` (one
//! `tr[data-region]` per target, its share in `#share-REGION` with `data-share` 0 to 1),
//! `#history` (one `tr[data-version]` per table change), `#chart-traffic`,
//! `#chart-shares`.

mod format;
mod history;
#[cfg(test)]
mod tests;

use std::fmt::Write;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::{AdminState, status};
use crate::control::HistoryEntry;
use crate::vocab::html::esc;
use crate::wire::Status;
use format::{clock, duration, error_pct, pct, rate};
pub(crate) use history::{SampleRing, sample_every_second};

const CSS: &str = include_str!("dashboard.css");
const JS: &str = include_str!("dashboard.js");

/// The tab's icon, inline so that the browser asks for no `/favicon.ico`.
const ICON: &str = "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>\
<rect width='16' height='16' rx='3' fill='%232563eb'/><path d='M3 8h8M8 4.5 11.5 8 8 11.5' stroke='%23fff' \
stroke-width='2' fill='none'/></svg>";
/// The window, in seconds, of the rates the dashboard shows (the script asks for the same).
const WINDOW_SECONDS: u64 = 5;
/// How many table changes the page lists.
const HISTORY_ROWS: usize = 10;
/// Colors of the target regions, in the order of their names (the script uses the same).
const PALETTE: [&str; 8] =
    ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#92400e"];

/// The page as `GET /` answers it.
pub(crate) fn response(state: &AdminState) -> Response<Full<Bytes>> {
    let status = status::status(state, WINDOW_SECONDS);
    let history = state.control.history();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let body = render(&status, &history, now);
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(content_security_policy()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// `GET /v1/dashboard/history`: the samples kept for the charts (read-only, like the
/// page: no token).
pub(crate) fn history_response(state: &AdminState) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&state.dashboard.doc()).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Only this origin's JSON, only the page's own script (by its hash), inline styles.
pub(crate) fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let digest = ring::digest::digest(&ring::digest::SHA256, JS.as_bytes());
        format!(
            "default-src 'none'; connect-src 'self'; script-src 'sha256-{}'; style-src 'unsafe-inline'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            B64.encode(digest.as_ref())
        )
    })
}

/// The whole page for one status and history, `now` in seconds since the epoch.
pub(crate) fn render(status: &Status, history: &[HistoryEntry], now: u64) -> String {
    let region = esc(&status.region);
    let version = status.table_version;
    let note = status.table_note.as_deref().map(esc).unwrap_or_default();

    let mut segs = String::new();
    let mut rows = String::new();
    let mut legend = String::new();
    for (i, (name, t)) in status.targets.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let n = esc(name);
        let share = pct(t.share);
        let down = if t.healthy { "" } else { " down" };
        if t.share > 0.0 {
            let _ = write!(
                segs,
                r#"<span class="seg{down}" data-region="{n}" style="--c:{color};width:{w:.3}%" title="{n}: {share}"><b class="name">{n}</b><span class="pct">{share}</span></span>"#,
                w = t.share * 100.0
            );
        }
        let _ = write!(legend, r#"<span><i class="sw" style="--c:{color}"></i>{n}</span>"#);
        let health = if t.healthy {
            r#"<span class="badge ok">healthy</span>"#
        } else {
            r#"<span class="badge bad">down</span>"#
        };
        // Region outlier detection: a region answering far more 5xx than the others.
        let health = if t.outlier_share < 1.0 {
            format!(
                r#"{health} <span class="badge warn" title="answers far more 5xx than the other regions">5xx: keeps {:.0}%</span>"#,
                t.outlier_share * 100.0
            )
        } else {
            health.to_owned()
        };
        let mode = t.mode.map(|m| m.name()).unwrap_or("local");
        let path = t.path.as_deref().unwrap_or(if t.local { "origins" } else { "none" });
        let bypass = if t.bypass_active {
            r#"<span class="badge warn">active</span>"#
        } else {
            r#"<span class="badge off">no</span>"#
        };
        let endpoints: Vec<String> =
            t.endpoints.iter().map(|(k, c)| format!("{} {}/{}", esc(k), c.healthy, c.total)).collect();
        let local = if t.local { r#" <span class="local">(this region)</span>"# } else { "" };
        let _ = write!(
            rows,
            r#"<tr data-region="{n}"><td><i class="sw" style="--c:{color}"></i>{n}{local}</td><td class="num share" id="share-{n}" data-region="{n}" data-share="{s}">{share}</td><td class="health">{health}</td><td class="mode">{mode}</td><td class="wide path">{path}</td><td class="bypass">{bypass}</td><td class="wide endpoints">{e}</td></tr>"#,
            s = t.share,
            e = esc(&endpoints.join(" · ")),
        );
    }
    if rows.is_empty() {
        rows.push_str(r#"<tr><td colspan="7" class="empty">no target regions</td></tr>"#);
    }

    let mut origins = String::new();
    for (name, o) in &status.origins {
        let health = if o.healthy {
            r#"<span class="badge ok">healthy</span>"#
        } else {
            r#"<span class="badge bad">down</span>"#
        };
        let _ = write!(
            origins,
            r#"<tr data-origin="{n}"><td>{n}</td><td>{health}</td><td class="num">{h}/{t}</td><td class="num">{f}</td></tr>"#,
            n = esc(name),
            h = o.endpoints.healthy,
            t = o.endpoints.total,
            f = o.inflight,
        );
    }

    let mut changes = String::new();
    for h in history.iter().take(HISTORY_ROWS) {
        let _ = write!(
            changes,
            r#"<tr data-version="{v}"><td class="num">{v}</td><td class="when"><time datetime="{at}">{at}</time></td><td class="wide">{who}</td><td class="note">{note}</td></tr>"#,
            v = h.version,
            at = esc(&h.applied_at),
            who = esc(&h.who),
            note = h.note.as_deref().map(esc).unwrap_or_default(),
        );
    }
    if changes.is_empty() {
        changes.push_str(r#"<tr><td colspan="4" class="empty">no table applied yet</td></tr>"#);
    }

    let err_class = if status.error_ratio > 0.01 { r#" class="bad""# } else { "" };
    format!(
        r##"<!doctype html>
<html lang="en" class="nojs"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>flowgate {region} · v{version}</title>
<link rel="icon" href="{ICON}">
<noscript><meta http-equiv="refresh" content="10"></noscript>
<style>{CSS}.nojs .js{{display:none}}</style>
</head><body data-window="{WINDOW_SECONDS}">
<main>
<header>
<h1><span class="brand">flowgate</span> <span id="region">{region}</span></h1>
<div class="meta"><span>table version <b id="version">{version}</b></span><span>state <b id="state">{state}</b></span><span>up <b id="uptime">{uptime}</b></span><span id="live" class="live" data-state="snapshot">snapshot {clock}</span></div>
<div id="note" class="note">{note}</div>
</header>
<section class="stats" aria-label="traffic now, last {WINDOW_SECONDS} s">
<div class="stat"><span>requests/s answered</span><b id="rps">{rps}</b></div>
<div class="stat"><span>error ratio (5xx)</span><b id="error-ratio"{err_class}>{err}</b></div>
<div class="stat"><span>client requests/s</span><b id="source-rps">{source}</b></div>
<div class="stat"><span>in flight</span><b id="inflight">{inflight}</b></div>
</section>
<section class="card" aria-labelledby="h-shares">
<h2 id="h-shares">Where {region}'s traffic goes</h2>
<div id="sharebar" class="bar" role="img" aria-label="share per target region">{segs}</div>
<div class="scroll"><table id="targets"><thead><tr><th>target region</th><th class="num">share</th><th>health</th><th>mode</th><th class="wide">path</th><th>bypass</th><th class="wide">endpoints healthy</th></tr></thead><tbody>{rows}</tbody></table></div>
</section>
<section class="charts">
<div class="card"><h2>Requests/s and error ratio</h2>
<svg id="chart-traffic" class="chart js" role="img" aria-label="requests per second and error ratio over the last minutes"></svg>
<noscript><p class="empty">The charts are drawn by JavaScript from the samples this proxy keeps (the last 15 minutes, <a href="v1/dashboard/history">v1/dashboard/history</a>); with it off, this page is a snapshot of the figures above that reloads every 10 s.</p></noscript>
<div class="legend js"><span><i class="sw rps"></i>requests/s</span><span><i class="sw err"></i>error ratio</span><span><i class="sw mk"></i>table change</span></div></div>
<div class="card js"><h2>Share per target over time</h2>
<svg id="chart-shares" class="chart" role="img" aria-label="share of each target region over the last minutes"></svg>
<div id="legend-shares" class="legend">{legend}</div></div>
</section>
<section class="card" aria-labelledby="h-history">
<h2 id="h-history">Table changes</h2>
<div class="scroll"><table id="history"><thead><tr><th class="num">version</th><th>applied</th><th class="wide">by</th><th>note</th></tr></thead><tbody>{changes}</tbody></table></div>
</section>
<section class="card" aria-labelledby="h-origins">
<h2 id="h-origins">Local origins</h2>
<div class="scroll"><table id="origins"><thead><tr><th>origin</th><th>health</th><th class="num">endpoints healthy</th><th class="num">in flight</th></tr></thead><tbody>{origins}</tbody></table></div>
</section>
<footer><span>rates over the last {WINDOW_SECONDS} s</span><span>updated <span id="updated">{clock}</span></span><span>JSON: <a href="v1/status">status</a> · <a href="v1/table">table</a> · <a href="v1/table/history">history</a> · <a href="v1/dashboard/history">samples</a> · <a href="metrics">metrics</a></span></footer>
</main>
<script>{JS}</script>
</body></html>
"##,
        state = esc(&status.state),
        uptime = duration(status.uptime_seconds),
        clock = clock(now),
        rps = rate(status.rps),
        err = error_pct(status.error_ratio),
        source = rate(status.source_rps),
        inflight = status.inflight_requests,
    )
}
