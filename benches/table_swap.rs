//! Criterion benches for the control plane's effect on the request path.
//!
//! - `table/compile_and_swap_10k_routes`: validate-free compile of a table with 10,000
//!   routes (5,000 hosts, two prefixes each) and its store into the `TableStore`: what a
//!   push costs, all of it off the request path.
//! - `target/load_and_pick_during_swaps`: what a request pays for its table (one atomic
//!   load) and its target choice while another thread swaps tables back to back.
//! - `route/10k_routes`: a route lookup in that 10,000-route table.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use flowgate::config::Route;
use flowgate::table::Table;
use flowgate::table::compile::{CompiledTable, Regions};
use flowgate::table::store::TableStore;
use rand::SeedableRng;

fn big_table(version: u64) -> Table {
    let mut t = Table::local_only();
    t.version = version;
    let w = if version.is_multiple_of(2) { [60u64, 30, 10] } else { [10, 30, 60] };
    let names = ["us-east-1", "us-west-2", "eu-west-1"];
    t.weights.insert("us-east-1".into(), names.iter().zip(w).map(|(n, w)| (n.to_string(), w)).collect());
    let mut routes = Vec::with_capacity(10_000);
    for i in 0..5_000 {
        routes.push(Route {
            host: format!("svc{i}.example.com"),
            path_prefix: "/".into(),
            origin: "api".into(),
        });
        routes.push(Route {
            host: format!("svc{i}.example.com"),
            path_prefix: format!("/v{i}/"),
            origin: "video".into(),
        });
    }
    t.routes = Some(routes);
    t
}

fn setup() -> (Regions, Vec<Arc<str>>) {
    let regions = Regions { names: vec!["us-east-1".into(), "us-west-2".into(), "eu-west-1".into()] };
    (regions, vec!["api".into(), "video".into()])
}

fn bench_swap(c: &mut Criterion) {
    let (regions, origins) = setup();
    let store = TableStore::new(CompiledTable::compile(big_table(1), &regions, &origins, &[]));
    let tables = [big_table(2), big_table(3)];
    let mut n = 0usize;
    c.bench_function("table/compile_and_swap_10k_routes", |b| {
        b.iter(|| {
            n += 1;
            let t = tables[n % 2].clone();
            store.store(CompiledTable::compile(black_box(t), &regions, &origins, &[]));
        })
    });
    let table = store.load();
    c.bench_function("route/10k_routes", |b| {
        b.iter(|| table.router.route(black_box("svc4321.example.com"), black_box("/v4321/items/9")))
    });
}

fn bench_pick_during_swaps(c: &mut Criterion) {
    let (regions, origins) = setup();
    let small = |v: u64| {
        let mut t = big_table(v);
        t.routes = None;
        CompiledTable::compile(t, &regions, &origins, &[])
    };
    let store = Arc::new(TableStore::new(small(1)));
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (store, stop) = (store.clone(), stop.clone());
        let prepared: Vec<CompiledTable> = (2..4).map(small).collect();
        let prepared: Vec<Arc<CompiledTable>> = prepared.into_iter().map(Arc::new).collect();
        std::thread::spawn(move || {
            let mut i = 0usize;
            // Bounded by the bench's own length: it stops as soon as the bench is done.
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                store.store_arc(prepared[i % 2].clone());
            }
            i
        })
    };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    c.bench_function("target/load_and_pick_during_swaps", |b| {
        b.iter(|| {
            let table = store.load();
            table.row(0).and_then(|r| r.pick(&mut rng, |_| 1.0, |_| false))
        })
    });
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap_or(0);
    eprintln!("swaps during the pick bench: {swaps}");
}

criterion_group!(benches, bench_swap, bench_pick_during_swaps);
criterion_main!(benches);
