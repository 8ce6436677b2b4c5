//! The DNS step of an evacuation: `deploy/hooks/dns-nsupdate.sh`, run the way flowgate runs
//! a `--dns` hook (`sh -c CMD` with FLOWGATE_REGION and FLOWGATE_PHASE), against a real
//! authoritative bind9 on loopback whose `api.example.test.` has one A record per region.
//! The records are read back with `dig` after every run.
//!
//! Ignored by default: they need Debian's bind9 and bind9-dnsutils, which `.ci/run`
//! installs before running `cargo test -- --ignored`; run without them they fail, saying so.
mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::bind9::{Bind9, NAME, REGIONS, ZONE};

const HOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/hooks/dns-nsupdate.sh");

/// The records file: every region's A record, with comments and blank lines.
fn records_file(dir: &Path) -> std::path::PathBuf {
    let mut text = String::from("# region  type  address\n\n");
    for (region, addr) in REGIONS {
        text.push_str(&format!("{region} A {addr}   # {region}'s load balancer\n"));
    }
    let path = dir.join("records");
    std::fs::write(&path, text).expect("write records");
    path
}

/// The hook's whole configuration for `dns`, as a list of variables.
fn config(dns: &Bind9) -> Vec<(&'static str, String)> {
    vec![
        ("FLOWGATE_DNS_SERVER", "127.0.0.1".into()),
        ("FLOWGATE_DNS_PORT", dns.port.to_string()),
        ("FLOWGATE_DNS_ZONE", ZONE.into()),
        ("FLOWGATE_DNS_NAME", NAME.into()),
        ("FLOWGATE_DNS_TTL", "30".into()),
        ("FLOWGATE_DNS_KEY", dns.key_file.display().to_string()),
        ("FLOWGATE_DNS_RECORDS", records_file(dns.dir.path()).display().to_string()),
    ]
}

