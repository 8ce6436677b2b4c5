//! Talking to one proxy's control endpoint, with a timeout on everything and a bounded
//! retry where the request surely did not arrive (connection refused, reset on connect).
//! A refused token is named with the variable the operator must set.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::FleetFile;
use crate::table::Table;
use crate::wire::{HistoryEntry, Status, TableAccepted};

/// Largest answer read from a proxy (a big table plus its JSON).
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// Connection attempts for a push before giving up on a proxy.
const CONNECT_TRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("{addr}: cannot connect: {message}")]
    Connect { addr: String, message: String },
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr}: {message}")]
    Http { addr: String, message: String },
    #[error("{addr}: answered {status}: {body}")]
    Status { addr: String, status: u16, body: String },
    #[error("{addr}: unreadable answer: {message}")]
    Decode { addr: String, message: String },
    /// 401 or 403: `message` says which variable to set.
    #[error("{addr}: {message}")]
    Unauthorized { addr: String, message: String },
}

/// A proxy's answer to a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PutOutcome {
    Applied {
        version: u64,
        previous: u64,
    },
    Unchanged {
        version: u64,
    },
    /// 4xx: the proxy refused the table (the body says why).
    Refused {
        status: u16,
        body: String,
    },
}

#[derive(Clone)]
pub(crate) struct AdminClient {
    http: Client<HttpConnector, Full<Bytes>>,
    token: Option<String>,
    /// The variable the token comes from, for the message when a proxy refuses it.
    token_env: Option<String>,
    pub(crate) timeout: Duration,
}

impl AdminClient {
    pub(crate) fn new(token: Option<String>, timeout: Duration) -> AdminClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        AdminClient {
            http: Client::builder(TokioExecutor::new()).build(connector),
            token,
            token_env: None,
            timeout,
        }
    }

    /// A client with the fleet file's token, which names its variable when refused.
    pub(crate) fn for_fleet(fleet: &FleetFile, timeout: Duration) -> AdminClient {
        let mut client = AdminClient::new(fleet.token(), timeout);
        if fleet.token_value.is_none() {
            client.token_env = Some(fleet.token_env.clone());
        }
        client
    }

    /// What to tell the operator when a proxy answered 401 (token missing or wrong) or 403
    /// (token not allowed): `None` for any other status.
    pub(crate) fn auth_refused(&self, status: u16) -> Option<String> {
        let what = match status {
            401 => "401 unauthorized",
            403 => "403 forbidden",
            _ => return None,
        };
        let fix = match (&self.token_env, &self.token) {
            (Some(var), None) => format!("{var} is not set; set it to the token the proxies accept"),
            (Some(var), Some(_)) => {
                format!("the admin token was refused; set {var} to the token the proxies accept")
            }
            (None, _) => "the admin token was refused".to_owned(),
        };
        Some(format!("{what}: {fix}"))
    }

    /// A non-2xx answer as an error; 401 and 403 say which variable to set.
    fn status_error(&self, addr: &str, status: StatusCode, body: &[u8]) -> ClientError {
        if let Some(message) = self.auth_refused(status.as_u16()) {
            return ClientError::Unauthorized { addr: addr.to_owned(), message };
        }
        ClientError::Status {
            addr: addr.to_owned(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(body).trim().to_owned(),
        }
    }

    async fn call(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.call_with(addr, method, path, body, None).await
    }

    async fn call_with(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        if_match: Option<u64>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let uri = format!("http://{addr}{path}");
        let mut b = Request::builder().method(method).uri(&uri);
        if let Some(v) = if_match {
            b = b.header(header::IF_MATCH, format!("\"{v}\""));
        }
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        let req = b
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Http { addr: addr.to_owned(), message: e.to_string() })?;
        let work = async {
            let resp = self.http.request(req).await.map_err(|e| {
                if e.is_connect() {
                    ClientError::Connect { addr: addr.to_owned(), message: source_text(&e) }
                } else {
                    ClientError::Http { addr: addr.to_owned(), message: source_text(&e) }
                }
            })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| ClientError::Http { addr: addr.to_owned(), message: e.to_string() })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Timeout { addr: addr.to_owned(), timeout: self.timeout })?
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, addr: &str, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.call(addr, Method::GET, path, None).await?;
        if !status.is_success() {
            return Err(self.status_error(addr, status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Decode { addr: addr.to_owned(), message: e.to_string() })
    }

    pub(crate) async fn status(&self, addr: &str, window_seconds: u64) -> Result<Status, ClientError> {
        self.get_json(addr, &format!("/v1/status?window={window_seconds}")).await
    }

    pub(crate) async fn table(&self, addr: &str) -> Result<Table, ClientError> {
        self.get_json(addr, "/v1/table").await
    }

    pub(crate) async fn history(&self, addr: &str) -> Result<Vec<HistoryEntry>, ClientError> {
        self.get_json(addr, "/v1/table/history").await
    }

    pub(crate) async fn history_table(&self, addr: &str, version: u64) -> Result<Table, ClientError> {
        self.get_json(addr, &format!("/v1/table/history/{version}")).await
    }

    /// POSTs to a path that takes no body (the autopilot's switch) and returns the answer.
    pub(crate) async fn post(&self, addr: &str, path: &str) -> Result<Bytes, ClientError> {
        let (status, body) = self.call(addr, Method::POST, path, None).await?;
        if !status.is_success() {
            return Err(self.status_error(addr, status, &body));
        }
        Ok(body)
    }

    /// Pushes a table, with `If-Match: "N"` when `if_match` is given (the proxy then applies
    /// it only over version N: 412 otherwise, a [`PutOutcome::Refused`]). Connection
    /// failures are retried a few times (the table surely did not arrive), anything else is
    /// not (versions make a repeated push harmless anyway).
    pub(crate) async fn put_table_if(
        &self,
        addr: &str,
        table: &Table,
        if_match: Option<u64>,
    ) -> Result<PutOutcome, ClientError> {
        let body = Bytes::from(
            serde_json::to_vec(table)
                .map_err(|e| ClientError::Decode { addr: addr.to_owned(), message: e.to_string() })?,
        );
        let mut tries = 0;
        let (status, answer) = loop {
            tries += 1;
            match self.call_with(addr, Method::PUT, "/v1/table", Some(body.clone()), if_match).await {
                Err(ClientError::Connect { .. }) if tries < CONNECT_TRIES => {
                    tokio::time::sleep(Duration::from_millis(200 * tries as u64)).await;
                }
                other => break other?,
            }
        };
        let text = String::from_utf8_lossy(&answer).trim().to_owned();
        if status.is_client_error() {
            return Ok(PutOutcome::Refused { status: status.as_u16(), body: text });
        }
        if !status.is_success() {
            return Err(ClientError::Status { addr: addr.to_owned(), status: status.as_u16(), body: text });
        }
        let decode = |message: String| ClientError::Decode { addr: addr.to_owned(), message };
        let answer: TableAccepted = serde_json::from_slice(&answer).map_err(|e| decode(e.to_string()))?;
        match answer {
            TableAccepted { applied: true, previous_version: Some(previous), version, .. } => {
                Ok(PutOutcome::Applied { version, previous })
            }
            TableAccepted { applied: true, previous_version: None, .. } => {
                Err(decode("applied, without `previous_version`".to_owned()))
            }
            TableAccepted { applied: false, version, .. } => Ok(PutOutcome::Unchanged { version }),
        }
    }
}

/// An error and its causes, one after the other.
pub(crate) fn source_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
