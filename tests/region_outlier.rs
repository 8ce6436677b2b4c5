//! Region-level outlier detection on 5xx, with the built binary: three regions of two
//! proxies, every row local, a steady client load into every region. us-east-1's origin
//! answers 500 to every client request while its health checks pass: the requests entering
//! us-east-1 go elsewhere with no table change. When every region's origin fails, nothing
//! moves.

mod support;

use std::time::Duration;

use support::outage::{self, Answer, Load, OutageFleet};
use support::wait::wait_for_every;

const EAST: &str = "us-east-1";
const RPS: u32 = 40;

/// The 5xx share of requests entering `region` sent in `[from, to)`.
fn error_ratio(answers: &[Answer], region: &str, from: Duration, to: Duration) -> (f64, usize) {
    let inside: Vec<&Answer> =
        answers.iter().filter(|a| a.region == region && a.sent >= from && a.sent < to).collect();
    let failed = inside.iter().filter(|a| !a.ok).count();
    (if inside.is_empty() { 0.0 } else { failed as f64 / inside.len() as f64 }, inside.len())
}

/// From `start`, the first second after which the error ratio over every following
/// 2 s span stays below `limit`; and how many requests failed before it.
fn recovered(
    answers: &[Answer],
    region: &str,
    start: Duration,
    end: Duration,
    limit: f64,
) -> Option<Duration> {
    let mut t = start;
    while t + Duration::from_secs(2) <= end {
        let mut ok = true;
        let mut u = t;
        while u + Duration::from_secs(2) <= end {
            if error_ratio(answers, region, u, u + Duration::from_secs(2)).0 >= limit {
                ok = false;
                break;
            }
            u += Duration::from_millis(500);
        }
        if ok {
            return Some(t - start);
        }
        t += Duration::from_millis(250);
    }
    None
}

async fn shares(fleet: &OutageFleet, region: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for a in outage::admins(fleet, &[]) {
        let st = outage::status(a).await.expect("status");
        out.push(st["targets"][region]["outlier_share"].as_f64().expect("outlier_share"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_answering_500s_loses_its_traffic_and_a_failure_everywhere_moves_nothing() {
    let fleet = OutageFleet::start(2).await;
    let version =
        outage::status(fleet.region(EAST).proxies[0].admin).await.expect("status")["table_version"].clone();
    let load = Load::start(outage::targets(&fleet, &[]), RPS);
    load.wait_flowing(RPS as usize).await;
    let failed_at = load.started.elapsed();
    fleet.region(EAST).origin.fail_with(500);
    // The window over which the recovery is measured.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let checked_to = load.started.elapsed();
    let answers = load.answers();
    let took = recovered(&answers, EAST, failed_at, checked_to, 0.05);
    let failed = answers.iter().filter(|a| a.region == EAST && a.sent >= failed_at && !a.ok).count();
    let entering = answers.iter().filter(|a| a.region == EAST && a.sent >= failed_at).count();
    println!(
        "100 % 500s in {EAST} under {RPS} requests/s into each region: error ratio of requests entering it below 5 % after {took:?}; {failed} of {entering} failed over {:.0} s",
        (checked_to - failed_at).as_secs_f64()
    );
    let took = took.expect("the error ratio never fell below 5 %");
    assert!(took <= Duration::from_secs(15), "{took:?}");
    let east_shares = shares(&fleet, EAST).await;
    assert!(east_shares.iter().any(|s| *s < 0.1), "the proxies keep {EAST} below its share: {east_shares:?}");
    let now = outage::status(fleet.region(EAST).proxies[0].admin).await.expect("status");
    assert_eq!(now["table_version"], version, "no table change");

    // Every region failing: detection must not move traffic around (and a region kept
    // low gets its share back, since it no longer stands out).
    for r in &fleet.regions {
        r.origin.fail_with(500);
    }
    wait_for_every(
        "every share back to 1 with every region failing",
        Duration::from_secs(25),
        Duration::from_millis(250),
        || async {
            let mut all = Vec::new();
            for r in outage::REGIONS {
                all.extend(shares(&fleet, r).await);
            }
            if all.iter().all(|s| *s == 1.0) { Ok(()) } else { Err(format!("{all:?}")) }
        },
    )
    .await;
    // A few seconds more in which nothing may move (the absence is the point).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for r in outage::REGIONS {
        let s = shares(&fleet, r).await;
        assert!(s.iter().all(|x| *x == 1.0), "{r}: {s:?}");
    }
    drop(load.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_answering_30_percent_500s_is_relieved_within_seconds() {
    let fleet = OutageFleet::start(2).await;
    let load = Load::start(outage::targets(&fleet, &[]), RPS);
    load.wait_flowing(RPS as usize).await;
    let failed_at = load.started.elapsed();
    fleet.region(EAST).origin.fail_share(500, 30);
    // The window over which the recovery is measured.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let checked_to = load.started.elapsed();
    let answers = load.stop().await;
    let took = recovered(&answers, EAST, failed_at, checked_to, 0.05);
    let failed = answers.iter().filter(|a| a.region == EAST && a.sent >= failed_at && !a.ok).count();
    let entering = answers.iter().filter(|a| a.region == EAST && a.sent >= failed_at).count();
    let (late, n) = error_ratio(&answers, EAST, failed_at + Duration::from_secs(5), checked_to);
    println!(
        "30 % 500s in {EAST} under {RPS} requests/s into each region: below 5 % after {took:?}; {failed} of {entering} failed over {:.0} s; {:.1} % of {n} after the first 5 s",
        (checked_to - failed_at).as_secs_f64(),
        late * 100.0
    );
    assert!(took.is_some_and(|t| t <= Duration::from_secs(15)), "{took:?}");
    assert!(late < 0.05, "{late}");
}