/// Runs the hook as flowgate does: `sh -c HOOK`, FLOWGATE_REGION and FLOWGATE_PHASE set,
/// plus `env` (and no FLOWGATE_DNS_* variable of this process).
fn run_hook(region: &str, phase: &str, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(HOOK).env("FLOWGATE_REGION", region).env("FLOWGATE_PHASE", phase);
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOWGATE_DNS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str()))).stdin(Stdio::null());
    cmd.output().expect("run the hook")
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn assert_ok(out: &Output, dns: &Bind9) {
    assert!(out.status.success(), "hook failed: {}\nnamed log:\n{}", text(out), dns.log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one line saying what changed: {}", text(out));
}

#[track_caller]
fn assert_refused(out: &Output, says: &str) {
    assert!(!out.status.success(), "the hook should have refused: {}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(says), "the refusal should say {says:?}: {}", text(out));
}

fn addrs(regions: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        REGIONS.iter().filter(|(r, _)| regions.contains(r)).map(|(_, a)| a.to_string()).collect();
    v.sort();
    v
}

const ALL: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// A bind9 serving the test zone, and the hook's configuration for it.
fn started() -> (Bind9, Vec<(&'static str, String)>) {
    let dns = Bind9::start();
    let env = config(&dns);
    (dns, env)
}

#[test]
#[ignore = "needs bind9 and bind9-dnsutils (installed by .ci/run)"]
fn nsupdate_hook_removes_the_evacuated_region_and_puts_it_back() {
    let (dns, env) = started();
    assert_eq!(dns.a_records(NAME), addrs(&ALL));

    let out = run_hook("us-east-1", "evacuated", &env);
    assert_ok(&out, &dns);
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.11"), "{}", text(&out));
    assert_eq!(dns.a_records(NAME), addrs(&["us-west-2", "eu-west-1"]));

    // Idempotent: the records are already gone.
    let out = run_hook("us-east-1", "evacuated", &env);
    assert_ok(&out, &dns);
    assert_eq!(dns.a_records(NAME), addrs(&["us-west-2", "eu-west-1"]));

    let out = run_hook("us-east-1", "restored", &env);
    assert_ok(&out, &dns);
    assert_eq!(dns.a_records(NAME), addrs(&ALL));
    // And again: already there.
    assert_ok(&run_hook("us-east-1", "restored", &env), &dns);
    assert_eq!(dns.a_records(NAME), addrs(&ALL));
}

#[test]
#[ignore = "needs bind9 and bind9-dnsutils (installed by .ci/run)"]
fn nsupdate_hook_refuses_a_region_missing_from_the_records_file() {
    let (dns, env) = started();
    let out = run_hook("ap-south-1", "evacuated", &env);
    assert_refused(&out, "FLOWGATE_DNS_RECORDS");
    assert_refused(&out, "ap-south-1");
    assert_eq!(dns.a_records(NAME), addrs(&ALL));
    assert_refused(&run_hook("ap-south-1", "restored", &env), "ap-south-1");
    assert_eq!(dns.a_records(NAME), addrs(&ALL));
}

#[test]
#[ignore = "needs bind9 and bind9-dnsutils (installed by .ci/run)"]
fn nsupdate_hook_refuses_to_remove_the_last_region_of_the_name() {
    let (dns, env) = started();
    assert_ok(&run_hook("us-east-1", "evacuated", &env), &dns);
    assert_ok(&run_hook("us-west-2", "evacuated", &env), &dns);
    assert_eq!(dns.a_records(NAME), addrs(&["eu-west-1"]));

    let out = run_hook("eu-west-1", "evacuated", &env);
    assert_refused(&out, "no A/AAAA record");
    assert_eq!(dns.a_records(NAME), addrs(&["eu-west-1"]), "the name must never be emptied");

    assert_ok(&run_hook("us-west-2", "restored", &env), &dns);
    assert_ok(&run_hook("us-east-1", "restored", &env), &dns);
    assert_eq!(dns.a_records(NAME), addrs(&ALL));
}

#[test]
#[ignore = "needs bind9 and bind9-dnsutils (installed by .ci/run)"]
fn nsupdate_hook_ignores_other_phases_and_names_a_missing_variable() {
    let (dns, env) = started();
    for phase in ["before-evacuate", "before-restore"] {
        let out = run_hook("us-east-1", phase, &env);
        assert!(out.status.success(), "{phase}: {}", text(&out));
        assert!(out.stdout.is_empty(), "{phase} changes nothing: {}", text(&out));
    }
    assert_eq!(dns.a_records(NAME), addrs(&ALL));

    for missing in ["FLOWGATE_DNS_ZONE", "FLOWGATE_DNS_NAME", "FLOWGATE_DNS_RECORDS"] {
        let partial: Vec<_> = env.iter().filter(|(k, _)| *k != missing).cloned().collect();
        assert_refused(&run_hook("us-east-1", "evacuated", &partial), missing);
    }
    assert_eq!(dns.a_records(NAME), addrs(&ALL));
}

#[test]
#[ignore = "needs bind9 and bind9-dnsutils (installed by .ci/run)"]
fn nsupdate_hook_fails_when_the_server_refuses_the_update() {
    let dns = Bind9::start();
    // No TSIG key: the zone only takes updates signed with it.
    let env: Vec<_> = config(&dns).into_iter().filter(|(k, _)| *k != "FLOWGATE_DNS_KEY").collect();
    let out = run_hook("us-east-1", "evacuated", &env);
    assert_refused(&out, "nsupdate");
    assert_eq!(dns.a_records(NAME), addrs(&ALL));
}

#[test]
#[ignore = "needs bind9 and bind9-dnsutils (installed by .ci/run)"]
fn nsupdate_hook_matches_aaaa_records_however_the_file_spells_them() {
    let dns = Bind9::start();
    let mut env = config(&dns);
    let records = dns.dir.path().join("records-v6");
    let mut text = std::fs::read_to_string(records_file(dns.dir.path())).expect("records");
    text.push_str("us-east-1 aaaa 2001:DB8:0:0::0001\n");
    std::fs::write(&records, text).expect("write records");
    env.retain(|(k, _)| *k != "FLOWGATE_DNS_RECORDS");
    env.push(("FLOWGATE_DNS_RECORDS", records.display().to_string()));

    assert!(dns.query(NAME, "AAAA").is_empty());
    assert_ok(&run_hook("us-east-1", "restored", &env), &dns);
    assert_eq!(dns.query(NAME, "AAAA"), ["2001:db8::1"]);
    assert_eq!(dns.a_records(NAME), addrs(&ALL));

    // The server spells it 2001:db8::1: evacuating must still find and remove it.
    assert_ok(&run_hook("us-east-1", "evacuated", &env), &dns);
    assert!(dns.query(NAME, "AAAA").is_empty(), "the AAAA record should be gone");
    assert_eq!(dns.a_records(NAME), addrs(&["us-west-2", "eu-west-1"]));
}
