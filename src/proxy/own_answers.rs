//! The answers the proxy gives itself, before routing, as the final recipient: a request
//! target longer than `[limits] max_uri_bytes` (414), `TRACE` and `OPTIONS` that have used
//! up their `Max-Forwards` (RFC 9110 section 7.6.2), and `OPTIONS *`, which asks about the
//! server itself (section 9.3.7) and names no path to route.
//!
//! `TRACE` without `Max-Forwards` is forwarded, as the RFC's default. Refusing it (405,
//! against cross-site tracing) would protect nothing: browsers' Fetch forbids scripts to
//! send `TRACE` at all, and a client adding `Max-Forwards: 9` gets forwarded anyway. Whether
//! an origin echoes its requests is the origin's call; this proxy's own echo drops the
//! credentials.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{
    ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, MAX_FORWARDS, PROXY_AUTHORIZATION,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Version};

use super::error::ProxyError;
use super::request_filter;

/// What this proxy serves (CONNECT is refused: see the request filter).
const ALLOWED: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";

/// The proxy's own answer to `req`, if it gives one. A `TRACE` or `OPTIONS` that goes on
/// leaves with `Max-Forwards` one less.
pub(super) fn answer<B>(req: &mut Request<B>, max_uri_bytes: usize) -> Option<Response<Bytes>> {
    if let Err(e) = request_filter::check_target(req.uri(), max_uri_bytes) {
        return Some(e.response());
    }
    let trace = req.method() == Method::TRACE;
    if !trace && req.method() != Method::OPTIONS {
        return None;
    }
    // What the filter refuses (no Host, say) is refused on the forwarding path, the same
    // way as for every other method.
    if request_filter::check(req).is_err() {
        return None;
    }
    let asterisk = !trace && req.uri().path() == "*";
    match max_forwards(req.headers()) {
        Err(e) => Some(e.response()),
        Ok(Some(0)) if trace => Some(trace_echo(req)),
        Ok(_) if asterisk => Some(options()),
        Ok(Some(0)) => Some(options()),
        Ok(Some(n)) => {
            req.headers_mut().insert(MAX_FORWARDS, HeaderValue::from(n - 1));
            None
        }
        Ok(None) => None,
    }
}

/// `Max-Forwards` (RFC 9110 section 7.6.2: `1*DIGIT`), when present; a value that is not
/// one number is refused, as no hop could decrement it.
fn max_forwards(h: &HeaderMap) -> Result<Option<u64>, ProxyError> {
    let mut values = h.get_all(MAX_FORWARDS).iter();
    let Some(v) = values.next() else { return Ok(None) };
    let digits = v.as_bytes();
    if values.next().is_some() || digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ProxyError::BadRequest);
    }
    // A huge count is as good as no limit; saturating keeps it a number.
    Ok(Some(digits.iter().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')))))
}

/// `TRACE` as the final recipient: 200 with the request head as received, as
/// `message/http`, minus the credentials (RFC 9110 section 9.3.8).
fn trace_echo<B>(req: &Request<B>) -> Response<Bytes> {
    let mut body = BytesMut::with_capacity(256);
    body.put_slice(req.method().as_str().as_bytes());
    body.put_u8(b' ');
    match (req.version(), req.uri().path_and_query()) {
        // HTTP/2's target is `:path`; its authority came in `:authority`.
        (Version::HTTP_2, Some(pq)) => body.put_slice(pq.as_str().as_bytes()),
        _ => body.put_slice(req.uri().to_string().as_bytes()),
    }
    body.put_slice(format!(" {:?}\r\n", req.version()).as_bytes());
    for (name, value) in req.headers() {
        if name == AUTHORIZATION || name == COOKIE || name == PROXY_AUTHORIZATION {
            continue;
        }
        body.put_slice(name.as_str().as_bytes());
        body.put_slice(b": ");
        body.put_slice(value.as_bytes());
        body.put_slice(b"\r\n");
    }
    body.put_slice(b"\r\n");
    let mut resp = Response::new(body.freeze());
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("message/http"));
    resp
}

/// `OPTIONS` as the final recipient: what this proxy serves.
fn options() -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    let h = resp.headers_mut();
    h.insert(ALLOW, HeaderValue::from_static(ALLOWED));
    h.insert(CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    fn req(method: &str, target: &str, max_forwards: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(target).header("host", "a");
        if let Some(m) = max_forwards {
            b = b.header(MAX_FORWARDS, m);
        }
        b.body(()).expect("request")
    }

    fn status(r: &Option<Response<Bytes>>) -> Option<StatusCode> {
        r.as_ref().map(Response::status)
    }

    #[test]
    fn max_forwards_decides_who_answers() {
        let mut r = req("TRACE", "/", Some("0"));
        assert_eq!(status(&answer(&mut r, 8192)), Some(StatusCode::OK));
        let mut r = req("OPTIONS", "/x", Some("0"));
        assert_eq!(status(&answer(&mut r, 8192)), Some(StatusCode::OK));
        for method in ["TRACE", "OPTIONS"] {
            let mut r = req(method, "/", Some("7"));
            assert!(answer(&mut r, 8192).is_none());
            assert_eq!(r.headers()[MAX_FORWARDS], "6");
            let mut r = req(method, "/", None);
            assert!(answer(&mut r, 8192).is_none());
        }
        let mut r = req("TRACE", "/", Some("99999999999999999999999"));
        assert!(answer(&mut r, 8192).is_none());
        for bad in ["", "-1", "1, 2", "x"] {
            let mut r = req("TRACE", "/", Some(bad));
            assert_eq!(status(&answer(&mut r, 8192)), Some(StatusCode::BAD_REQUEST), "{bad:?}");
        }
        // Max-Forwards means nothing to other methods.
        let mut r = req("GET", "/", Some("0"));
        assert!(answer(&mut r, 8192).is_none());
    }

    #[test]
    fn options_asterisk_is_always_answered_here() {
        for mf in [None, Some("0"), Some("3")] {
            let mut r = req("OPTIONS", "*", mf);
            let resp = answer(&mut r, 8192).expect("answered");
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()[ALLOW], ALLOWED);
            assert_eq!(resp.headers()[CONTENT_LENGTH], "0");
        }
    }

    #[test]
    fn the_echo_drops_credentials() {
        let mut r = req("TRACE", "/p?q=1", Some("0"));
        for (n, v) in
            [("authorization", "Basic x"), ("cookie", "a=b"), ("proxy-authorization", "y"), ("x-k", "v")]
        {
            r.headers_mut().append(http::HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let resp = answer(&mut r, 8192).expect("answered");
        assert_eq!(resp.headers()[CONTENT_TYPE], "message/http");
        assert_eq!(
            resp.body(),
            &Bytes::from_static(b"TRACE /p?q=1 HTTP/1.1\r\nhost: a\r\nmax-forwards: 0\r\nx-k: v\r\n\r\n")
        );
    }

    #[test]
    fn a_long_target_is_refused_whatever_the_method() {
        let mut r = req("GET", &format!("/{}", "a".repeat(100)), None);
        let resp = answer(&mut r, 100).expect("refused");
        assert_eq!(resp.status(), StatusCode::URI_TOO_LONG);
    }
}
