use proptest::prelude::*;

use super::*;

fn known() -> Known<'static> {
    Known { regions: vec!["us-east-1", "us-west-2", "eu-west-1"], origins: vec!["api", "video"] }
}

fn check(json: &str) -> Result<Table, TableError> {
    let t = Table::parse(json.as_bytes())?;
    t.validate(&known())?;
    Ok(t)
}

#[test]
fn contract_example_is_valid() {
    let t = check(
        r#"{"version": 7,
        "weights": {"us-east-1": {"us-east-1": 0, "us-west-2": 60, "eu-west-1": 40},
                    "us-west-2": {"us-west-2": 100}},
        "origins": {"video": {"us-east-1": {"us-east-1": 100}}},
        "routes": [{"host": "*", "path_prefix": "/", "origin": "api"}],
        "peer_modes": {"us-west-2": "auto"},
        "note": "evacuate us-east-1, step 6 of 10"}"#,
    )
    .unwrap();
    assert_eq!(t.version, 7);
}

#[test]
fn each_invalid_case_names_its_path() {
    let cases = [
        (r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": -1}}}"#, "weights.us-east-1.us-west-2"),
        (r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 1.5}}}"#, "weights.us-east-1.us-west-2"),
        (r#"{"version": 1, "weights": {"us-east-1": {"us-west-2": 0}}}"#, "weights.us-east-1"),
        (r#"{"version": 1, "weights": {"mars-1": {"us-west-2": 1}}}"#, "weights.mars-1"),
        (r#"{"version": 1, "weights": {"us-east-1": {"mars-1": 1}}}"#, "weights.us-east-1.mars-1"),
        (r#"{"version": 1, "origins": {"nope": {}}}"#, "origins.nope"),
        (r#"{"version": 1, "routes": [{"origin": "nope"}]}"#, "routes[0].origin"),
        (r#"{"version": 1, "bogus": 1}"#, "bogus"),
        (r#"{"version": 0}"#, "version"),
        (r#"{"version": -3}"#, "version"),
        (r#"{"version": 1, "peer_modes": {"us-west-2": "sideways"}}"#, "peer_modes.us-west-2"),
        (r#"{"weights": {}}"#, "version"),
        (r#"{"version": 1, "routes": [{"host": "*"}]}"#, "routes[0].origin"),
        (r#"[7]"#, ""),
    ];
    for (json, field) in cases {
        let err = check(json).expect_err(json);
        assert_eq!(err.field, field, "{json}: {err}");
    }
    let err = check(r#"{"version": 1, "bogus": 1}"#).unwrap_err();
    assert!(err.message.contains("bogus"), "{err}");
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![Just("us-east-1".to_owned()), Just("us-west-2".to_owned()), "[a-z0-9-]{1,12}", ".{0,8}"]
}

fn arb_row() -> impl Strategy<Value = Row> {
    proptest::collection::btree_map(arb_name(), 0..=MAX_WEIGHT * 2, 0..4)
}

fn arb_table() -> impl Strategy<Value = Table> {
    let routes = proptest::collection::vec(
        ("[*a-z.]{0,12}", "/?[a-z/]{0,8}", arb_name()).prop_map(|(host, path_prefix, origin)| Route {
            host,
            path_prefix,
            origin,
        }),
        0..3,
    );
    let mode = prop_oneof![Just(PeerMode::Lb), Just(PeerMode::Direct), Just(PeerMode::Auto)];
    (
        any::<u64>(),
        proptest::collection::btree_map(arb_name(), arb_row(), 0..3),
        proptest::collection::btree_map(
            arb_name(),
            proptest::collection::btree_map(arb_name(), arb_row(), 0..2),
            0..2,
        ),
        proptest::option::of(routes),
        proptest::collection::btree_map(arb_name(), mode, 0..2),
        proptest::option::of(".{0,16}"),
        proptest::option::of(prop_oneof![
            0.0..=1.0f64,
            any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
        ]),
    )
        .prop_map(|(version, weights, origins, routes, peer_modes, note, max_shift)| Table {
            version,
            weights,
            origins,
            routes,
            peer_modes,
            note,
            max_shift,
            operation: None,
            signature: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// What `GET /v1/table` and the state file write is read back as the same table, and
    /// the verdict of validation does not change across the trip.
    #[test]
    fn json_round_trip_keeps_the_table_and_its_verdict(t in arb_table()) {
        let text = serde_json::to_vec(&t).unwrap();
        let back = Table::parse(&text).unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert!(back.same_content(&t));
        prop_assert_eq!(back.validate(&known()), t.validate(&known()));
        prop_assert_eq!(back.validate(&back.self_known()), t.validate(&t.self_known()));
    }

    /// Bytes that are not a table are refused with an error, never a panic.
    #[test]
    fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Table::parse(&bytes);
    }
}
