//! The request of one attempt as it goes to [`super::forward::Upstream::send`]: the
//! client's head as the request path left it, which the own HTTP/1.1 pool writes from
//! where it is (no copy of its fields per attempt), with the next hop's fields after them
//! when it goes to a peer region; or a request made for this attempt (hyper's clients take
//! it by value).

use http::Request;
use http::request::Parts;

use super::headers::is_upgrade_request;
use super::hop::NextHop;
use super::pool::Fields;
use super::request_body::{UpstreamBody, attempt_request};

/// A made request is boxed: it is the rarer, and would make every attempt's future larger.
pub(crate) enum Outgoing<'a> {
    Head {
        head: &'a Parts,
        body: UpstreamBody,
        /// It asks for a protocol switch, as the request path found when it prepared the
        /// head (`is_upgrade_request` says the same of it).
        upgrade: bool,
        /// To a peer region: the fleet fields that replace any the head has.
        next_hop: Option<NextHop<'a>>,
        /// Where the own HTTP/1.1 pool puts the answer's ordinary fields (hyper's
        /// clients put them in the map).
        fields: Fields,
    },
    Made(Box<Request<UpstreamBody>>),
}

impl Outgoing<'_> {
    pub(crate) fn is_upgrade(&self) -> bool {
        match self {
            Outgoing::Head { upgrade, .. } => *upgrade,
            Outgoing::Made(r) => is_upgrade_request(r.version(), r.headers()),
        }
    }

    /// The request, owned (a copy of a borrowed head).
    pub(crate) fn into_request(self) -> Request<UpstreamBody> {
        match self {
            Outgoing::Head { head, body, next_hop, .. } => {
                let mut req = attempt_request(head, body);
                if let Some(next) = next_hop {
                    next.write(req.headers_mut());
                }
                req
            }
            Outgoing::Made(r) => *r,
        }
    }
}
