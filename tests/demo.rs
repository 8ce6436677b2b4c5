//! `flowgate demo` end to end: the binary, a short duration, its summary and exit code;
//! the kept fleet driven by the fleet commands; a reader that goes away.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::wait::poll_blocking;

/// One demo at a time: each is timed and gated on its errors, and the machine may have
/// two cores.
static ONE_DEMO: Mutex<()> = Mutex::new(());

fn one_demo() -> std::sync::MutexGuard<'static, ()> {
    ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner())
}

/// The exit code the summary line implies: 0 only with no failure in the exercise, none
/// after the outage's evacuation, and the outage evacuated.
fn code_of(summary: &str) -> i32 {
    let words: Vec<&str> = summary.split_whitespace().collect();
    let clean = words.get(3) == Some(&"0")
        && summary.ends_with(", 0 after")
        && summary.contains("the autopilot evacuated it ");
    if clean { 0 } else { 1 }
}

#[test]
fn demo_evacuates_bypasses_and_restores_without_errors() {
    let _one = one_demo();
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["demo", "--duration", "20s"])
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(90), "the demo overran its duration: {:?}", t0.elapsed());

    let summary = stdout.lines().find(|l| l.starts_with("demo: ")).expect("a summary line");
    // demo: N requests, 0 errors in the exercise, evacuated us-east-1 in Ts, restored in Ts;
    // outage: eu-west-1's origin died; the autopilot evacuated it T s after the failure, F
    // requests failed before the evacuation was in force, 0 after
    let words: Vec<&str> = summary.split_whitespace().collect();
    let requests: u64 = words[1].parse().expect("request count");
    assert!(requests > 500, "{summary}");
    assert_eq!(words[3], "0", "no client request may fail: {summary}");
    assert!(summary.contains("evacuated us-east-1 in ") && summary.contains("restored in "), "{summary}");
    // The unplanned act: the autopilot evacuates the region whose origin died, and no
    // request fails once that is in force.
    assert!(summary.contains("outage: eu-west-1's origin died; the autopilot evacuated it "), "{summary}");
    assert!(
        summary.ends_with(", 0 after"),
        "no request may fail after the evacuation is in force: {summary}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("t=") && l.contains("eu-west-1 0/s 0%")),
        "eu-west-1 was evacuated:\n{stdout}"
    );

    // Not a terminal here: plain lines, one a second, that show each phase happen.
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("t=")).collect();
    assert!(lines.len() >= 15, "about one line a second:\n{stdout}");
    assert!(lines.iter().any(|l| l.contains("us-east-1 0/s 0%")), "us-east-1 was evacuated:\n{stdout}");
    assert!(lines.iter().any(|l| l.contains("bypass")), "the bypass engaged:\n{stdout}");
    assert!(
        stdout.contains("bypass: us-east-1's proxies went around us-west-2's crushed load balancer"),
        "{stdout}"
    );
    let restored =
        lines.iter().rev().find(|l| l.contains("the exercise passed")).expect("the exercise passed");
    assert!(!restored.contains("us-east-1 0/s"), "us-east-1 serves again after the exercise:\n{restored}");
    let last = lines.last().expect("lines");
    assert!(last.contains("evacuated by the autopilot"), "ends with the outage evacuated:\n{last}");
    assert!(!stdout.contains('\x1b'), "no terminal codes when stdout is not a terminal");
}

/// Lines of a child's stdout, read on a thread, handed out with a deadline.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(out: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    /// The first line (from the start) satisfying `want`, waiting up to `limit` for it.
    fn find(&mut self, what: &str, limit: Duration, want: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| want(l)) {
            return l.clone();
        }
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} within {limit:?}; stdout so far:\n{}", self.seen.join("\n")),
            }
        }
    }
}

