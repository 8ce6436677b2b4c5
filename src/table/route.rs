//! Routing: request host + path → origin, compiled once from `[[routes]]`.
//!
//! Hosts are tried from the most specific pattern to the least (exact, then `*.suffix`
//! by suffix length, then `*`); within the first host pattern that has a route matching the
//! path, the longest path prefix wins. A host whose routes do not cover the path falls
//! through to less specific patterns, so a catch-all `*` route keeps serving it.

use std::collections::HashMap;

use crate::config::Route;

/// An origin's position in the proxy's origin list: routing hands out indices, never names,
/// so the request path does no string lookups after the match.
pub type OriginId = usize;

/// The routes of one host pattern: a path's longest matching prefix picks the origin.
#[derive(Debug, Clone, Default)]
struct Prefixes {
    /// Longest first. Small groups are scanned; that beats hashing for a handful.
    list: Vec<(Box<str>, OriginId)>,
    index: Option<PrefixIndex>,
}

/// For large groups: prefix → origin, and the distinct prefix lengths, longest first, so
/// a lookup costs one hash probe per distinct length, however many routes.
#[derive(Debug, Clone)]
struct PrefixIndex {
    map: HashMap<Box<str>, OriginId>,
    lengths: Vec<usize>,
}

/// Above this many prefixes in one host group, lookups go through the hash index.
const SCAN_LIMIT: usize = 16;

impl Prefixes {
    fn add(&mut self, prefix: &str, id: OriginId) {
        // The first route for a given host and prefix wins, as it reads in the file.
        if !self.list.iter().any(|(p, _)| **p == *prefix) {
            self.list.push((prefix.into(), id));
        }
    }

    fn finish(&mut self) {
        self.list.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        if self.list.len() > SCAN_LIMIT {
            let map: HashMap<Box<str>, OriginId> = self.list.iter().cloned().collect();
            let mut lengths: Vec<usize> = self.list.iter().map(|(p, _)| p.len()).collect();
            lengths.dedup();
            self.index = Some(PrefixIndex { map, lengths });
        }
    }

    fn find(&self, path: &str) -> Option<OriginId> {
        match &self.index {
            None => self.list.iter().find(|(p, _)| path.starts_with(&**p)).map(|(_, id)| *id),
            Some(ix) => ix
                .lengths
                .iter()
                .filter(|&&n| n <= path.len() && path.is_char_boundary(n))
                .find_map(|&n| ix.map.get(&path[..n]).copied()),
        }
    }
}

/// The compiled route table. Hosts are tried from the most specific pattern to the
/// least: exact (one hash probe), then `*.suffix` from the longest suffix (one probe per
/// label of the host), then `*`.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Lowercase host → its routes.
    exact: HashMap<Box<str>, Prefixes>,
    /// Lowercase suffix with its leading dot (`.example.com`) → its routes.
    suffix: HashMap<Box<str>, Prefixes>,
    any: Option<Prefixes>,
}

impl Router {
    /// Compiles routes; `origin_id` maps an origin name to its index (routes are validated,
    /// so every name resolves; an unknown one is skipped rather than trusted).
    pub fn new(routes: &[Route], origin_id: impl Fn(&str) -> Option<OriginId>) -> Router {
        let mut r = Router::default();
        for route in routes {
            let Some(id) = origin_id(&route.origin) else { continue };
            let group = if route.host == "*" {
                r.any.get_or_insert_with(Prefixes::default)
            } else if let Some(rest) = route.host.strip_prefix('*') {
                r.suffix.entry(rest.to_ascii_lowercase().into()).or_default()
            } else {
                r.exact.entry(route.host.to_ascii_lowercase().into()).or_default()
            };
            group.add(&route.path_prefix, id);
        }
        r.exact.values_mut().chain(r.suffix.values_mut()).chain(r.any.iter_mut()).for_each(Prefixes::finish);
        r
    }

