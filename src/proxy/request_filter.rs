//! The first phase of the request path: what a reverse proxy refuses or corrects before it
//! routes, so that routing and the origin cannot read one request two ways.

use http::{HeaderValue, Method, Request};

use super::error::ProxyError;

/// Refuses what must not be forwarded, and makes `Host` agree with the request target.
pub(crate) fn check<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    // CONNECT would turn the proxy into an open tunnel to anywhere: not for a reverse
    // proxy.
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    // More than one Host: the origin could pick another one than routing did
    // (RFC 9112 section 3.2: answer 400).
    if req.headers().get_all(http::header::HOST).iter().nth(1).is_some() {
        return Err(ProxyError::BadRequest);
    }
    // An absolute-form target (or HTTP/2's :authority) names the host; a `Host` that
    // says otherwise must not reach the origin, or routing and origin would read the
    // request differently (RFC 9112 section 3.2.2: the target's authority wins).
    if let Some(authority) = req.uri().authority()
        && req
            .headers()
            .get(http::header::HOST)
            .is_some_and(|h| h.as_bytes() != authority.as_str().as_bytes())
    {
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| ProxyError::BadRequest)?;
        req.headers_mut().insert(http::header::HOST, host);
    }
    Ok(())
}