/// Kills the demo if the test fails before it stops it.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_kept_demo_prints_its_fleet_and_answers_the_fleet_commands_under_load_until_sigterm() {
    let _one = one_demo();
    let bin = env!("CARGO_BIN_EXE_flowgate");
    let mut child = Command::new(bin)
        .args(["demo", "--duration", "12s", "--keep-running"])
        .env_remove("FLOWGATE_ADMIN_TOKEN")
        .env_remove("FLOWGATE_DEMO_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let mut lines = Lines::of(child.stdout.take().expect("stdout"));
    let stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let mut demo = Demo(child);

    // Printed before the show: the fleet file, the token, every proxy's dashboard.
    let start = Duration::from_secs(60);
    let fleet = lines.find("fleet file line", start, |l| l.starts_with("fleet file: "));
    let fleet = fleet.trim_start_matches("fleet file: ").to_owned();
    let token = lines.find("admin token line", start, |l| l.starts_with("admin token: "));
    let token = token.trim_start_matches("admin token: ").to_owned();
    assert!(!token.is_empty() && !token.contains(' '), "{token:?}");
    let text = std::fs::read_to_string(&fleet).expect("the printed fleet file exists");
    let mut dashboards = Vec::new();
    for region in ["us-east-1", "us-west-2", "eu-west-1"] {
        assert!(text.contains(&format!("[regions.{region}]")), "{fleet}:\n{text}");
        for x in ["a", "b"] {
            let prefix = format!("dashboard {region} {x}: http://");
            let line = lines.find(&prefix, start, |l| l.starts_with(&prefix));
            let addr = line.trim_start_matches(&prefix).trim_end_matches('/').to_owned();
            assert!(text.contains(&format!("\"{addr}\"")), "{addr} is in the fleet file:\n{text}");
            dashboards.push(addr);
        }
    }
    lines.find("the export command", start, |l| l.trim() == format!("export FLOWGATE_ADMIN_TOKEN={token}"));

    // The show ends; the fleet and its load stay.
    let summary = lines.find("summary line", Duration::from_secs(120), |l| l.starts_with("demo: "));
    lines.find("the still-running line", Duration::from_secs(10), |l| l.starts_with("still running"));

    let status = |token: &str| {
        Command::new(bin)
            .args(["status", "--fleet", &fleet, "--json"])
            .env("FLOWGATE_ADMIN_TOKEN", token)
            .output()
            .expect("run status")
    };
    // Bounded: every proxy answers, and each one's rate over the last minute shows the load.
    // Each probe runs the `status` command, hence the slower pace.
    let busy_everywhere = poll_blocking(Duration::from_secs(30), Duration::from_millis(500), || {
        let out = status(&token);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let proxies = json["proxies"].as_array().cloned().unwrap_or_default();
        let busy = proxies.iter().filter(|p| p["status"]["rps"].as_f64().is_some_and(|r| r > 0.0)).count();
        let answered: Vec<String> = proxies
            .iter()
            .filter(|p| p["status"].is_object())
            .filter_map(|p| p["addr"].as_str().map(str::to_owned))
            .collect();
        if out.status.code() == Some(0) && answered.len() == dashboards.len() && busy == dashboards.len() {
            for d in &dashboards {
                assert!(answered.contains(d), "{d} answered: {answered:?}");
            }
            return Ok(json);
        }
        Err(out)
    });
    let last = busy_everywhere.unwrap_or_else(|out| {
        panic!(
            "status never showed every proxy busy: exit {:?}\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(last["unreachable"], 0, "{last}");
    assert!(last["versions_agree"].as_bool().unwrap_or(false), "{last}");

    // SIGTERM: the clients stop, every proxy drains, the exit code is the show's.
    let pid = demo.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(killed.success());
    let exited = poll_blocking(Duration::from_secs(30), Duration::from_millis(100), || {
        demo.0.try_wait().expect("wait for the demo").ok_or(())
    });
    let Ok(exit) = exited else { panic!("the demo did not exit within 30 s of SIGTERM") };
    let stderr = stderr.join().unwrap_or_default();
    assert_eq!(exit.code(), Some(code_of(&summary)), "{summary}\nstderr:\n{stderr}");
    assert!(!std::path::Path::new(&fleet).exists(), "the temporary folder is removed at the end");
}

#[test]
fn a_reader_that_goes_away_does_not_stop_the_demo_or_make_it_panic() {
    let _one = one_demo();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["demo", "--duration", "15s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("the view's first byte");
    drop(stdout);
    let out = child.wait_with_output().expect("wait for the demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(matches!(out.status.code(), Some(0 | 1)), "the demo's own exit code: {:?}\n{stderr}", out.status);
}
