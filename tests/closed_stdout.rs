//! Every subcommand run as the built binary with a stdout whose reader has gone
//! (`flowgate status --json | head -c1`): no panic, no exit 101, each command's own exit
//! code. The fleet commands run against a small real fleet, so that they have real output
//! to lose; where a command keeps working after its reader left (a real evacuation), the
//! fleet shows that it did. Also what goes to which stream: a dry run's plan on stdout.
mod cli_kit;
mod support;

use cli_kit::{A, SmallFleet, Stdout, TOKEN, flowgate, path_str};

/// Commands that need no fleet: help, version, completions, the man page, usage errors,
/// config checks, probes, keys.
#[tokio::test]
async fn commands_without_a_fleet_survive_a_closed_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key");
    let origin = support::origin::start().await;
    let config = dir.path().join("flowgate.toml");
    std::fs::write(&config, support::config_text(origin.addr, "")).expect("config");
    let table = dir.path().join("table.json");
    std::fs::write(&table, r#"{"version": 1, "weights": {"us-east-1": {"us-east-1": 100}}}"#).expect("table");
    let (config, table, key) = (path_str(&config), path_str(&table), path_str(&key));
    let mut runs: Vec<(Vec<&str>, i32)> = vec![
        (vec!["--help"], 0),
        (vec!["--version"], 0),
        (vec!["help", "evacuate"], 0),
        (vec!["no-such-command"], 2),
        (vec!["serve", "--config", "/nonexistent/flowgate.toml"], 2),
        (vec!["validate", "--config", config, "--table", table], 0),
        (vec!["validate", "--config", "/nonexistent/flowgate.toml"], 2),
        (vec!["probe", "notaurl"], 2),
        (vec!["probe", "http://127.0.0.1:1/healthz", "--timeout", "1s"], 1),
        (vec!["keygen", "--out", key], 0),
        (vec!["man"], 0),
        (vec!["man", "evacuate"], 0),
        (vec!["demo", "--help"], 0),
    ];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        runs.push((vec!["completions", shell], 0));
    }
    for sub in [
        "serve",
        "probe",
        "demo",
        "validate",
        "keygen",
        "push",
        "status",
        "evacuate",
        "restore",
        "exercise",
        "autopilot",
        "completions",
        "man",
    ] {
        runs.push((vec![sub, "--help"], 0));
    }
    for (args, code) in &runs {
        let ran = flowgate(args, None, Stdout::Closed).await;
        ran.expect(&format!("flowgate {}", args.join(" ")), *code);
    }
}

/// The fleet commands with real output, stdout closed; a real evacuation and restore go on
/// to the end after their reader left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_commands_survive_a_closed_stdout_and_finish_their_work() {
    let ops = SmallFleet::start().await;
    let fleet = ops.fleet();
    let v2 = ops.table_file(2);
    let v1 = ops.table_file(1);
    let token = Some(TOKEN);
    let quick: &[&str] = &["--steps", "2", "--interval", "1s", "--timeout", "2s", "--fleet", fleet];
    let (v1, v2) = (path_str(&v1), path_str(&v2));
    let runs: Vec<(Vec<&str>, i32)> = vec![
        (vec!["push", "--fleet", fleet, v2], 0),
        (vec!["push", "--fleet", fleet, v2, "--json"], 0),
        (vec!["status", "--fleet", fleet], 0),
        (vec!["status", "--fleet", fleet, "--json"], 0),
        ([&["evacuate", A, "--dry-run"], quick].concat(), 0),
        ([&["evacuate", A, "--dry-run", "--json"], quick].concat(), 0),
        ([&["restore", A, "--dry-run", "--to", v1], quick].concat(), 0),
        ([&["exercise", A, "--dry-run", "--yes", "--hold", "1s"], quick].concat(), 0),
        (vec!["autopilot", "pause", "--fleet", fleet], 0),
        (vec!["autopilot", "resume", "--fleet", fleet], 0),
    ];
    let before = ops.fingerprint().await;
    for (args, code) in &runs {
        let ran = flowgate(args, token, Stdout::Closed).await;
        ran.expect(&format!("flowgate {}", args.join(" ")), *code);
    }
    let after_dry = ops.fingerprint().await;
    assert!(after_dry.iter().all(|(v, _)| *v == 2), "the pushes put version 2 in force: {after_dry:?}");
    assert!(before.iter().all(|(v, _)| *v == 1), "{before:?}");

    // A real move whose plan nobody reads still runs every step and exits 0.
    let evacuate = [&["evacuate", A, "--yes"], quick].concat();
    flowgate(&evacuate, token, Stdout::Closed).await.expect("evacuate, stdout closed", 0);
    for a in ops.fleet.admins() {
        let t = support::admin::table(a).await;
        assert_eq!(t["weights"][A][A].as_u64().unwrap_or(0), 0, "{A} is evacuated at {a}: {t}");
    }
    let restore = [&["restore", A, "--yes"], quick].concat();
    flowgate(&restore, token, Stdout::Closed).await.expect("restore, stdout closed", 0);
    for a in ops.fleet.admins() {
        let t = support::admin::table(a).await;
        assert_eq!(t["weights"][A][A].as_u64().unwrap_or(0), 90, "{A} is restored at {a}: {t}");
    }
    ops.stop().await;
}

/// A dry run's plan and its "nothing pushed" are the command's output (stdout), so that
/// `--dry-run > plan.txt` keeps them; with `--json`, stdout is JSON only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_writes_its_plan_to_stdout() {
    let ops = SmallFleet::start().await;
    let fleet = ops.fleet();
    let before = ops.fingerprint().await;
    let args = ["evacuate", A, "--fleet", fleet, "--steps", "3", "--interval", "1s", "--dry-run"];
    let ran = flowgate(&args, Some(TOKEN), Stdout::Read).await;
    ran.expect("evacuate --dry-run", 0);
    assert!(ran.stdout.contains(&format!("evacuate {A}: 3 steps")), "the plan's head:\n{}", ran.stdout);
    assert!(ran.stdout.contains("version 4:"), "the plan's last table (2 to 4):\n{}", ran.stdout);
    assert!(ran.stdout.contains("dry run: nothing pushed"), "{}", ran.stdout);
    assert!(!ran.stderr.contains("dry run"), "the plan is not on stderr:\n{}", ran.stderr);

    let json = [&args[..], &["--json"]].concat();
    let ran = flowgate(&json, Some(TOKEN), Stdout::Read).await;
    ran.expect("evacuate --dry-run --json", 0);
    assert!(!ran.stdout.trim().is_empty(), "the plan as JSON");
    for line in ran.stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{}", ran.stdout));
        assert!(v.get("plan").is_some(), "{v}");
    }
    assert_eq!(ops.fingerprint().await, before, "a dry run pushes nothing");
    ops.stop().await;
}
