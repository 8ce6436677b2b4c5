//! Routing: request host + path → origin, compiled once from `[[routes]]`.
//!
//! Hosts are tried from the most specific pattern to the least (exact, then `*.suffix`
//! by suffix length, then `*`); within the first host pattern that has a route matching the
//! path, the longest path prefix wins. A host whose routes do not cover the path falls
//! through to less specific patterns, so a catch-all `*` route keeps serving it.

use crate::config::Route;

/// An origin's position in the proxy's origin list: routing hands out indices, never names,
/// so the request path does no string lookups after the match.
pub type OriginId = usize;

#[derive(Debug, Clone)]
enum HostMatch {
    Exact(Box<str>),
    /// `.example.com` (the leading `*` removed): any subdomain, not the apex.
    Suffix(Box<str>),
    Any,
}

impl HostMatch {
    fn parse(pattern: &str) -> HostMatch {
        if pattern == "*" {
            HostMatch::Any
        } else if let Some(rest) = pattern.strip_prefix('*') {
            HostMatch::Suffix(rest.to_ascii_lowercase().into())
        } else {
            HostMatch::Exact(pattern.to_ascii_lowercase().into())
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
            HostMatch::Any => true,
        }
    }

    /// Lower sorts first: exact hosts, then longer suffixes, then the catch-all.
    fn rank(&self) -> (u8, usize) {
        match self {
            HostMatch::Exact(_) => (0, 0),
            HostMatch::Suffix(s) => (1, usize::MAX - s.len()),
            HostMatch::Any => (2, 0),
        }
    }

    fn key(&self) -> (&str, u8) {
        match self {
            HostMatch::Exact(h) => (h, 0),
            HostMatch::Suffix(s) => (s, 1),
            HostMatch::Any => ("", 2),
        }
    }
}

#[derive(Debug, Clone)]
struct HostGroup {
    host: HostMatch,
    /// Longest prefix first, so the first match is the longest.
    prefixes: Vec<(Box<str>, OriginId)>,
}

/// The compiled route table.
#[derive(Debug, Clone, Default)]
pub struct Router {
    groups: Vec<HostGroup>,
}

impl Router {
    /// Compiles routes; `origin_id` maps an origin name to its index (routes are validated,
    /// so every name resolves; an unknown one is skipped rather than trusted).
    pub fn new(routes: &[Route], origin_id: impl Fn(&str) -> Option<OriginId>) -> Router {
        let mut groups: Vec<HostGroup> = Vec::new();
        for r in routes {
            let Some(id) = origin_id(&r.origin) else { continue };
            let host = HostMatch::parse(&r.host);
            let group = match groups.iter().position(|g| g.host.key() == host.key()) {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(HostGroup { host, prefixes: Vec::new() });
                    let last = groups.len() - 1;
                    &mut groups[last]
                }
            };
            // The first route for a given host and prefix wins, as it reads in the file.
            if !group.prefixes.iter().any(|(p, _)| **p == *r.path_prefix) {
                group.prefixes.push((r.path_prefix.as_str().into(), id));
            }
        }
        for g in &mut groups {
            g.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        }
        groups.sort_by_key(|g| g.host.rank());
        Router { groups }
    }

    /// The origin for a host (port already removed) and path, if any route matches.
    pub fn route(&self, host: &str, path: &str) -> Option<OriginId> {
        self.groups
            .iter()
            .filter(|g| g.host.matches(host))
            .find_map(|g| g.prefixes.iter().find(|(p, _)| path.starts_with(&**p)).map(|(_, id)| *id))
    }
}

/// The host a request is for, without port: the URI authority (HTTP/2, absolute-form) or
/// the `Host` header.
pub fn request_host<B>(req: &http::Request<B>) -> &str {
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
    fn host_from_request() {
        let req = http::Request::builder().uri("/x").header("host", "Example.com:8080").body(()).unwrap();
        assert_eq!(request_host(&req), "Example.com");
        let req = http::Request::builder().uri("http://[::1]:80/x").body(()).unwrap();
        assert_eq!(request_host(&req), "[::1]");
        let req = http::Request::builder().uri("/x").body(()).unwrap();
        assert_eq!(request_host(&req), "");
    }
}
