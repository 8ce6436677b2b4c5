//! Cross-field checks that serde cannot express, and the final `Config` assembly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Config;
use super::load::{ConfigErrors, Errors, Sections};
use crate::vocab::checks::{check_host_pattern, check_host_port, check_name};

pub(super) fn finish(mut errors: Errors<'_>, mut s: Sections) -> Result<Config, ConfigErrors> {
    let base = errors.file().parent().map(Path::to_owned).unwrap_or_default();
    let resolve = |p: &Path| -> PathBuf { if p.is_absolute() { p.to_owned() } else { base.join(p) } };

    if !s.saw_region {
        errors.push("region", None, "missing field `region`");
    }
    if let Some(region) = &s.region
        && let Err(why) = check_name(region)
    {
        let span = errors.span_of("region");
        errors.push("region", span, format!("invalid region name {region:?}: {why}"));
    }
    if !s.saw_listen {
        errors.push("listen", None, "missing table `[listen]` (at least `public`)");
    }
    let mut listen = s.listen;
    if let Some(l) = &mut listen {
        check_listen(&mut errors, l, &resolve);
    }
    let mut admin = s.admin.unwrap_or_default();
    admin.state_dir = admin.state_dir.as_deref().map(resolve);
    admin.token_file = admin.token_file.as_deref().map(resolve);
    for (i, k) in admin.table_keys.iter().enumerate() {
        if let Err(m) = crate::vocab::checks::check_public_key(k) {
            errors.push(format!("admin.table_keys[{i}]"), errors.span_of("table_keys"), m);
        }
    }
    if let Some(f) = &admin.token_file
        && let Err(e) = std::fs::metadata(f)
    {
        errors.push("admin.token_file", errors.span_of("token_file"), format!("{}: {e}", f.display()));
    }
    if let Some(l) = &listen {
        let mut seen = vec![("admin.listen", admin.listen)];
        let named =
            [("listen.public", Some(l.public)), ("listen.public_tls", l.public_tls), ("listen.peer", l.peer)];
        for (field, addr) in named {
            let Some(addr) = addr else { continue };
            if addr.port() != 0
                && let Some((other, _)) = seen.iter().find(|(_, a)| *a == addr)
            {
                let span = errors.span_of(field.rsplit('.').next().unwrap_or(field));
                errors.push(field, span, format!("address {addr} is already used by {other}"));
            }
            seen.push((field, addr));
        }
    }
    for (name, origin) in &s.origins {
        if let Err(why) = check_name(name) {
            errors.push(
                format!("origins.{name}"),
                errors.span_of(name),
                format!("invalid origin name: {why}"),
            );
        }
        if origin.endpoints.is_empty() {
            errors.push(
                format!("origins.{name}.endpoints"),
                errors.span_of(name),
                "needs at least one endpoint",
            );
        }
        for (i, ep) in origin.endpoints.iter().enumerate() {
            if let Err(why) = check_host_port(ep) {
                errors.push(
                    format!("origins.{name}.endpoints[{i}]"),
                    errors.span_of(ep),
                    format!("{ep:?}: {why}"),
                );
            }
        }
        if !origin.health_path.starts_with('/') {
            errors.push(
                format!("origins.{name}.health_path"),
                errors.span_of(&origin.health_path),
                "must start with `/`",
            );
        }
        if origin.health == super::HealthCheck::Grpc && origin.protocol != super::Protocol::Http2 {
            errors.push(
                format!("origins.{name}.health"),
                errors.span_of(name),
                "`grpc` health checks need `protocol = \"h2\"` (gRPC runs over HTTP/2)",
            );
        }
        if !origin.health_service.is_empty() && origin.health != super::HealthCheck::Grpc {
            errors.push(
                format!("origins.{name}.health_service"),
                errors.span_of(&origin.health_service),
                "only used by `health = \"grpc\"`",
            );
        }
        if origin.max_concurrency == 0 {
            errors.push(format!("origins.{name}.max_concurrency"), None, "must be at least 1");
        }
        for (field, d) in
            [("connect_timeout", origin.connect_timeout), ("request_timeout", origin.request_timeout)]
        {
            if d == Some(Duration::ZERO) {
                errors.push(format!("origins.{name}.{field}"), None, "must be greater than 0");
            }
        }
    }
    for (name, peer) in s.peers.iter_mut() {
        peer.ca = peer.ca.as_deref().map(&resolve);
        peer.client_cert = peer.client_cert.as_deref().map(&resolve);
        peer.client_key = peer.client_key.as_deref().map(&resolve);
        if peer.tls {
            let files = [
                (format!("peers.{name}.ca"), &peer.ca),
                (format!("peers.{name}.client_cert"), &peer.client_cert),
                (format!("peers.{name}.client_key"), &peer.client_key),
            ];
            let named: Vec<(&str, &Option<PathBuf>)> = files.iter().map(|(f, p)| (f.as_str(), *p)).collect();
            require_files(&mut errors, "tls", &named);
        }
        if let Some(n) = &peer.server_name
            && rustls_pki_types::ServerName::try_from(n.as_str()).is_err()
        {
            errors.push(
                format!("peers.{name}.server_name"),
                errors.span_of(n),
                "not a valid DNS name or IP address",
            );
        }
    }
    for (name, peer) in &s.peers {
        if let Err(why) = check_name(name) {
            errors.push(format!("peers.{name}"), errors.span_of(name), format!("invalid region name: {why}"));
        }
        if s.region.as_deref() == Some(name.as_str()) {
            errors.push(format!("peers.{name}"), errors.span_of(name), "a region cannot be its own peer");
        }
        if peer.lb.is_empty() && peer.proxies.is_empty() {
            errors.push(format!("peers.{name}"), errors.span_of(name), "needs `lb` or `proxies` addresses");
        }
        for (kind, list) in [("lb", &peer.lb), ("proxies", &peer.proxies)] {
            for (i, ep) in list.iter().enumerate() {
                if let Err(why) = check_host_port(ep) {
                    errors.push(
                        format!("peers.{name}.{kind}[{i}]"),
                        errors.span_of(ep),
                        format!("{ep:?}: {why}"),
                    );
                }
            }
        }
    }
    let mut routes = Vec::with_capacity(s.routes.len());
    for (i, route) in s.routes.into_iter().enumerate() {
        let Some(route) = route else { continue };
        if let Err(why) = check_host_pattern(&route.host) {
            errors.push(format!("routes[{i}].host"), errors.span_of(&route.host), why);
        }
        if !route.path_prefix.starts_with('/') {
            errors.push(
                format!("routes[{i}].path_prefix"),
                errors.span_of(&route.path_prefix),
                "must start with `/`",
            );
        }
        if !s.origins.contains_key(&route.origin) {
            let needle = format!("\"{}\"", route.origin);
            let known: Vec<&str> = s.origins.keys().map(String::as_str).collect();
            errors.push(
                format!("routes[{i}].origin"),
                errors.span_of(&needle),
                format!("unknown origin `{}` (known: {})", route.origin, known.join(", ")),
            );
        }
        routes.push(route);
    }
    let timeouts = s.timeouts.unwrap_or_default();
    let named_timeouts = [
        ("timeouts.connect", timeouts.connect),
        ("timeouts.header_read", timeouts.header_read),
        ("timeouts.request", timeouts.request),
        ("timeouts.idle", timeouts.idle),
        ("timeouts.upstream_idle", timeouts.upstream_idle),
        ("timeouts.h2_ping_interval", timeouts.h2_ping_interval),
        ("timeouts.h2_ping_timeout", timeouts.h2_ping_timeout),
    ];
    for (field, d) in named_timeouts {
        if d.is_zero() {
            errors.push(field, None, "must be greater than 0");
        }
    }
    let limits = s.limits.unwrap_or_default();
    // hyper's smallest read buffer; the head must fit in it.
    if limits.max_header_bytes < 8192 {
        errors.push("limits.max_header_bytes", None, "must be at least 8192");
    }
    for (field, v) in [
        ("limits.max_headers", limits.max_headers),
        ("limits.max_connections", limits.max_connections),
        ("limits.max_concurrent_streams", limits.max_concurrent_streams as usize),
    ] {
        if v == 0 {
            errors.push(field, None, "must be at least 1");
        }
    }
    let health = s.health.unwrap_or_default();
    let outlier = s.outlier.unwrap_or_default();
    let balance = s.balance.unwrap_or_default();
    let retry = s.retry.unwrap_or_default();
    let forwarding = s.forwarding.unwrap_or_default();
    let bypass = s.bypass.unwrap_or_default();
    for (field, d) in [
        ("health.interval", health.interval),
        ("health.timeout", health.timeout),
        ("outlier.base_ejection", outlier.base_ejection),
        ("bypass.window", bypass.window),
    ] {
        if d.is_zero() {
            errors.push(field, None, "must be greater than 0");
        }
    }
    for (field, v, lo, hi) in [
        ("health.jitter", health.jitter, 0.0, 0.5),
        ("retry.budget_percent", retry.budget_percent, 0.0, 100.0),
        ("bypass.failure_ratio", bypass.failure_ratio, 0.0, 1.0),
        ("bypass.latency_factor", bypass.latency_factor, 1.0, 1000.0),
    ] {
        if !(v.is_finite() && (lo..=hi).contains(&v)) {
            errors.push(field, None, format!("must be between {lo} and {hi}"));
        }
    }
    for (field, v) in [
        ("health.healthy_threshold", health.healthy_threshold),
        ("health.unhealthy_threshold", health.unhealthy_threshold),
        ("outlier.consecutive_failures", outlier.consecutive_failures),
        ("retry.max_attempts", retry.max_attempts),
        ("forwarding.max_hops", forwarding.max_hops),
    ] {
        if v == 0 {
            errors.push(field, None, "must be at least 1");
        }
    }
    for (field, v) in [
        ("outlier.max_ejected_percent", outlier.max_ejected_percent),
        ("balance.panic_threshold_percent", balance.panic_threshold_percent),
    ] {
        if v > 100 {
            errors.push(field, None, "must be a percentage (0 to 100)");
        }
    }
    let overload = s.overload.unwrap_or_default();
    if overload.max_inflight == 0 {
        errors.push("overload.max_inflight", None, "must be at least 1");
    }
    if http::HeaderName::from_bytes(overload.priority_header.as_bytes()).is_err() {
        errors.push(
            "overload.priority_header",
            errors.span_of(&overload.priority_header),
            "not a valid header name",
        );
    }
    if !(overload.shed_low_at <= overload.shed_normal_at
        && overload.shed_normal_at <= overload.shed_high_at
        && overload.shed_high_at <= 100)
    {
        errors.push("overload", None, "shed_low_at <= shed_normal_at <= shed_high_at <= 100 is required");
    }
    let mut store = s.store.take();
    if let Some(st) = &mut store {
        for (field, message) in st.check(&base) {
            let span = errors.span_of("[store]");
            errors.push(field, span, message);
        }
    }
    let log = s.log.unwrap_or_default();
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log.level) {
        errors.push("log.level", errors.span_of(&log.level), format!("invalid filter: {e}"));
    }

    if !errors.list.is_empty() {
        return Err(ConfigErrors(errors.list));
    }
    let (Some(region), Some(listen)) = (s.region, listen) else {
        return Err(ConfigErrors(errors.list));
    };
    Ok(Config {
        file: errors.file().to_owned(),
        region,
        table: s.table.map(|t| resolve(Path::new(&t))),
        listen,
        admin,
        origins: s.origins,
        peers: s.peers,
        routes,
        timeouts,
        limits,
        drain: s.drain.unwrap_or_default(),
        fleet: s.fleet.unwrap_or_default(),
        log,
        runtime: s.runtime.unwrap_or_default(),
        health,
        outlier,
        balance,
        retry,
        forwarding,
        bypass,
        overload,
        store,
    })
}

