//! `[peers.REGION]`: how this proxy reaches another region's fleet, through its load
//! balancer or straight to its proxies, in the clear or over mutual TLS.

use std::path::PathBuf;

use serde::Deserialize;

use super::Protocol;
use super::report::Report;
use crate::vocab::checks::{check_host_port, check_name};

/// `[peers.REGION]`: how to reach another region's fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The region's load balancer in front of its proxies.
    #[serde(default)]
    pub lb: Vec<String>,
    /// The region's proxies, reached directly when the load balancer is bypassed.
    #[serde(default)]
    pub proxies: Vec<String>,
    /// Protocol between proxies; `[forwarding] peer_protocol` when absent.
    #[serde(default)]
    pub(crate) protocol: Option<Protocol>,
    /// Reach this region over mutual TLS (its `peer_tls` listeners).
    #[serde(default)]
    pub(crate) tls: bool,
    /// The CA that signs the region's proxies' server certificates (PEM).
    #[serde(default)]
    pub(crate) ca: Option<PathBuf>,
    /// This proxy's client certificate chain and key (PEM).
    #[serde(default)]
    pub(crate) client_cert: Option<PathBuf>,
    #[serde(default)]
    pub(crate) client_key: Option<PathBuf>,
    /// The name the region's certificates carry, when it is not the endpoint's host.
    #[serde(default)]
    pub(crate) server_name: Option<String>,
}

impl Peer {
    /// Makes the TLS files absolute and checks the peer `name`; `own_region` is this
    /// proxy's region, when the file gives one that could be read.
    pub(super) fn check(&mut self, name: &str, own_region: Option<&str>, report: &mut Report<'_>) {
        let at = format!("peers.{name}");
        if let Err(why) = check_name(name) {
            report.error(at.clone(), format!("invalid region name: {why}"));
        }
        if own_region == Some(name) {
            report.error(at.clone(), "a region cannot be its own peer");
        }
        if self.lb.is_empty() && self.proxies.is_empty() {
            report.error(at.clone(), "needs `lb` or `proxies` addresses");
        }
        for (kind, list) in [("lb", &self.lb), ("proxies", &self.proxies)] {
            for (i, ep) in list.iter().enumerate() {
                if let Err(why) = check_host_port(ep) {
                    report.error(format!("{at}.{kind}[{i}]"), format!("{ep:?}: {why}"));
                }
            }
        }
        self.check_tls(&at, report);
    }

    fn check_tls(&mut self, at: &str, report: &mut Report<'_>) {
        for path in [&mut self.ca, &mut self.client_cert, &mut self.client_key] {
            report.resolve(path);
        }
        if self.tls {
            let files = [
                (format!("{at}.ca"), &self.ca),
                (format!("{at}.client_cert"), &self.client_cert),
                (format!("{at}.client_key"), &self.client_key),
            ];
            let named: Vec<(&str, &Option<PathBuf>)> = files.iter().map(|(f, p)| (f.as_str(), *p)).collect();
            report.require_files(&format!("{at}.tls"), &named);
        }
        if let Some(n) = &self.server_name
            && rustls_pki_types::ServerName::try_from(n.as_str()).is_err()
        {
            report.error(format!("{at}.server_name"), "not a valid DNS name or IP address");
        }
    }
}
