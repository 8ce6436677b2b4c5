//! Runs the built binary's commands (`push`, `evacuate`, `status`, ...) to the end, as an
//! operator would: the admin token in their environment only, no terminal on stdin.

use std::process::Stdio;
use std::time::{Duration, Instant};

/// A finished command.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `flowgate ARGS` with `FLOWGATE_ADMIN_TOKEN=token` and no `RUST_LOG`, at most
/// `limit` (it is killed then, and the test fails).
pub async fn flowgate_as(token: &str, args: &[&str], limit: Duration) -> Run {
    let t0 = Instant::now();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(args)
        .env("FLOWGATE_ADMIN_TOKEN", token)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn flowgate");
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("flowgate {args:?} did not finish within {limit:?}"))
        .expect("flowgate output");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}
