//! Reading and checking a config file: every mistake reported at once, each at the line of
//! the very field at fault.

use std::path::Path;

use super::{Config, ConfigError};

const HEAD: &str = "region = \"us-east-1\"\n[listen]\npublic = \"127.0.0.1:8080\"\n";

fn errors(text: &str) -> Vec<ConfigError> {
    match Config::from_toml(Path::new("/etc/flowgate/flowgate.toml"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0,
    }
}

fn line_of(text: &str, needle: &str, nth: usize) -> usize {
    let (at, _) = text.match_indices(needle).nth(nth).unwrap_or_else(|| panic!("{needle} #{nth}"));
    text[..at].matches('\n').count() + 1
}

#[test]
fn the_same_key_in_two_sections_is_reported_on_the_line_of_the_one_at_fault() {
    let text = format!(
        "{HEAD}[origins.api]\nendpoints = [\"10.0.0.1:9000\"]\nprotocol = \"h2\"\nhealth = \"grpc\"\n\
         health_service = \"pkg.Api\"\n\n[origins.web]\nendpoints = [\"10.0.0.2:9000\"]\n\
         health = \"tcp\"\nhealth_service = \"pkg.Api\"\n"
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "origins.web.health_service");
    assert_eq!(errors[0].line, Some(line_of(&text, "health_service", 1)), "{errors:?}");
}

#[test]
fn the_same_bad_value_twice_is_reported_at_each_place() {
    let text = format!("{HEAD}[origins.a]\nendpoints = [\"db:0\"]\n[origins.b]\nendpoints = [\"db:0\"]\n");
    let errors = errors(&text);
    let lines: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
    assert_eq!(
        lines,
        [
            ("origins.a.endpoints[0]", Some(line_of(&text, "db:0", 0))),
            ("origins.b.endpoints[0]", Some(line_of(&text, "db:0", 1))),
        ]
    );
}

#[test]
fn a_check_on_a_field_left_to_its_default_points_at_its_section() {
    let text = format!("{HEAD}\n[overload]\nshed_low_at = 99\n");
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].field.as_str(), errors[0].line),
        ("overload", Some(line_of(&text, "[overload]", 0)))
    );
}

#[test]
fn a_bad_route_does_not_hide_the_next_one_nor_shift_its_place() {
    let text = format!(
        "{HEAD}[origins.api]\nendpoints = [\"10.0.0.1:9000\"]\n\
         [[routes]]\nhost = 5\norigin = \"api\"\n[[routes]]\norigin = \"api\"\npath_prefix = \"x\"\nbogus = 1\n"
    );
    let fields: Vec<String> = errors(&text).into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["routes[0].host", "routes[1].bogus", "routes[1].path_prefix"]);
}

#[test]
fn an_unreadable_listen_is_reported_once_and_the_rest_is_still_checked() {
    let text = "region = \"us-east-1\"\n[listen]\npublic = \"nowhere\"\n[[routes]]\norigin = \"nope\"\n";
    let fields: Vec<String> = errors(text).into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["listen.public", "routes[0].origin"]);

    let missing: Vec<String> = errors("region = \"us-east-1\"\n").into_iter().map(|e| e.message).collect();
    assert_eq!(missing, ["missing table `[listen]` (at least `public`)"]);
}

#[test]
fn unknown_sections_name_the_known_ones() {
    let errors = errors(&format!("colour = \"blue\"\n{HEAD}"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "colour");
    for known in ["region", "listen", "routes", "overload", "store"] {
        assert!(errors[0].message.contains(known), "{known}: {}", errors[0].message);
    }
    assert_eq!(errors[0].line, Some(1));
}

#[test]
fn a_good_file_reads_with_defaults_and_absolute_paths() {
    let text = format!("table = \"t.json\"\n{HEAD}");
    let cfg =
        Config::from_toml(Path::new("/etc/flowgate/flowgate.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.table.as_deref(), Some(Path::new("/etc/flowgate/t.json")));
    assert_eq!(cfg.admin.listen.port(), 9901);
    assert_eq!(cfg.file, Path::new("/etc/flowgate/flowgate.toml"));
}