    /// The origin for a host (port already removed) and path, if any route matches.
    pub fn route(&self, host: &str, path: &str) -> Option<OriginId> {
        // Hosts are nearly always lowercase already; only fold when needed.
        let folded;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            folded = host.to_ascii_lowercase();
            folded.as_str()
        } else {
            host
        };
        if let Some(id) = self.exact.get(host).and_then(|g| g.find(path)) {
            return Some(id);
        }
        if !self.suffix.is_empty() {
            // `a.b.example.com` tries `.b.example.com`, `.example.com`, `.com`: the
            // longest suffix first, and never the whole host (a wildcard is not the apex).
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                let candidate = &rest[dot..];
                if let Some(id) = self.suffix.get(candidate).and_then(|g| g.find(path)) {
                    return Some(id);
                }
                rest = &rest[dot + 1..];
            }
        }
        self.any.as_ref().and_then(|g| g.find(path))
    }
}

/// The host a request is for, without port: the URI authority (HTTP/2, absolute-form) or
/// the `Host` header.
pub(crate) fn request_host<B>(req: &http::Request<B>) -> &str {
    let raw = match req.uri().host() {
        Some(h) => h,
        None => req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or(""),
    };
    strip_port(raw)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop what follows `]`.
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) => &host[..i],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str, prefix: &str, origin: &str) -> Route {
        Route { host: host.into(), path_prefix: prefix.into(), origin: origin.into() }
    }

    fn router(routes: &[Route]) -> Router {
        let names = ["a", "b", "c", "d"];
        Router::new(routes, |n| names.iter().position(|x| *x == n))
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router(&[route("*", "/", "a"), route("*", "/api/", "b"), route("*", "/api/v2/", "c")]);
        assert_eq!(r.route("x", "/"), Some(0));
        assert_eq!(r.route("x", "/api/x"), Some(1));
        assert_eq!(r.route("x", "/api/v2/y"), Some(2));
    }

    #[test]
    fn host_specificity() {
        let r = router(&[
            route("*", "/", "a"),
            route("*.example.com", "/", "b"),
            route("api.example.com", "/", "c"),
            route("*.eu.example.com", "/", "d"),
        ]);
        assert_eq!(r.route("API.example.com", "/"), Some(2));
        assert_eq!(r.route("www.example.com", "/"), Some(1));
        assert_eq!(r.route("x.eu.example.com", "/"), Some(3));
        assert_eq!(r.route("example.com", "/"), Some(0), "a wildcard does not cover the apex");
        assert_eq!(r.route("other.org", "/"), Some(0));
    }

    #[test]
    fn falls_through_and_misses() {
        let r = router(&[route("api.example.com", "/v1/", "a"), route("*", "/static/", "b")]);
        assert_eq!(r.route("api.example.com", "/static/x"), Some(1));
        assert_eq!(r.route("api.example.com", "/other"), None);
        assert_eq!(r.route("x", "/v1/"), None);
    }

    #[test]
    fn large_tables_use_the_index_and_agree_with_a_scan() {
        let mut routes = vec![route("*", "/", "a")];
        for i in 0..2000 {
            routes.push(route("*", &format!("/svc{i}/"), if i % 2 == 0 { "b" } else { "c" }));
            routes.push(route(&format!("h{i}.example.com"), &format!("/v{i}/"), "d"));
        }
        let r = router(&routes);
        assert_eq!(r.route("x", "/svc10/users"), Some(1));
        assert_eq!(r.route("x", "/svc11/users"), Some(2));
        assert_eq!(r.route("x", "/svc1"), Some(0), "a prefix must match whole");
        assert_eq!(r.route("h7.example.com", "/v7/x"), Some(3));
        assert_eq!(r.route("H7.Example.COM", "/v7/x"), Some(3));
        assert_eq!(r.route("h7.example.com", "/v8/x"), Some(0), "falls through to *");
    }

    #[test]
    fn host_from_request() {
        let req = http::Request::builder().uri("/x").header("host", "Example.com:8080").body(()).unwrap();
        assert_eq!(request_host(&req), "Example.com");
        let req = http::Request::builder().uri("http://[::1]:80/x").body(()).unwrap();
        assert_eq!(request_host(&req), "[::1]");
        let req = http::Request::builder().uri("/x").body(()).unwrap();
        assert_eq!(request_host(&req), "");
    }
}
