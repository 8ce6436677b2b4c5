//! Criterion benches for the per-request hot paths.
//!
//! - `route/*`: host + longest-prefix match over a route table of realistic size.
//! - `headers/upstream`: the full request header rewrite (hop-by-hop strip, `x-flowgate-*`
//!   strip, forwarding fields) on a typical browser request.
//! - `target/*`: one weighted pick over a three-region row, all healthy and with one
//!   region down (its share redistributed); `table/compile`: a table compiled for a proxy.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flowgate::config::Route;
use flowgate::proxy::headers::{self, ClientHop};
use flowgate::table::Table;
use flowgate::table::compile::{CompiledTable, Regions, Target};
use flowgate::table::route::Router;
use http::{HeaderMap, HeaderValue, Version};
use rand::SeedableRng;

fn routes() -> Vec<Route> {
    let mut r = Vec::new();
    for i in 0..20 {
        r.push(Route { host: format!("svc{i}.example.com"), path_prefix: "/".into(), origin: "a".into() });
        r.push(Route {
            host: format!("svc{i}.example.com"),
            path_prefix: format!("/v{i}/"),
            origin: "b".into(),
        });
    }
    r.push(Route { host: "*.example.com".into(), path_prefix: "/".into(), origin: "a".into() });
    r.push(Route { host: "*".into(), path_prefix: "/static/".into(), origin: "b".into() });
    r.push(Route { host: "*".into(), path_prefix: "/".into(), origin: "a".into() });
    r
}

fn bench_route(c: &mut Criterion) {
    let router = Router::new(&routes(), |n| if n == "a" { Some(0) } else { Some(1) });
    c.bench_function("route/exact_host", |b| {
        b.iter(|| router.route(black_box("svc17.example.com"), black_box("/v17/users/42")))
    });
    c.bench_function("route/catch_all", |b| {
        b.iter(|| router.route(black_box("other.org"), black_box("/static/app.js")))
    });
}

fn browser_request() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-US,en;q=0.5"),
        ("connection", "keep-alive"),
        ("cookie", "session=abcdef0123456789"),
        ("x-forwarded-for", "203.0.113.7"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn bench_headers(c: &mut Criterion) {
    let template = browser_request();
    let via = headers::ViaValues::new("us-east-1").expect("region");
    let ip = headers::ip_header("198.51.100.1".parse().expect("ip"));
    let hop =
        ClientHop { client_ip: &ip, proto: "https", untrusted: true, via: via.for_version(Version::HTTP_11) };
    c.bench_function("headers/upstream", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |h| {
                headers::strip_flowgate(h);
                headers::strip_hop_by_hop(h, false);
                headers::add_forwarding(h, &hop)
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn three_regions() -> (Table, Regions, Vec<std::sync::Arc<str>>) {
    let mut t = Table::local_only();
    t.version = 2;
    let row = [("us-east-1", 50u64), ("us-west-2", 30), ("eu-west-1", 20)];
    t.weights.insert("us-east-1".into(), row.iter().map(|(k, v)| (k.to_string(), *v)).collect());
    let regions = Regions { names: vec!["us-east-1".into(), "us-west-2".into(), "eu-west-1".into()] };
    (t, regions, vec!["api".into(), "video".into()])
}

fn bench_target(c: &mut Criterion) {
    let (t, regions, origins) = three_regions();
    let compiled = CompiledTable::compile(t.clone(), &regions, &origins, &routes());
    let row = compiled.row(0).expect("row");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    c.bench_function("target/pick_all_healthy", |b| {
        b.iter(|| row.pick(&mut rng, |_| black_box(1.0), |_| false))
    });
    c.bench_function("target/pick_one_down", |b| {
        b.iter(|| row.pick(&mut rng, |t| if t == Target::Local { 0.0 } else { 1.0 }, |_| false))
    });
    c.bench_function("table/compile", |b| {
        b.iter(|| CompiledTable::compile(black_box(t.clone()), &regions, &origins, &[]))
    });
}

criterion_group!(benches, bench_route, bench_headers, bench_target);
criterion_main!(benches);
