//! The demo's clients: a steady stream of GETs spread over every region's public
//! listeners, as users arriving in every region would be.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

/// What the clients saw, per entry region (by index).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) ok: Vec<AtomicU64>,
    pub(crate) errors: Vec<AtomicU64>,
    /// The last failure, for the summary.
    pub(crate) last_error: std::sync::Mutex<Option<String>>,
    /// When the outage began and when its evacuation was in force: failures are counted
    /// by the phase their request started in.
    pub(crate) outage_at: std::sync::OnceLock<tokio::time::Instant>,
    pub(crate) evacuated_at: std::sync::OnceLock<tokio::time::Instant>,
    /// Failures in the exercise, in the outage before its evacuation was in force, and of
    /// requests started after it (see `phase`).
    pub(crate) errors_by_phase: [AtomicU64; 3],
}

impl Tally {
    pub(crate) fn new(regions: usize) -> Tally {
        Tally {
            ok: (0..regions).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..regions).map(|_| AtomicU64::new(0)).collect(),
            last_error: std::sync::Mutex::new(None),
            outage_at: std::sync::OnceLock::new(),
            evacuated_at: std::sync::OnceLock::new(),
            errors_by_phase: Default::default(),
        }
    }

    /// A failure's phase: after the evacuation if the request started once it was in force;
    /// the outage's if it failed once the outage began (a request in flight when the origin
    /// died is the outage's, not the exercise's); else the exercise's.
    fn phase(&self, started: tokio::time::Instant, failed: tokio::time::Instant) -> usize {
        match (self.outage_at.get(), self.evacuated_at.get()) {
            (_, Some(e)) if started >= *e => 2,
            (Some(o), _) if failed >= *o => 1,
            _ => 0,
        }
    }

    /// Failures before the outage, during it, and after its evacuation was in force.
    pub(crate) fn phases(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.errors_by_phase[i].load(Ordering::Relaxed))
    }

    pub(crate) fn total(&self) -> (u64, u64) {
        let ok = self.ok.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        let err = self.errors.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        (ok, err)
    }
}

/// Starts `per_entry` clients per public listener, each sending a request every
/// `period`, until `stop` fires. `entries` pairs a region index with a listener.
pub(crate) fn start(
    entries: Vec<(usize, SocketAddr)>,
    per_entry: usize,
    period: Duration,
    tally: Arc<Tally>,
    stop: CancellationToken,
) -> tokio_util::task::TaskTracker {
    let tracker = tokio_util::task::TaskTracker::new();
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    for (region, addr) in entries {
        for _ in 0..per_entry {
            let (client, tally, stop) = (client.clone(), tally.clone(), stop.clone());
            let uri: http::Uri = match format!("http://{addr}/").parse() {
                Ok(u) => u,
                Err(_) => continue,
            };
            tracker.spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let started = tokio::time::Instant::now();
                    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
                        let resp = client.get(uri.clone()).await.map_err(|e| e.to_string())?;
                        let status = resp.status();
                        let why = resp
                            .headers()
                            .get(&crate::proxy::headers::X_FLOWGATE_ERROR)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        resp.into_body().collect().await.map_err(|e| e.to_string())?;
                        if status.is_success() {
                            Ok(())
                        } else {
                            Err(format!("{status} {}", why.unwrap_or_default()))
                        }
                    })
                    .await
                    .unwrap_or_else(|_| Err("no answer in 10 s".into()));
                    match outcome {
                        Ok(()) => tally.ok[region].fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            if let Ok(mut last) = tally.last_error.lock() {
                                *last = Some(e);
                            }
                            let phase = tally.phase(started, tokio::time::Instant::now());
                            tally.errors_by_phase[phase].fetch_add(1, Ordering::Relaxed);
                            tally.errors[region].fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
    }
    tracker.close();
    tracker
}
