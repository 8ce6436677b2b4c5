//! `flowgate validate --config` and `serve` on bad configs: exit 2, every message naming
//! its file and field (and line where the parser knows it); a good config passes.

use std::process::Command;

fn flowgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate")).args(args).output().expect("run flowgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BAD: &str = r#"region = "us-east-1"

[listen]
public = "127.0.0.1:notaport"
bogus = 1

[origins.api]
endpoints = ["127.0.0.1:9000"]

[[routes]]
host = "*"
path_prefix = "/"
origin = "nope"
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path.to_string_lossy().into_owned()
}

#[test]
fn every_mistake_is_named_with_file_field_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "bad.toml", BAD);
    // The bad address and the unknown field sit in the same table: both must be reported
    // in one run, and each is also checked in a file of its own.
    let (code, _, err) = flowgate(&["validate", "--config", &path]);
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.iter().all(|l| l.contains(&path)), "every message names the file:\n{err}");
    assert!(
        err.contains("routes[0].origin") && err.contains("unknown origin `nope`"),
        "route to an unknown origin is named:\n{err}"
    );
    assert!(err.contains("line 13"), "the route's line is given:\n{err}");
    assert!(err.contains("listen.bogus") && err.contains("unknown field"), "{err}");
    assert!(err.contains("listen.public") && err.contains("line 4"), "{err}");
    assert_eq!(lines.len(), 3, "exactly the three mistakes:\n{err}");

    let unknown = write(&dir, "unknown.toml", &BAD.replace("127.0.0.1:notaport", "127.0.0.1:8080"));
    let (code, _, err) = flowgate(&["validate", "--config", &unknown]);
    assert_eq!(code, 2);
    assert!(err.contains("bogus") && err.contains("unknown field"), "{err}");
    assert!(err.contains("line 5"), "{err}");

    let addr = write(&dir, "addr.toml", &BAD.replace("bogus = 1\n", "").replace("\"nope\"", "\"api\""));
    let (code, _, err) = flowgate(&["validate", "--config", &addr]);
    assert_eq!(code, 2);
    assert!(err.contains("listen.public"), "the bad address names its field:\n{err}");
    assert!(err.contains("line 4"), "{err}");
    assert_eq!(err.lines().count(), 1, "only the one mistake is reported:\n{err}");
}

#[test]
fn serve_refuses_a_bad_config_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "bad.toml", BAD);
    let (code, _, err) = flowgate(&["serve", "--config", &path]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("routes[0].origin"), "{err}");
}

#[test]
fn more_mistakes_are_each_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = r#"region = "US EAST"
colour = "blue"
[listen]
public = "127.0.0.1:8080"
public_tls = "127.0.0.1:8443"
[origins.api]
endpoints = ["no-port-here", "10.0.0.1:9000"]
protocol = "spdy"
[origins.web]
endpoints = []
[[routes]]
origin = "api"
path_prefix = "relative"
[timeouts]
connect = "soon"
"#;
    let path = write(&dir, "many.toml", text);
    let (code, _, err) = flowgate(&["validate", "--config", &path]);
    assert_eq!(code, 2);
    for field in [
        "region:",
        "colour:",
        "listen.tls_cert:",
        "listen.tls_key:",
        "origins.api.protocol:",
        "origins.web.endpoints:",
        "routes[0].path_prefix:",
        "timeouts.connect:",
    ] {
        assert!(err.contains(field), "missing {field} in:\n{err}");
    }
}

#[test]
fn example_config_is_valid_and_missing_file_is_named() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/flowgate.toml");
    let (code, out, err) = flowgate(&["validate", "--config", example]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");

    let (code, _, err) = flowgate(&["validate", "--config", "/nonexistent/flowgate.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/flowgate.toml"), "{err}");

    let (code, _, _) = flowgate(&["validate", "--bogus-flag"]);
    assert_eq!(code, 2, "bad usage is exit 2");
}

