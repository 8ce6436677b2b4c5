//! Admin addresses: `host:port` as written, or `dns:NAME:PORT` expanded to every A/AAAA
//! record of the name (a Kubernetes headless service lists every pod that way).

use std::net::SocketAddr;

/// One entry of a region's `admin` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Used as written (a name here resolves when connecting, to one address).
    Addr(String),
    /// Every address of the name, each a proxy.
    Dns { name: String, port: u16 },
}

impl Entry {
    pub(crate) fn parse(s: &str) -> Result<Entry, &'static str> {
        if let Some(rest) = s.strip_prefix("dns:") {
            let (name, port) = rest.rsplit_once(':').ok_or("expected dns:NAME:PORT")?;
            let port: u16 = port.parse().map_err(|_| "the port is not a number")?;
            if name.is_empty() || port == 0 {
                return Err("expected dns:NAME:PORT");
            }
            return Ok(Entry::Dns { name: name.to_owned(), port });
        }
        crate::config::check_host_port(s)?;
        Ok(Entry::Addr(s.to_owned()))
    }
}

/// Expands a region's entries into the proxies to talk to (`host:port` strings). A name
/// that does not resolve is reported by name: a proxy the operator expects is missing.
pub(crate) async fn expand(entries: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for e in entries {
        match Entry::parse(e).map_err(|m| format!("{e}: {m}"))? {
            Entry::Addr(a) => out.push(a),
            Entry::Dns { name, port } => {
                let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map_err(|err| format!("{e}: cannot resolve {name}: {err}"))?
                    .collect();
                if found.is_empty() {
                    return Err(format!("{e}: {name} has no address"));
                }
                let mut addrs: Vec<String> = found.iter().map(SocketAddr::to_string).collect();
                addrs.sort();
                addrs.dedup();
                out.extend(addrs);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        assert_eq!(Entry::parse("10.0.0.1:9901"), Ok(Entry::Addr("10.0.0.1:9901".into())));
        assert_eq!(Entry::parse("dns:svc.ns:9901"), Ok(Entry::Dns { name: "svc.ns".into(), port: 9901 }));
        assert!(Entry::parse("dns:svc").is_err());
        assert!(Entry::parse("dns::9901").is_err());
        assert!(Entry::parse("nohost").is_err());
    }

    #[tokio::test]
    async fn dns_entries_expand_to_every_address() {
        let got = expand(&["dns:localhost:9901".into(), "127.0.0.2:1".into()]).await.unwrap();
        assert!(got.iter().any(|a| a.ends_with(":9901")), "{got:?}");
        assert_eq!(got.last().map(String::as_str), Some("127.0.0.2:1"));
    }
}
