//! The README's commands, run as written. Every shell block the README marks with
//! `<!-- runs in tests/readme_commands.rs: NAME -->` is read from the README itself (so
//! the two cannot drift apart) and run by bash with `set -euo pipefail`, `flowgate` and the
//! example origin on `PATH`, from the repository's root. The only rewrite is the one a
//! reader does after `cargo install`: `cargo run --release -- ARGS` runs the built
//! `flowgate ARGS`, `cargo run --release --example origin` the built example.
//!
//! A block fails the test when any of its commands fails; what it started in the
//! background is stopped with its process group when it ends.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::wait::poll_blocking;

const MARK: &str = "<!-- runs in tests/readme_commands.rs: ";

/// The README's marked blocks, by name.
fn marked_blocks() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix(MARK).and_then(|r| r.strip_suffix("-->")) else { continue };
        let fence = lines.next().unwrap_or_default();
        assert_eq!(fence.trim(), "```sh", "the block `{}` must follow its mark at once", name.trim());
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        blocks.push((name.trim().to_owned(), body.join("\n")));
    }
    blocks
}

fn block(name: &str) -> String {
    let blocks = marked_blocks();
    let found = blocks.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone());
    found.unwrap_or_else(|| {
        panic!(
            "README.md has no block marked `{name}`; it has {:?}",
            blocks.iter().map(|b| &b.0).collect::<Vec<_>>()
        )
    })
}

/// A folder holding `flowgate` and `origin`, for `PATH`.
fn bin_dir() -> PathBuf {
    let flowgate = PathBuf::from(env!("CARGO_BIN_EXE_flowgate"));
    let dir = flowgate.parent().expect("the binary's folder").to_path_buf();
    let origin = dir.join("examples").join("origin");
    if !origin.exists() {
        // `cargo test --test readme_commands` alone does not build the examples.
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "origin"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example origin");
        assert!(status.success(), "cargo build --example origin failed");
    }
    let bin = tempfile::Builder::new().prefix("readme-bin").tempdir().expect("dir").keep();
    std::os::unix::fs::symlink(&flowgate, bin.join("flowgate")).expect("link flowgate");
    std::os::unix::fs::symlink(&origin, bin.join("origin")).expect("link origin");
    bin
}

/// What a reader types after `cargo install --path .`.
fn as_installed(script: &str) -> String {
    script
        .replace("cargo run --release --example origin", "origin")
        .replace("cargo run --release -- ", "flowgate ")
}

/// Runs `script` as the README shows it; its output, or the failure with everything it said.
fn run(name: &str, script: &str, limit: Duration, env: &[(&str, &Path)]) -> String {
    let bin = bin_dir();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // Files, not pipes: what the block leaves in the background holds its output open.
    let logs = tempfile::tempdir().expect("dir");
    let (out_path, err_path) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -euo pipefail\n{}\n", as_installed(script)))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .env_remove("FLOWGATE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn bash");
    let group = format!("-{}", child.id());
    let started = Instant::now();
    let status = poll_blocking(limit, Duration::from_millis(50), || {
        child.try_wait().expect("wait for bash").ok_or(())
    })
    .ok();
    // Whatever the block left in the background (an origin, a proxy, a demo).
    stop_group(&group);
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "the README block `{name}` did not finish within {limit:?}:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        )
    };
    assert!(
        status.success(),
        "the README block `{name}` failed ({status:?} after {:?}):\n--- block\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        started.elapsed()
    );
    stdout
}

#[test]
fn the_readme_marks_the_blocks_this_test_runs() {
    let names: Vec<String> = marked_blocks().into_iter().map(|b| b.0).collect();
    for want in ["validate", "one proxy by hand", "fleet commands against the demo"] {
        assert!(names.iter().any(|n| n == want), "README.md lacks the block `{want}`: {names:?}");
    }
}

#[test]
fn the_readme_validate_example_runs_as_written() {
    let out = run("validate", &block("validate"), Duration::from_secs(60), &[]);
    for file in ["config/flowgate.toml: ok", "config/table.json: ok", "config/fleet-table.json: ok"] {
        assert!(out.contains(file), "{out}");
    }
}

#[test]
fn the_readme_one_proxy_by_hand_runs_as_written() {
    let out = run("one proxy by hand", &block("one proxy by hand"), Duration::from_secs(120), &[]);
    // The origin's echo of the request it got through the proxy, and the status document.
    assert!(out.contains("HTTP/1.1 200") && out.contains("/hello"), "{out}");
    assert!(out.contains("\"table_version\""), "{out}");
}

#[test]
fn the_readme_fleet_commands_run_as_written_against_the_demo() {
    let _ = std::fs::remove_dir_all("/tmp/flowgate-demo");
    let name = "fleet commands against the demo";
    let out = run(name, &block(name), Duration::from_secs(420), &[]);
    // `status` printed every region, the dry run's plan went to its file, the exercise wrote
    // its report with a verdict from real traffic.
    for region in ["us-east-1", "us-west-2", "eu-west-1"] {
        assert!(out.contains(region), "status names {region}:\n{out}");
    }
    let plan = std::fs::read_to_string("/tmp/flowgate-demo/plan.txt").expect("the dry run's plan");
    assert!(plan.contains("dry run: nothing pushed") && plan.contains("us-east-1"), "{plan}");
    let report = std::fs::read_to_string("/tmp/flowgate-demo/exercise.html").expect("the exercise's report");
    assert!(report.contains("pass: evacuated, held and restored"), "the report's verdict is a pass");
}

/// SIGTERM to the block's process group, then waits (bounded) for it to drain and go, so
/// the next block finds its ports free; SIGKILL for what outlives that.
fn stop_group(group: &str) {
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, "--", group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !signal("-TERM") {
        return;
    }
    let gone = poll_blocking(Duration::from_secs(45), Duration::from_millis(100), || {
        if signal("-0") { Err(()) } else { Ok(()) }
    });
    if gone.is_err() {
        signal("-KILL");
    }
}