#[test]
fn tables_are_validated_alone_and_against_a_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/flowgate.toml");
    let good = write(&dir, "good.json", r#"{"version": 4, "weights": {"us-east-1": {"us-east-1": 100}}}"#);
    let (code, out, err) = flowgate(&["validate", "--config", config, "--table", &good]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version 4"), "{out}");

    let zero = write(&dir, "zero.json", r#"{"version": 4, "weights": {"a": {"b": 0}}}"#);
    let (code, _, err) = flowgate(&["validate", "--table", &zero]);
    assert_eq!(code, 2);
    assert!(err.contains("zero.json") && err.contains("weights.a"), "{err}");

    let foreign = write(&dir, "foreign.json", r#"{"version": 4, "weights": {"us-east-1": {"mars-1": 1}}}"#);
    let (code, _, _) = flowgate(&["validate", "--table", &foreign]);
    assert_eq!(code, 0, "alone, any region name is accepted");
    let (code, _, err) = flowgate(&["validate", "--config", config, "--table", &foreign]);
    assert_eq!(code, 2);
    assert!(err.contains("weights.us-east-1.mars-1") && err.contains("unknown region"), "{err}");

    let negative = write(&dir, "neg.json", r#"{"version": 4, "weights": {"us-east-1": {"us-east-1": -5}}}"#);
    let (code, _, err) = flowgate(&["validate", "--table", &negative]);
    assert_eq!(code, 2);
    assert!(err.contains("weights.us-east-1.us-east-1"), "{err}");
}

#[test]
fn example_fleet_and_table_files_are_valid() {
    let fleet = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/fleet.toml"));
    let f = flowgate::fleet::FleetFile::load(fleet).expect("config/fleet.toml parses");
    assert_eq!(f.regions.len(), 2);
    let table = concat!(env!("CARGO_MANIFEST_DIR"), "/config/table.json");
    let (code, _, err) = flowgate(&["validate", "--table", table]);
    assert_eq!(code, 0, "{err}");
    let fleet_table = concat!(env!("CARGO_MANIFEST_DIR"), "/config/fleet-table.json");
    let (code, _, err) = flowgate(&["validate", "--table", fleet_table]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_readme_validate_example_passes_on_the_shipped_files() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/flowgate.toml");
    let table = concat!(env!("CARGO_MANIFEST_DIR"), "/config/table.json");
    let (code, _, err) = flowgate(&["validate", "--config", config, "--table", table]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_table_naming_a_region_the_config_lacks_says_what_to_do() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/flowgate.toml");
    let table = concat!(env!("CARGO_MANIFEST_DIR"), "/config/fleet-table.json");
    let (code, _, err) = flowgate(&["validate", "--config", config, "--table", table]);
    assert_eq!(code, 2);
    assert!(
        err.contains("weights.us-west-2") && err.contains("add [peers.us-west-2] to the config"),
        "{err}"
    );
}

#[test]
fn origin_health_kinds_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with = |lines: &str| {
        format!(
            "region = \"us-east-1\"\n[listen]\npublic = \"127.0.0.1:8080\"\n\
             [origins.api]\nendpoints = [\"127.0.0.1:9000\"]\n{lines}\n\
             [[routes]]\norigin = \"api\"\n"
        )
    };
    let run = |name: &str, lines: &str| {
        let path = write(&dir, name, &with(lines));
        let (code, _, err) = flowgate(&["validate", "--config", &path]);
        (code, err)
    };

    for (name, lines) in [
        ("grpc.toml", "protocol = \"h2\"\nhealth = \"grpc\""),
        ("service.toml", "protocol = \"h2\"\nhealth = \"grpc\"\nhealth_service = \"pkg.Api\""),
        ("tcp.toml", "health = \"tcp\""),
        ("http.toml", "health = \"http\"\nhealth_path = \"/ready\""),
    ] {
        let (code, err) = run(name, lines);
        assert_eq!(code, 0, "{lines}: {err}");
    }

    // gRPC runs over HTTP/2: on an HTTP/1.1 origin (the default, or said) it is refused.
    for (name, lines) in [
        ("grpc-h1.toml", "health = \"grpc\""),
        ("grpc-http1.toml", "protocol = \"http1\"\nhealth = \"grpc\""),
    ] {
        let (code, err) = run(name, lines);
        assert_eq!(code, 2, "{lines}: {err}");
        assert!(err.contains("origins.api.health:") && err.contains("protocol = \"h2\""), "{err}");
        assert_eq!(err.lines().count(), 1, "only that mistake:\n{err}");
    }

    let (code, err) = run("icmp.toml", "health = \"icmp\"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("origins.api.health:") && err.contains("icmp"), "{err}");
    for kind in ["http", "grpc", "tcp"] {
        assert!(err.contains(kind), "the accepted kinds are named ({kind}):\n{err}");
    }

    let (code, err) = run("stray-service.toml", "health = \"tcp\"\nhealth_service = \"pkg.Api\"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("origins.api.health_service:") && err.contains("grpc"), "{err}");
}

#[test]
fn a_fleet_file_that_cannot_be_read_or_parsed_is_named_without_an_empty_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let missing = missing.to_string_lossy();
    let (code, _, err) = flowgate(&["status", "--fleet", &missing]);
    assert_eq!(code, 2);
    assert!(err.contains("nope.toml: cannot read") && !err.contains(": :"), "{err}");
    let broken = write(&dir, "broken.toml", "token_env = \"X\"\n[regions.us-east-1\nadmin = []\n");
    let (code, _, err) = flowgate(&["status", "--fleet", &broken]);
    assert_eq!(code, 2);
    assert!(err.contains("broken.toml: ") && err.contains("(line 2)") && !err.contains(": :"), "{err}");
}
