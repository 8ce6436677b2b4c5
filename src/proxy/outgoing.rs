//! The request of one attempt as it goes to [`super::forward::Upstream::send`]: the
//! client's head as the request path left it, which the own HTTP/1.1 pool writes from
//! where it is (no copy of its fields per attempt), or a request made for this attempt (one
//! to a peer region carries the next hop's fields; hyper's clients take it by value).

use http::Request;
use http::request::Parts;

use super::headers::is_upgrade_request;
use super::request_body::{UpstreamBody, attempt_request};

/// A borrowed head comes with whether it asks for a protocol switch, as the request path
/// found when it prepared the head (`is_upgrade_request` says the same of it). A made one
/// is boxed: it is the rarer, and would make every attempt's future larger.
pub(crate) enum Outgoing<'a> {
    Head(&'a Parts, UpstreamBody, bool),
    Made(Box<Request<UpstreamBody>>),
}

impl Outgoing<'_> {
    pub(crate) fn is_upgrade(&self) -> bool {
        match self {
            Outgoing::Head(_, _, upgrade) => *upgrade,
            Outgoing::Made(r) => is_upgrade_request(r.version(), r.headers()),
        }
    }

    /// The request, owned (a copy of a borrowed head).
    pub(crate) fn into_request(self) -> Request<UpstreamBody> {
        match self {
            Outgoing::Head(p, body, _) => attempt_request(p, body),
            Outgoing::Made(r) => *r,
        }
    }
}
