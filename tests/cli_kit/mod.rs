//! What the command-line tests share: a small real fleet (3 regions × 1 in-process proxy,
//! the admin token in a token file, a fleet file and tables in a folder) and the built
//! binary run with its output streams as a test wants them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::fleet::{Fleet, FleetSpec};

pub const A: &str = "us-east-1";
pub const B: &str = "us-west-2";
pub const C: &str = "eu-west-1";
pub const TOKEN: &str = "cli-test-token-51c2";

/// A fleet for one test, with its files.
pub struct SmallFleet {
    pub fleet: Fleet,
    pub dir: tempfile::TempDir,
    pub fleet_file: PathBuf,
}

/// Version `version` of a table in which A sends 10 % of its traffic to B.
pub fn table(version: u64) -> String {
    format!(
        r#"{{"version": {version}, "weights": {{"{A}": {{"{A}": 90, "{B}": 10}}, "{B}": {{"{B}": 100}}, "{C}": {{"{C}": 100}}}}}}"#
    )
}

impl SmallFleet {
    pub async fn start() -> SmallFleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, format!("operator {TOKEN}\n")).expect("token file");
        let admin_extra = format!("token_file = {:?}\n", tokens.display().to_string());
        let first = table(1);
        let fleet = Fleet::start(FleetSpec {
            regions: &[A, B, C],
            table: Some(&first),
            admin_extra: &admin_extra,
            health_interval: Duration::from_millis(300),
            ..Default::default()
        })
        .await;
        fleet.wait_settled().await;
        let mut text = String::from("token_env = \"FLOWGATE_ADMIN_TOKEN\"\n");
        for r in &fleet.regions {
            let admins: Vec<String> = r.proxies().map(|p| format!("\"{}\"", p.addrs.admin)).collect();
            text.push_str(&format!(
                "\n[regions.{}]\nadmin = [{}]\ncapacity_rps = 100000\n",
                r.name,
                admins.join(", ")
            ));
        }
        let fleet_file = dir.path().join("fleet.toml");
        std::fs::write(&fleet_file, text).expect("fleet file");
        SmallFleet { fleet, dir, fleet_file }
    }

    /// Writes version `version` of [`table`] into the folder.
    pub fn table_file(&self, version: u64) -> PathBuf {
        let path = self.dir.path().join(format!("table-{version}.json"));
        std::fs::write(&path, table(version)).expect("table file");
        path
    }

    pub fn fleet(&self) -> &str {
        path_str(&self.fleet_file)
    }

    /// Every proxy's (table version, history length): what a push would change.
    pub async fn fingerprint(&self) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        for a in self.fleet.admins() {
            let v = crate::support::admin::version(a).await;
            let h = crate::support::admin::get_json(a, "/v1/table/history").await;
            out.push((v, h.as_array().map(Vec::len).unwrap_or(0)));
        }
        out
    }

    pub async fn stop(self) {
        self.fleet.stop().await;
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Where a command's stdout goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// A pipe, read to the end.
    Read,
    /// A pipe whose reader has gone before the command starts: every write fails.
    Closed,
}

/// A finished command.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Panics unless the command exited with `code` and without a panic.
    pub fn expect(&self, what: &str, code: i32) {
        assert!(
            !self.stderr.contains("panicked"),
            "{what} panicked (exit {:?}):\n{}",
            self.code,
            self.stderr
        );
        assert_ne!(self.code, Some(101), "{what} exited 101:\n{}", self.stderr);
        assert_eq!(self.code, Some(code), "{what}:\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
    }
}

/// Runs `flowgate ARGS` to the end (at most 60 s), stdin empty, with
/// `FLOWGATE_ADMIN_TOKEN=token` (unset for `None`).
pub async fn flowgate(args: &[&str], token: Option<&str>, stdout: Stdout) -> Ran {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowgate"));
    cmd.args(args).env_remove("RUST_LOG").env_remove("FLOWGATE_ADMIN_TOKEN").stdin(Stdio::null());
    cmd.env_remove("FLOWGATE_SIGNING_KEY").stderr(Stdio::piped()).kill_on_drop(true);
    if let Some(t) = token {
        cmd.env("FLOWGATE_ADMIN_TOKEN", t);
    }
    match stdout {
        Stdout::Read => {
            cmd.stdout(Stdio::piped());
        }
        Stdout::Closed => {
            let (reader, writer) = std::io::pipe().expect("pipe");
            drop(reader);
            cmd.stdout(Stdio::from(writer));
        }
    }
    let child = cmd.spawn().expect("spawn flowgate");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("flowgate {args:?} did not finish within 60 s"))
        .expect("flowgate output");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
