//! A decision that is news, told everywhere it goes: a JSON line on stdout, the ring of
//! `/v1/decisions`, the decision counter and the `--notify` command.

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::decide::{Decision, spelled};
use super::{Pilot, server};
use crate::fleet::evacuate::journal::Journal;

/// A decision as it is logged: the decision, when, and what came of an action.
#[derive(Debug, Serialize)]
struct Record<'a> {
    time: String,
    #[serde(flatten)]
    decision: &'a Decision,
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<&'a Journal>,
}

impl Pilot {
    /// Logs a decision: stdout, the ring of `/v1/decisions`, metrics, `--notify`.
    pub(super) fn emit(&self, d: &Decision, result: Option<&str>, run: Option<&Journal>) {
        let record = Record {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            decision: d,
            dry_run: self.opts.dry_run,
            result,
            run,
        };
        let Ok(value) = serde_json::to_value(&record) else { return };
        let line = value.to_string();
        if self.opts.print {
            // A closed stdout must not stop the autopilot.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        let action = spelled(d.action);
        self.shared.metrics.decisions.with_label_values(&[&action]).inc();
        if let Ok(mut v) = self.shared.view.lock() {
            v.decisions.push_front(value);
            v.decisions.truncate(server::DECISIONS_KEPT);
        }
        if let Some(cmd) = self.opts.notify.clone() {
            let verdict = spelled(d.verdict);
            let region = d.region.clone();
            tokio::spawn(notify(cmd, line, region, verdict, action));
        }
    }
}

/// Runs `--notify` with the decision on stdin; a hook that hangs is cut after 30 s.
async fn notify(cmd: String, json: String, region: String, verdict: String, action: String) {
    use tokio::io::AsyncWriteExt;
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .env("FLOWGATE_REGION", &region)
        .env("FLOWGATE_VERDICT", &verdict)
        .env("FLOWGATE_ACTION", &action)
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(command = %cmd, error = %e, "autopilot: --notify could not start");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(json.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
    }
    match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(Ok(s)) if s.success() => {}
        Ok(Ok(s)) => tracing::error!(command = %cmd, status = %s, "autopilot: --notify failed"),
        Ok(Err(e)) => tracing::error!(command = %cmd, error = %e, "autopilot: --notify failed"),
        Err(_) => tracing::error!(command = %cmd, "autopilot: --notify took over 30 s; killed"),
    }
}
