//! `GET`/`PUT /v1/table`: the table in force, and pushing a new one.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use super::AdminState;
use crate::control::{Applied, ApplyError};
use crate::table::Table;
use crate::wire::{Refusal, TableAccepted};

pub(super) fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Full<Bytes>> {
    let body =
        serde_json::to_vec_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}").into_bytes());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(super) fn get_table(state: &AdminState) -> Response<Full<Bytes>> {
    let proxy = state.control.proxy.load_full();
    let table = proxy.tables.load();
    let mut r = json(StatusCode::OK, &*table.table);
    // The version as an entity tag: what a conditional push names in If-Match.
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", table.table.version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// `If-Match: "N"` (or `N`) → `Some(N)`; absent → `None`; anything else is refused.
fn if_match(v: Option<&HeaderValue>) -> Result<Option<u64>, String> {
    let Some(v) = v else { return Ok(None) };
    let text = v.to_str().map_err(|_| "If-Match is not text".to_owned())?.trim();
    let bare = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    bare.parse::<u64>()
        .map(Some)
        .map_err(|_| format!("If-Match must name one table version, like \"7\" (got {text:?})"))
}

fn refuse(
    state: &AdminState,
    status: StatusCode,
    reason: &'static str,
    body: Refusal,
) -> Response<Full<Bytes>> {
    state.control.shared.metrics.table_rejected_total.with_label_values(&[reason]).inc();
    json(status, &body)
}

pub(super) async fn put_table(
    req: Request<Incoming>,
    state: &AdminState,
    remote: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let auth = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let Some(who) = state.tokens.check(auth).map(str::to_owned) else {
        tracing::warn!(%remote, had_token = auth.is_some(), "unauthorized table push");
        let mut r = refuse(
            state,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            Refusal::new("a valid bearer token is required"),
        );
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    };
    let who = format!("{who} ({remote})");
    let req_if_match = req.headers().get(header::IF_MATCH).cloned();
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let essence = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return refuse(
                state,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                Refusal::new(format!("content-type must be application/json, not {essence:?}")),
            );
        }
    }
    let max = state.control.config().admin.max_table_bytes;
    let too_large = || Refusal::new(format!("the table is larger than {max} bytes (admin.max_table_bytes)"));
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
    {
        return refuse(state, StatusCode::PAYLOAD_TOO_LARGE, "too_large", too_large());
    }
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return refuse(state, StatusCode::PAYLOAD_TOO_LARGE, "too_large", too_large());
        }
        Err(e) => {
            return refuse(
                state,
                StatusCode::BAD_REQUEST,
                "invalid",
                Refusal { field: Some(String::new()), ..Refusal::new(format!("cannot read the body: {e}")) },
            );
        }
    };
    let table = match Table::parse(&body) {
        Ok(t) => t,
        Err(e) => {
            return refuse(
                state,
                StatusCode::BAD_REQUEST,
                "invalid",
                Refusal { field: Some(e.field.clone()), ..Refusal::new(e.to_string()) },
            );
        }
    };
    let mode = match if_match(req_if_match.as_ref()) {
        Ok(v) => crate::control::ApplyMode { if_match: v, catch_up: false },
        Err(e) => {
            return refuse(
                state,
                StatusCode::BAD_REQUEST,
                "invalid",
                Refusal { field: Some("If-Match".to_owned()), ..Refusal::new(e) },
            );
        }
    };
    match state.control.apply_with(table, &who, mode).await {
        Ok(Applied::Applied { version, previous }) => json(
            StatusCode::OK,
            &TableAccepted { applied: true, previous_version: Some(previous), unchanged: None, version },
        ),
        Ok(Applied::Unchanged { version }) => json(
            StatusCode::OK,
            &TableAccepted { applied: false, previous_version: None, unchanged: Some(true), version },
        ),
        Err(e) => {
            let refusal = Refusal::new(e.to_string());
            let (status, body) = match &e {
                ApplyError::Invalid(t) | ApplyError::Shift(t) => (
                    StatusCode::BAD_REQUEST,
                    Refusal { field: Some(t.field.clone()), reason: Some(e.reason().to_owned()), ..refusal },
                ),
                ApplyError::Stale { current, .. } => {
                    (StatusCode::CONFLICT, Refusal { current_version: Some(*current), ..refusal })
                }
                ApplyError::Precondition { current, .. } => {
                    (StatusCode::PRECONDITION_FAILED, Refusal { current_version: Some(*current), ..refusal })
                }
                ApplyError::Persist(_) | ApplyError::Internal(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, refusal)
                }
            };
            json(status, &body)
        }
    }
}
