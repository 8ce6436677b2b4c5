//! The dashboard's recent past, kept by the proxy: a sample a second of the figures the
//! page charts (rates, error ratio, table version, shares), the last
//! [`CAPACITY`] of them in a fixed ring, so that a page opened now draws the last
//! minutes at once instead of starting empty.
//!
//! One task takes the samples ([`sample_every_second`]); nothing on the request path
//! touches the ring. Its lock is held only to push or copy, never across an await.
//!
//! `GET /v1/dashboard/history` answers, oldest sample first:
//! `{"interval_seconds": 1, "window_seconds": 5, "capacity": 900, "samples": [{"at_ms":
//! 1767225600000, "rps": 12.5, "error_ratio": 0.0, "source_rps": 3.0, "table_version": 7,
//! "shares": {"us-east-1": 0.6, "us-west-2": 0.4}}]}` (`at_ms`: milliseconds since the
//! epoch, by this proxy's clock; rates over the last `window_seconds`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::super::{AdminState, status};
use super::WINDOW_SECONDS;

/// Samples kept: 15 minutes at one a second.
pub(crate) const CAPACITY: usize = 900;
const INTERVAL: Duration = Duration::from_secs(1);

/// One second of the dashboard's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Sample {
    pub(crate) at_ms: u64,
    pub(crate) rps: f64,
    pub(crate) error_ratio: f64,
    pub(crate) source_rps: f64,
    pub(crate) table_version: u64,
    pub(crate) shares: BTreeMap<String, f64>,
}

/// The ring of the last [`CAPACITY`] samples.
#[derive(Debug, Default)]
pub(crate) struct SampleRing {
    ring: Mutex<VecDeque<Sample>>,
}

/// What `GET /v1/dashboard/history` answers.
#[derive(Debug, Serialize)]
pub(crate) struct HistoryDoc {
    pub(crate) interval_seconds: u64,
    pub(crate) window_seconds: u64,
    pub(crate) capacity: usize,
    pub(crate) samples: Vec<Sample>,
}

impl SampleRing {
    pub(crate) fn push(&self, s: Sample) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() >= CAPACITY {
            ring.pop_front();
        }
        ring.push_back(s);
    }

    /// Every sample kept, oldest first.
    pub(crate) fn doc(&self) -> HistoryDoc {
        let samples = self.ring.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect();
        HistoryDoc {
            interval_seconds: INTERVAL.as_secs(),
            window_seconds: WINDOW_SECONDS,
            capacity: CAPACITY,
            samples,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// This second's figures, as the page's own poll reads them.
fn take(state: &AdminState) -> Sample {
    let st = status::status(state, WINDOW_SECONDS);
    Sample {
        at_ms: now_ms(),
        rps: st.rps,
        error_ratio: st.error_ratio,
        source_rps: st.source_rps,
        table_version: st.table_version,
        shares: st.targets.iter().map(|(r, t)| (r.clone(), t.share)).collect(),
    }
}

/// Samples into `state`'s ring once a second until `stop` fires.
pub(crate) async fn sample_every_second(state: Arc<AdminState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    // A stalled runtime takes the next sample late rather than a burst of them.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => state.dashboard.push(take(&state)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64) -> Sample {
        Sample {
            at_ms,
            rps: 1.0,
            error_ratio: 0.0,
            source_rps: 1.0,
            table_version: 1,
            shares: BTreeMap::from([("us-east-1".to_owned(), 1.0)]),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_capacity_samples_oldest_first() {
        let ring = SampleRing::default();
        for k in 0..(CAPACITY as u64 + 250) {
            ring.push(sample(k));
        }
        let doc = ring.doc();
        assert_eq!(doc.samples.len(), CAPACITY);
        assert_eq!(doc.samples[0].at_ms, 250);
        assert_eq!(doc.samples[CAPACITY - 1].at_ms, CAPACITY as u64 + 249);
        assert_eq!((doc.capacity, doc.interval_seconds, doc.window_seconds), (CAPACITY, 1, WINDOW_SECONDS));
    }

    #[test]
    fn the_document_reads_as_documented() {
        let ring = SampleRing::default();
        ring.push(sample(1_767_225_600_000));
        let v = serde_json::to_value(ring.doc()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"interval_seconds": 1, "window_seconds": 5, "capacity": 900, "samples": [
                {"at_ms": 1_767_225_600_000u64, "rps": 1.0, "error_ratio": 0.0, "source_rps": 1.0,
                 "table_version": 1, "shares": {"us-east-1": 1.0}}]})
        );
    }
}
