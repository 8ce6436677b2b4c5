//! `flowgate demo` end to end: the binary, a short duration, its summary and exit code.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn demo_evacuates_bypasses_and_restores_without_errors() {
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