fn check_listen(errors: &mut Errors<'_>, l: &mut super::Listen, resolve: &impl Fn(&Path) -> PathBuf) {
    l.tls_cert = l.tls_cert.as_deref().map(resolve);
    l.tls_key = l.tls_key.as_deref().map(resolve);
    l.peer_tls_cert = l.peer_tls_cert.as_deref().map(resolve);
    l.peer_tls_key = l.peer_tls_key.as_deref().map(resolve);
    l.peer_tls_ca = l.peer_tls_ca.as_deref().map(resolve);
    if l.public_tls.is_some() {
        require_files(
            errors,
            "public_tls",
            &[("listen.tls_cert", &l.tls_cert), ("listen.tls_key", &l.tls_key)],
        );
    }
    if l.peer_tls.is_some() {
        let files = [
            ("listen.peer_tls_cert", &l.peer_tls_cert),
            ("listen.peer_tls_key", &l.peer_tls_key),
            ("listen.peer_tls_ca", &l.peer_tls_ca),
        ];
        require_files(errors, "peer_tls", &files);
    }
}

/// Each file named must be given (because `because` is set) and readable.
fn require_files(errors: &mut Errors<'_>, because: &str, files: &[(&str, &Option<PathBuf>)]) {
    for (field, path) in files {
        match path {
            None => errors.push(*field, errors.span_of(because), format!("required when `{because}` is set")),
            Some(p) => {
                if let Err(e) = std::fs::metadata(p) {
                    let span = errors.span_of(field.rsplit('.').next().unwrap_or(field));
                    errors.push(*field, span, format!("{}: {e}", p.display()));
                }
            }
        }
    }
}
