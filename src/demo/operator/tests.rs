use std::path::Path;

use super::*;
use crate::fleet::FleetFile;
use crate::table::Table;

#[test]
fn the_fleet_file_is_one_the_fleet_commands_read() {
    let a: SocketAddr = "127.0.0.1:4001".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:4002".parse().unwrap();
    let text = fleet_toml(&[("us-east-1", vec![a, b]), ("eu-west-1", vec![a])], 2000.0);
    let f = FleetFile::parse(Path::new("fleet.toml"), &text).unwrap();
    assert_eq!(f.token_env, "FLOWGATE_ADMIN_TOKEN");
    assert_eq!(f.regions["us-east-1"].admin, ["127.0.0.1:4001", "127.0.0.1:4002"]);
    assert_eq!(f.regions["eu-west-1"].capacity_rps, 2000.0);
}

#[test]
fn the_table_keeps_the_outage_region_evacuated_at_the_given_version() {
    let text = table_json(&["us-east-1", "us-west-2", "eu-west-1"], "eu-west-1", 1_900_000_000);
    let t = Table::parse(text.as_bytes()).unwrap();
    assert_eq!(t.version, 1_900_000_000);
    assert_eq!(t.weights["eu-west-1"].get("eu-west-1"), None);
    assert_eq!(t.weights["eu-west-1"]["us-east-1"], 50);
    assert_eq!(t.weights["us-west-2"]["us-west-2"], 100);
}

#[test]
fn paths_are_quoted_for_the_shell_only_when_they_need_it() {
    assert_eq!(shell(Path::new("/tmp/flowgate-demo-1/fleet.toml")), "/tmp/flowgate-demo-1/fleet.toml");
    assert_eq!(shell(Path::new("/tmp/my demo/it's.toml")), r"'/tmp/my demo/it'\''s.toml'");
}
