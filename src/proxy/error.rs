//! Responses the proxy makes itself, each saying why in `x-flowgate-error`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use super::headers::X_FLOWGATE_ERROR;

/// Why the proxy answered instead of an origin. The code is the `x-flowgate-error` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("no route matches this host and path")]
    NoRoute,
    #[error("the origin has no endpoint")]
    NoEndpoint,
    #[error("the origin is at its concurrency limit")]
    OriginBusy,
    #[error("could not connect to the upstream")]
    ConnectFailed,
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    #[error("the upstream did not answer in time")]
    Timeout,
    #[error("the upstream closed or reset the connection before answering")]
    UpstreamReset,
    /// An HTTP/2 upstream refused the stream unprocessed: a GOAWAY whose last stream id is
    /// below it (a peer proxy draining), or `REFUSED_STREAM`. Safe to retry whatever the
    /// method (RFC 9113 section 8.7).
    #[error("the upstream refused the request without processing it")]
    UpstreamRefused,
    #[error("the upstream's answer was not valid HTTP")]
    UpstreamProtocol,
    #[error("the request could not be forwarded")]
    BadRequest,
    #[error("this method is not served by a reverse proxy")]
    MethodNotAllowed,
    /// A transfer coding other than `chunked`: the proxy cannot decode it, and must not
    /// drop it on the way (RFC 9112 section 6.1).
    #[error("the request's transfer coding is not implemented")]
    NotImplemented,
    #[error("the request target is longer than the proxy takes")]
    UriTooLong,
}

impl ProxyError {
    /// The value of `x-flowgate-error`.
    pub(crate) fn code(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no-route",
            ProxyError::NoEndpoint => "no-healthy-target",
            ProxyError::OriginBusy => "shed",
            ProxyError::ConnectFailed => "upstream-connect-failed",
            ProxyError::ConnectTimeout => "connect-timeout",
            ProxyError::Timeout => "timeout",
            ProxyError::UpstreamReset => "upstream-reset",
            ProxyError::UpstreamRefused => "upstream-refused",
            ProxyError::UpstreamProtocol => "upstream-protocol",
            ProxyError::BadRequest => "bad-request",
            ProxyError::MethodNotAllowed => "method-not-allowed",
            ProxyError::NotImplemented => "not-implemented",
            ProxyError::UriTooLong => "uri-too-long",
        }
    }

    pub(crate) fn status(self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::BadRequest => StatusCode::BAD_REQUEST,
            ProxyError::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::NoEndpoint | ProxyError::OriginBusy => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ConnectFailed
            | ProxyError::UpstreamReset
            | ProxyError::UpstreamRefused
            | ProxyError::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout | ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Classifies a failure of the pooled client. Connect errors are told apart from
    /// failures after the request was sent, which matters for retry safety later.
    pub(crate) fn from_client(err: &hyper_util::client::legacy::Error) -> ProxyError {
        if err.is_connect() {
            if source_chain_has(err, |e| {
                e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            }) {
                return ProxyError::ConnectTimeout;
            }
            return ProxyError::ConnectFailed;
        }
        ProxyError::from_source(err)
    }

    /// What went wrong with an exchange that reached the upstream, from the error's cause
    /// chain: hyper's parse and user errors, HTTP/2 refusals, else a reset.
    pub(crate) fn from_source(err: &(dyn std::error::Error + 'static)) -> ProxyError {
        let mut source = Some(err);
        while let Some(e) = source {
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                // The client's own request body failed (a malformed chunk size, a body
                // cut short): the client's fault, not the upstream's.
                if h.is_user() {
                    return ProxyError::BadRequest;
                }
                if h.is_parse() || h.is_parse_status() {
                    return ProxyError::UpstreamProtocol;
                }
                if h.is_timeout() {
                    return ProxyError::Timeout;
                }
            }
            if let Some(h2) = e.downcast_ref::<h2::Error>()
                && h2.is_remote()
                && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM))
            {
                // h2 gives a GOAWAY's error only to the streams above its last stream id;
                // the ones below it that die later get a broken pipe (a reset).
                return ProxyError::UpstreamRefused;
            }
            source = e.source();
        }
        ProxyError::UpstreamReset
    }

    /// The response sent to the client: a short text body and the reason header.
    pub(crate) fn response<B: From<Bytes>>(self) -> Response<B> {
        let mut resp = Response::new(B::from(Bytes::from_static(self.body())));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(&X_FLOWGATE_ERROR, HeaderValue::from_static(self.code()));
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if self == ProxyError::OriginBusy {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }

    fn body(self) -> &'static [u8] {
        match self {
            ProxyError::NoRoute => b"no route\n",
            ProxyError::NoEndpoint => b"no healthy target\n",
            ProxyError::OriginBusy => b"origin at capacity\n",
            ProxyError::ConnectFailed => b"upstream connect failed\n",
            ProxyError::ConnectTimeout => b"upstream connect timeout\n",
            ProxyError::Timeout => b"upstream timeout\n",
            ProxyError::UpstreamReset => b"upstream reset\n",
            ProxyError::UpstreamRefused => b"upstream refused the request\n",
            ProxyError::UpstreamProtocol => b"upstream protocol error\n",
            ProxyError::BadRequest => b"bad request\n",
            ProxyError::MethodNotAllowed => b"method not allowed\n",
            ProxyError::NotImplemented => b"transfer coding not implemented\n",
            ProxyError::UriTooLong => b"request target too long\n",
        }
    }
}

fn source_chain_has(
    err: &(dyn std::error::Error + 'static),
    pred: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if pred(e) {
            return true;
        }
        cur = e.source();
    }
    false
}
