//! Where a request came from: the kind of listener it arrived on, which decides what the
//! proxy trusts, and what is known of the client connection.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;

use super::headers;
use crate::vocab::activity::ConnActivity;

/// Which listener a connection arrived on; it decides what the proxy trusts.
/// The discriminant is the listener's index in the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    Public = 0,
    PublicTls = 1,
    Peer = 2,
    /// The peer listener over mutual TLS.
    PeerTls = 3,
}

impl ListenerKind {
    /// Every kind, in discriminant order.
    pub(crate) const ALL: [ListenerKind; 4] =
        [ListenerKind::Public, ListenerKind::PublicTls, ListenerKind::Peer, ListenerKind::PeerTls];

    pub(crate) fn name(self) -> &'static str {
        match self {
            ListenerKind::Public => "public",
            ListenerKind::PublicTls => "public_tls",
            ListenerKind::Peer => "peer",
            ListenerKind::PeerTls => "peer_tls",
        }
    }

    /// Clients on public listeners may not steer the fleet or claim forwarding fields.
    pub(crate) fn untrusted(self) -> bool {
        !self.is_peer()
    }

    /// Traffic from other regions' proxies (in the clear or over mutual TLS).
    pub(crate) fn is_peer(self) -> bool {
        matches!(self, ListenerKind::Peer | ListenerKind::PeerTls)
    }

    /// The scheme the client spoke, for `x-forwarded-proto`.
    pub(crate) fn proto(self) -> &'static str {
        if matches!(self, ListenerKind::PublicTls | ListenerKind::PeerTls) { "https" } else { "http" }
    }
}

/// What the proxy knows about one client connection.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) listener: ListenerKind,
    pub(crate) remote: SocketAddr,
    /// `remote`'s IP as a header value, made once for all the connection's requests.
    pub(crate) client_ip: HeaderValue,
    /// The connection's requests in flight and idle time, which drain watches.
    pub(crate) activity: Arc<ConnActivity>,
}

impl ConnCtx {
    pub(crate) fn new(listener: ListenerKind, remote: SocketAddr, activity: Arc<ConnActivity>) -> ConnCtx {
        ConnCtx { listener, remote, client_ip: headers::ip_header(remote.ip()), activity }
    }
}
