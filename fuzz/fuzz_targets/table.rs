//! The traffic table as pushed to `PUT /v1/table`: any bytes must parse or be refused
//! with an error, never panic; what parses must survive a JSON round trip unchanged; what
//! validates must compile into pickers that always choose a weighted region, and into a
//! router that answers any host and path.
#![no_main]

use std::sync::Arc;

use flowgate::table::Table;
use flowgate::table::compile::{CompiledTable, Regions};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let Ok(table) = Table::parse(data) else { return };
    let text = serde_json::to_vec(&table).expect("a parsed table serializes");
    let again = Table::parse(&text).expect("a serialized table parses");
    assert_eq!(table, again, "the JSON round trip changed the table");

    let known = table.self_known();
    if table.validate(&known).is_err() || known.regions.is_empty() {
        return;
    }
    let regions = Regions { names: known.regions.iter().map(|r| Arc::from(*r)).collect() };
    let origins: Vec<Arc<str>> = known.origins.iter().map(|o| Arc::from(*o)).collect();
    let compiled = CompiledTable::compile(table.clone(), &regions, &origins, &[]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(data.len() as u64);
    for id in 0..origins.len() {
        let row = compiled.row(id).expect("one picker per origin");
        let picked = row.pick(&mut rng, |_| 1.0, |_| false).expect("a compiled row always picks");
        assert!(row.entries().iter().any(|(t, w)| *t == picked && *w > 0), "picked an unweighted target");
    }
    for host in ["", "api.example.com", "a.b.example.com", "*", "xn--d1acufc.example"] {
        for path in ["/", "/api/v1/x", "", "//", "/%2e%2e/"] {
            if let Some(id) = compiled.router.route(host, path) {
                assert!(id < origins.len(), "router returned an origin that does not exist");
            }
        }
    }
});
