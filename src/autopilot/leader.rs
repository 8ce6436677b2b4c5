//! With `[store]` in the fleet file, one autopilot runs per region and they elect a leader
//! through etcd: only the leader acts. The leadership is a key on a lease; the runs the
//! leader starts take the operation lock on the same lease, so when the leader dies (or is
//! cut off from the quorum), its leadership and its lock lapse together, within the
//! lease's TTL, and a standby takes over: it has been judging every region all along, so
//! it acts on what it sees at once (finishing an evacuation from the table in force, or
//! restoring), without waiting for a new `--confirm`.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::store::{LeaseRef, Store};

/// What this autopilot is now.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// No store: the only autopilot, always acting.
    Alone,
    /// The leader: acts, and takes the operation lock on this lease.
    Leader(LeaseRef),
    /// Another autopilot leads (named when known), or the store cannot be reached (`why`):
    /// judges, shows, and does nothing.
    Standby { leader: Option<String>, why: Option<String> },
}

impl Role {
    pub(crate) fn acts(&self) -> bool {
        matches!(self, Role::Alone | Role::Leader(_))
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Role::Alone => "alone",
            Role::Leader(_) => "leader",
            Role::Standby { .. } => "standby",
        }
    }
}

/// Campaigns for leadership as `name` until `stop`; the receiver follows the role.
pub(crate) fn spawn(cfg: config::Store, name: String, stop: CancellationToken) -> watch::Receiver<Role> {
    let (tx, rx) = watch::channel(Role::Standby { leader: None, why: Some("not elected yet".into()) });
    tokio::spawn(async move {
        let retry = (cfg.lease_ttl / 3).max(Duration::from_millis(500));
        let mut store: Option<Store> = None;
        loop {
            if store.is_none() {
                match Store::connect(&cfg).await {
                    Ok(s) => store = Some(s),
                    Err(e) => {
                        let _ = tx.send(Role::Standby { leader: None, why: Some(e.to_string()) });
                    }
                }
            }
            if let Some(s) = &store {
                match s.campaign(&name).await {
                    Ok(Some(lease)) => {
                        tracing::warn!(name, lease = lease.id(), "autopilot: elected leader");
                        let _ = tx.send(Role::Leader(lease.share()));
                        tokio::select! {
                            _ = lease.lost() => {
                                tracing::error!(name, "autopilot: leadership lost (its lease lapsed); standing by");
                                let _ = tx.send(Role::Standby { leader: None, why: Some("leadership lost".into()) });
                            }
                            _ = stop.cancelled() => {
                                // Hand over at once rather than after the TTL.
                                lease.release().await;
                                return;
                            }
                        }
                        continue;
                    }
                    Ok(None) => {
                        let leader = s.leader().await.ok().flatten();
                        let _ = tx.send(Role::Standby { leader, why: None });
                        // Campaign again the moment the leader's key goes (its lease
                        // lapsed), not at the next retry: the takeover fits in the TTL.
                        tokio::select! {
                            _ = s.leader_gone(cfg.lease_ttl) => {}
                            _ = stop.cancelled() => return,
                        }
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Role::Standby { leader: None, why: Some(e.to_string()) });
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
    rx
}
