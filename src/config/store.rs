//! `[store]`: the etcd cluster that holds the fleet's state, in a proxy's config and in a
//! fleet file alike (one table, one set of checks).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `[store]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// Client URLs of the cluster's members: `http://host:2379` or `https://...`.
    pub(crate) etcd: Vec<String>,
    /// Every key flowgate writes starts with this.
    #[serde(default = "default_prefix")]
    pub(crate) prefix: String,
    /// TLS: the CA that signs the members' certificates, and this client's certificate
    /// chain and key (PEM), for `https://` members.
    #[serde(default)]
    pub(crate) ca: Option<PathBuf>,
    #[serde(default)]
    pub(crate) cert: Option<PathBuf>,
    #[serde(default)]
    pub(crate) key: Option<PathBuf>,
    /// Each request to the store, and each connection attempt.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// The TTL of the leases behind the operation lock and the autopilot's leadership: a
    /// holder that dies loses them this long after its last keep-alive.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub(crate) lease_ttl: Duration,
}

fn default_prefix() -> String {
    "/flowgate".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

impl Store {
    /// Checks what serde cannot and makes paths absolute against `base`; returns the
    /// problems as (field under `store.`, message).
    pub(crate) fn check(&mut self, base: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !cfg!(feature = "etcd") {
            out.push((
                "store".to_owned(),
                "this flowgate was built without etcd support: build it with `cargo build --release --features etcd` (needs protoc, Debian's protobuf-compiler)".to_owned(),
            ));
        }
        if self.etcd.is_empty() {
            out.push(("store.etcd".to_owned(), "needs at least one member URL".to_owned()));
        }
        for (i, url) in self.etcd.iter().enumerate() {
            let ok = url
                .parse::<http::Uri>()
                .ok()
                .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
            if !ok {
                out.push((
                    format!("store.etcd[{i}]"),
                    format!("{url:?}: expected http://HOST:PORT or https://HOST:PORT"),
                ));
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.len() < 2 || self.prefix.ends_with('/') {
            out.push((
                "store.prefix".to_owned(),
                format!("{:?}: must start with `/`, not end with one, and name something", self.prefix),
            ));
        }
        let tls = [self.ca.is_some(), self.cert.is_some(), self.key.is_some()];
        if self.cert.is_some() != self.key.is_some() {
            out.push(("store.cert".to_owned(), "`cert` and `key` go together".to_owned()));
        }
        if tls.iter().any(|t| *t) && self.etcd.iter().any(|u| u.starts_with("http://")) {
            out.push((
                "store.etcd".to_owned(),
                "TLS files are set: every member URL must be https://".to_owned(),
            ));
        }
        if self.timeout.is_zero() {
            out.push(("store.timeout".to_owned(), "must be more than 0".to_owned()));
        }
        if self.lease_ttl < Duration::from_secs(2) {
            out.push((
                "store.lease_ttl".to_owned(),
                "must be at least 2s (etcd leases count in seconds)".to_owned(),
            ));
        }
        let resolve = |p: &Path| if p.is_absolute() { p.to_owned() } else { base.join(p) };
        for p in [&mut self.ca, &mut self.cert, &mut self.key].into_iter().flatten() {
            *p = resolve(p);
        }
        out
    }

    /// The key of the table in force.
    pub(crate) fn table_key(&self) -> String {
        format!("{}/table", self.prefix)
    }

    /// The key of the operation lock (`evacuate`, `restore`, `exercise`, an autopilot action).
    #[cfg(feature = "etcd")]
    pub(crate) fn lock_key(&self) -> String {
        format!("{}/lock", self.prefix)
    }

    /// The key the autopilots elect their leader on.
    #[cfg(feature = "etcd")]
    pub(crate) fn leader_key(&self) -> String {
        format!("{}/autopilot/leader", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(text: &str) -> Store {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn mistakes_are_named_by_field() {
        let mut s = store("etcd = [\"http://127.0.0.1:2379\", \"127.0.0.1:2379\"]\nprefix = \"flowgate/\"\n");
        let errors = s.check(Path::new("/etc/flowgate"));
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert!(fields.contains(&"store.etcd[1]"), "{errors:?}");
        assert!(fields.contains(&"store.prefix"), "{errors:?}");
        assert!(!fields.contains(&"store.etcd[0]"), "{errors:?}");
    }

    #[test]
    fn tls_paths_are_relative_to_the_file_and_need_https() {
        let mut s =
            store("etcd = [\"https://10.0.0.1:2379\"]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
        let errors: Vec<_> =
            s.check(Path::new("/etc/flowgate")).into_iter().filter(|(f, _)| f != "store").collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.ca.as_deref(), Some(Path::new("/etc/flowgate/ca.pem")));
        let mut plain = store("etcd = [\"http://10.0.0.1:2379\"]\nca = \"ca.pem\"\n");
        assert!(plain.check(Path::new("/")).iter().any(|(f, _)| f == "store.etcd"));
        assert_eq!(plain.table_key(), "/flowgate/table");
    }
}
