//! `flowgate evacuate` when the region it evacuates is really broken: its proxies hung or
//! gone, its origin erroring. The built binaries on loopback.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::outage::{self, OutageFleet, TOKEN, keeps, operation};
use support::run::{Run, flowgate_as};
use support::wait::within;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";

async fn flowgate(args: &[&str]) -> Run {
    flowgate_as(TOKEN, args, Duration::from_secs(90)).await
}

fn steps(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("rule").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evacuate_goes_on_without_the_hung_proxy_of_the_region_it_evacuates() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    let east = fleet.region(EAST);
    east.origin.fail_with(500);
    east.proxies[1].signal("STOP");
    let file = fleet.file();
    let mut args = operation("evacuate", EAST, &file, "2", "1s");
    args.push("--json");
    let run = flowgate(&args).await;
    east.proxies[1].signal("CONT");
    assert_eq!(run.code, Some(0), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let records = steps(&run.stdout);
    assert_eq!(records.len(), 2, "{}", run.stdout);
    let hung = east.proxies[1].admin.to_string();
    for r in &records {
        assert_eq!(r["rule"], "receiving-regions-ok", "{r}");
        let unreached = r["unreached"].to_string();
        assert!(unreached.contains(&hung), "every step names the hung proxy: {r}");
    }
    // The region's own errors were seen and deliberately not counted.
    assert!(
        records.iter().any(|r| r["ignored"].to_string().contains("us-east-1 (draining)")),
        "{}",
        run.stdout
    );
    for r in &fleet.regions {
        for (i, p) in r.proxies.iter().enumerate() {
            if r.name == EAST && i == 1 {
                continue;
            }
            let t = outage::table(p.admin).await.expect("table");
            assert_eq!(keeps(&t, EAST), 0.0, "{} proxy {} must be on the evacuation table", r.name, p.admin);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiving_region_failing_mid_run_stops_it_without_moving_traffic_back_into_the_failing_one() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    fleet.region(EAST).origin.fail_with(500);
    let load = outage::Load::start(outage::targets(&fleet, &[]), 20);
    load.wait_flowing(20).await;
    let file = fleet.file();
    let child = tokio::spawn(async move { flowgate(&operation("evacuate", EAST, &file, "4", "2s")).await });
    // Once step 1 is in force, the region taking most of the traffic starts failing too.
    let watched = fleet.region(WEST).proxies[0].admin;
    let step_one = within(Duration::from_secs(10), || async {
        outage::table(watched).await.and_then(|t| t["version"].as_u64()).unwrap_or(0) >= 1
    });
    let broke = step_one.await.is_some();
    if broke {
        fleet.region(WEST).origin.fail_with(500);
    }
    assert!(broke, "step 1 never reached {WEST}");
    let run = child.await.expect("run");
    let _ = load.stop().await;
    assert_eq!(run.code, Some(1), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("receiving-error-ratio"), "the rule is named:\n{}", run.stderr);
    assert!(run.stderr.contains("NOT rolled back"), "{}", run.stderr);
    // No rollback table was pushed: us-east-1 keeps less than it had, never more.
    let t = outage::table(watched).await.expect("table");
    assert!(!t["note"].as_str().unwrap_or("").starts_with("rollback"), "{t}");
    assert!(keeps(&t, EAST) < 1.0, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_receiving_region_stops_the_run_before_any_push() {
    let _turn = SERIAL.lock().await;
    let fleet = OutageFleet::start(2).await;
    let cut = fleet.dir.path().join("west-cut.toml");
    fleet.write_fleet_file(&cut, &[WEST]);
    let run = flowgate(&[
        "evacuate",
        EAST,
        "--fleet",
        cut.to_str().expect("path"),
        "--steps",
        "2",
        "--timeout",
        "1s",
        "--yes",
    ])
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("receiving region {WEST} is unreachable")), "{}", run.stderr);
    for r in &fleet.regions {
        for p in &r.proxies {
            assert_eq!(
                outage::table(p.admin).await.and_then(|t| t["version"].as_u64()),
                Some(0),
                "nothing pushed"
            );
        }
    }
}
