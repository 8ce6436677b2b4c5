//! The first phase of the request path: what a reverse proxy refuses or corrects before it
//! routes, so that routing and the origin cannot read one request two ways.

use http::header::{HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};

use super::error::ProxyError;

/// Refuses what must not be forwarded, and makes `Host` agree with the request target.
pub(crate) fn check<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    // CONNECT would turn the proxy into an open tunnel to anywhere: not for a reverse
    // proxy.
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    // HTTP/1.1 requires a Host unless the target is in absolute form (RFC 9112 section
    // 3.2: answer 400). HTTP/1.0 predates it and is served; HTTP/2 names the host in
    // `:authority`, which arrives as the target's authority.
    if req.version() == Version::HTTP_11
        && req.uri().authority().is_none()
        && !req.headers().contains_key(HOST)
    {
        return Err(ProxyError::BadRequest);
    }
    // More than one Host: the origin could pick another one than routing did
    // (RFC 9112 section 3.2: answer 400).
    if req.headers().get_all(HOST).iter().nth(1).is_some() {
        return Err(ProxyError::BadRequest);
    }
    transfer_codings(req.headers())?;
    // An absolute-form target (or HTTP/2's :authority) names the host; a `Host` that
    // says otherwise must not reach the origin, or routing and origin would read the
    // request differently (RFC 9112 section 3.2.2: the target's authority wins).
    if let Some(authority) = req.uri().authority()
        && req.headers().get(HOST).is_some_and(|h| h.as_bytes() != authority.as_str().as_bytes())
    {
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| ProxyError::BadRequest)?;
        req.headers_mut().insert(HOST, host);
    }
    Ok(())
}

/// The request's transfer codings may only be `chunked`, once. hyper decodes `chunked`
/// (and refuses a list that does not end in it); any other coding would reach the origin
/// silently undone, since `Transfer-Encoding` is hop-by-hop and the body is re-framed: a
/// server that does not understand a coding answers 501 (RFC 9112 section 6.1).
fn transfer_codings(h: &HeaderMap) -> Result<(), ProxyError> {
    let mut chunked = 0;
    for value in h.get_all(TRANSFER_ENCODING) {
        let value = value.to_str().map_err(|_| ProxyError::BadRequest)?;
        // Empty list elements are allowed (RFC 9110 section 5.6.1).
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            } else if coding.eq_ignore_ascii_case("identity") {
                // Not a coding since RFC 7230 (which removed it), and the classic
                // disguise of a smuggling attempt (`identity, chunked` beside a
                // Content-Length that hyper drops): malformed, not unsupported.
                return Err(ProxyError::BadRequest);
            } else {
                return Err(ProxyError::NotImplemented);
            }
        }
    }
    // Chunked twice is malformed (RFC 9112 section 6.1: a sender applies it once).
    if chunked > 1 {
        return Err(ProxyError::BadRequest);
    }
    Ok(())
}

/// Refuses a request target longer than `max` bytes: the path and query, with the
/// authority when the target names one (absolute form, HTTP/2's `:authority`).
pub(crate) fn check_target(uri: &Uri, max: usize) -> Result<(), ProxyError> {
    let len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if len > max {
        return Err(ProxyError::UriTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn te(values: &[&str]) -> Result<(), ProxyError> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(TRANSFER_ENCODING, HeaderValue::from_str(v).expect("value"));
        }
        transfer_codings(&h)
    }

    #[test]
    fn only_chunked_once_passes() {
        assert_eq!(te(&[]), Ok(()));
        assert_eq!(te(&["chunked"]), Ok(()));
        assert_eq!(te(&["Chunked"]), Ok(()));
        assert_eq!(te(&[" , chunked"]), Ok(()));
        assert_eq!(te(&["gzip, chunked"]), Err(ProxyError::NotImplemented));
        assert_eq!(te(&["gzip", "chunked"]), Err(ProxyError::NotImplemented));
        assert_eq!(te(&["chunked;ext=1"]), Err(ProxyError::NotImplemented));
        assert_eq!(te(&["chunked, chunked"]), Err(ProxyError::BadRequest));
        assert_eq!(te(&["identity, chunked"]), Err(ProxyError::BadRequest));
    }

    fn request(version: Version, target: &str, host: Option<&str>) -> Result<(), ProxyError> {
        let mut b = Request::builder().version(version).uri(target);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        check(&mut b.body(()).expect("request"))
    }

    #[test]
    fn http11_needs_a_host_unless_the_target_names_one() {
        assert_eq!(request(Version::HTTP_11, "/", None), Err(ProxyError::BadRequest));
        assert_eq!(request(Version::HTTP_11, "/", Some("a")), Ok(()));
        assert_eq!(request(Version::HTTP_11, "/", Some("")), Ok(()));
        assert_eq!(request(Version::HTTP_11, "http://a/", None), Ok(()));
        assert_eq!(request(Version::HTTP_10, "/", None), Ok(()));
        assert_eq!(request(Version::HTTP_2, "http://a/", None), Ok(()));
    }

    #[test]
    fn the_target_limit_counts_path_query_and_authority() {
        let uri: Uri = "http://abc/12345?x".parse().expect("uri");
        assert_eq!(check_target(&uri, 11), Ok(()));
        assert_eq!(check_target(&uri, 10), Err(ProxyError::UriTooLong));
        assert_eq!(check_target(&"*".parse().expect("uri"), 1), Ok(()));
    }
}
