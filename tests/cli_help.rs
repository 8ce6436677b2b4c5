//! The command line documents itself: every subcommand and every argument has a help
//! text, and the completion scripts and man pages made from it are well formed.

use std::process::{Command, Output};

use clap::CommandFactory;
use flowgate::cli::Cli;

/// Every argument without a help text, as `PATH: ARG`, over every subcommand.
fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    if cmd.get_about().is_none() && cmd.get_long_about().is_none() {
        out.push(format!("{path}: the command itself"));
    }
    for arg in cmd.get_arguments() {
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            out.push(format!("{path}: {}", arg.get_id()));
        }
    }
    for sub in cmd.get_subcommands() {
        undocumented(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

fn flowgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgate")).args(args).output().expect("run flowgate")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_subcommand_and_argument_has_a_help_text() {
    let mut cmd = Cli::command();
    // Built, the command has its generated arguments (help, version) and subcommands too.
    cmd.build();
    cmd.clone().debug_assert();
    let mut missing = Vec::new();
    undocumented(&cmd, "flowgate", &mut missing);
    assert!(missing.is_empty(), "without a help text:\n{}", missing.join("\n"));
}

#[test]
fn every_subcommands_help_shows_each_arguments_description() {
    let cmd = Cli::command();
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        let out = flowgate(&[name, "--help"]);
        assert!(out.status.success(), "flowgate {name} --help: {}", text(&out.stderr));
        let help = text(&out.stdout);
        for arg in sub.get_arguments() {
            let Some(about) = arg.get_help() else { continue };
            // The start of it: long texts may be laid out over several lines.
            let start: Vec<String> =
                about.to_string().split_whitespace().take(4).map(str::to_owned).collect();
            assert!(
                help.contains(&start.join(" ")),
                "flowgate {name} --help does not describe {}:\n{help}",
                arg.get_id()
            );
        }
    }
}

#[test]
fn help_and_version_exit_0_and_usage_errors_exit_2() {
    assert_eq!(flowgate(&["--help"]).status.code(), Some(0));
    let v = flowgate(&["--version"]);
    assert_eq!(v.status.code(), Some(0));
    assert!(text(&v.stdout).starts_with("flowgate "), "{}", text(&v.stdout));
    assert_eq!(flowgate(&["evacuate"]).status.code(), Some(2), "a missing argument is bad usage");
    assert_eq!(flowgate(&["completions", "tcsh"]).status.code(), Some(2), "an unknown shell");
    assert!(text(&flowgate(&["--help"]).stdout).contains("Exit codes"), "the top help lists the exit codes");
}

#[test]
fn a_probe_of_something_that_is_not_a_url_is_bad_usage() {
    for bad in ["notaurl", "/healthz", "https://127.0.0.1:9901/healthz", "http://"] {
        let out = flowgate(&["probe", bad]);
        assert_eq!(out.status.code(), Some(2), "probe {bad}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(bad), "the message names the URL: {}", text(&out.stderr));
    }
    // A URL nobody answers at is a failed probe, not bad usage.
    let out = flowgate(&["probe", "http://127.0.0.1:1/healthz", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[test]
fn completion_scripts_name_the_commands_and_bash_parses_its_own() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = flowgate(&["completions", shell]);
        assert!(out.status.success(), "completions {shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains("flowgate"), "completions {shell}:\n{script}");
        assert!(script.contains("evacuate") && script.contains("max-utilization"), "{shell}:\n{script}");
    }
    let Ok(bash) = Command::new("bash").arg("--version").output() else { return };
    if !bash.status.success() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flowgate.bash");
    std::fs::write(&path, flowgate(&["completions", "bash"]).stdout).expect("script");
    let check = Command::new("bash").arg("-n").arg(&path).output().expect("bash -n");
    assert!(check.status.success(), "bash -n: {}", text(&check.stderr));
}

#[test]
fn the_man_pages_are_roff() {
    let page = text(&flowgate(&["man"]).stdout);
    assert!(page.contains(".TH flowgate 1"), "{page}");
    assert!(page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"), "{page}");
    assert!(page.contains("evacuate"), "the page lists the subcommands:\n{page}");
    let sub = text(&flowgate(&["man", "evacuate"]).stdout);
    assert!(sub.contains(".TH flowgate-evacuate 1"), "{sub}");
    assert!(sub.contains("max\\-utilization"), "the subcommand's options:\n{sub}");
    let none = flowgate(&["man", "no-such-command"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none.stderr).contains("evacuate"), "names the subcommands there are");
}
