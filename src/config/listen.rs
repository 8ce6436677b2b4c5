//! `[listen]`: the data-plane listeners, the files their TLS needs, and the rule that no
//! two listeners share an address.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::report::Report;

/// `[listen]`: the data-plane listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Clients: HTTP/1.1 and HTTP/2 with prior knowledge on one port.
    pub public: SocketAddr,
    /// Clients over TLS (ALPN `h2`, `http/1.1`); needs `tls_cert` and `tls_key`.
    pub public_tls: Option<SocketAddr>,
    /// PEM certificate chain for `public_tls`.
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for `public_tls`.
    pub(crate) tls_key: Option<PathBuf>,
    /// Traffic forwarded by other regions' proxies, in the clear: run it only inside a
    /// trusted network, since it honours the hop headers it receives.
    pub peer: Option<SocketAddr>,
    /// Traffic forwarded by other regions' proxies over mutual TLS: a client must present
    /// a certificate signed by `peer_tls_ca`.
    pub(crate) peer_tls: Option<SocketAddr>,
    /// This proxy's certificate chain and key for `peer_tls` (PEM).
    pub(crate) peer_tls_cert: Option<PathBuf>,
    pub(crate) peer_tls_key: Option<PathBuf>,
    /// The CA that signs the peer proxies' client certificates (PEM).
    pub(crate) peer_tls_ca: Option<PathBuf>,
}

impl Listen {
    /// Stands in for a `[listen]` that is missing or unreadable, so that the other sections
    /// are still read and checked; [`Listen::check`] reports it, so no `Config` keeps it.
    pub(super) fn absent() -> Listen {
        Listen {
            public: SocketAddr::from(([0, 0, 0, 0], 0)),
            public_tls: None,
            tls_cert: None,
            tls_key: None,
            peer: None,
            peer_tls: None,
            peer_tls_cert: None,
            peer_tls_key: None,
            peer_tls_ca: None,
        }
    }

    /// Makes the TLS files absolute; each TLS listener needs its files, readable.
    pub(super) fn check(&mut self, report: &mut Report<'_>) {
        if !report.given("listen") {
            report.error("listen", "missing table `[listen]` (at least `public`)");
        }
        if !report.was_read("listen") {
            return;
        }
        for path in [
            &mut self.tls_cert,
            &mut self.tls_key,
            &mut self.peer_tls_cert,
            &mut self.peer_tls_key,
            &mut self.peer_tls_ca,
        ] {
            report.resolve(path);
        }
        if self.public_tls.is_some() {
            let files = [("listen.tls_cert", &self.tls_cert), ("listen.tls_key", &self.tls_key)];
            report.require_files("listen.public_tls", &files);
        }
        if self.peer_tls.is_some() {
            let files = [
                ("listen.peer_tls_cert", &self.peer_tls_cert),
                ("listen.peer_tls_key", &self.peer_tls_key),
                ("listen.peer_tls_ca", &self.peer_tls_ca),
            ];
            report.require_files("listen.peer_tls", &files);
        }
    }

    /// No two listeners, the admin one included, on one address (port 0 is a fresh port
    /// each time, so it never collides).
    pub(super) fn check_addresses(&self, admin: SocketAddr, report: &mut Report<'_>) {
        if !report.was_read("listen") {
            return;
        }
        let mut seen = vec![("admin.listen", admin)];
        let named = [
            ("listen.public", Some(self.public)),
            ("listen.public_tls", self.public_tls),
            ("listen.peer", self.peer),
        ];
        for (field, addr) in named {
            let Some(addr) = addr else { continue };
            if addr.port() != 0
                && let Some((other, _)) = seen.iter().find(|(_, a)| *a == addr)
            {
                report.error(field, format!("address {addr} is already used by {other}"));
            }
            seen.push((field, addr));
        }
    }
}
