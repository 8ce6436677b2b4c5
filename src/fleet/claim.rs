//! One fleet-wide operation at a time: `evacuate`, `restore`, `exercise` and an autopilot
//! action claim the fleet before their first step.
//!
//! The claim is a table: the shares in force, one version up, with an
//! [`Operation`] (id, owner, what, until when) in it, pushed with `If-Match` on the
//! version the run read. Every step then carries the operation with its expiry moved on,
//! and the run's last push (or its rollback) clears it. A second run that finds an
//! unexpired claim refuses and names it, unless `--force`. Two runs that claim at the same
//! moment each get part of the fleet; each reads the other's claim from a proxy that
//! answered 412, the lower id wins and pushes its claim once more over the other's (so the
//! fleet ends on one table), the other stops without pushing anything else. A run that
//! died leaves its claim until `expires_at`: twice its step interval, three timeouts and a
//! minute after its last push (plus the hold of an exercise).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::table::{Operation, Table};

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `user@host (pid N)`, or `autopilot@host (pid N)`.
pub(crate) fn owner(autopilot: bool) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "unknown-host".into());
    let who = if autopilot {
        "autopilot".to_owned()
    } else {
        std::env::var("USER").unwrap_or_else(|_| "someone".into())
    };
    format!("{who}@{host} (pid {})", std::process::id())
}

/// A new operation; ids sort by start time, a random tail keeps them unique.
pub(crate) fn new_operation(kind: &str, owner: String, ttl: Duration) -> Operation {
    use rand::RngExt;
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let tail: u32 = rand::rng().random();
    Operation {
        id: format!("{ms:013}-{tail:08x}"),
        owner,
        kind: kind.to_owned(),
        expires_at: now() + ttl.as_secs(),
    }
}

/// The claim of another operation that still holds in `t`.
pub(crate) fn held_by_other<'a>(t: &'a Table, mine: Option<&str>) -> Option<&'a Operation> {
    t.operation.as_ref().filter(|o| o.expires_at > now() && Some(o.id.as_str()) != mine)
}

/// For people: `evacuate us-east-1 by alice@host (pid 7), id ..., until 12:00:00Z`.
pub(crate) fn describe(o: &Operation) -> String {
    o.describe()
}

/// The claim table: `t`'s shares one version up, carrying `op`.
pub(crate) fn claim_table(t: &Table, op: &Operation) -> Table {
    let mut c = t.clone();
    c.version = t.version + 1;
    c.max_shift = None;
    c.operation = Some(op.clone());
    c.note = Some(format!("claim: {} by {}", op.kind, op.owner));
    c.signature = None;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_hold_until_they_expire_and_ids_order_by_start() {
        let a = new_operation("evacuate a", owner(false), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(2));
        let b = new_operation("evacuate b", owner(true), Duration::from_secs(60));
        assert!(a.id < b.id, "{} {}", a.id, b.id);
        assert!(b.owner.starts_with("autopilot@"));
        let mut t = Table::local_only();
        t.version = 4;
        let claimed = claim_table(&t, &a);
        assert_eq!(claimed.version, 5);
        assert_eq!(held_by_other(&claimed, None).map(|o| &o.id), Some(&a.id));
        assert!(held_by_other(&claimed, Some(&a.id)).is_none(), "our own claim");
        let mut expired = claimed.clone();
        if let Some(o) = expired.operation.as_mut() {
            o.expires_at = now() - 1;
        }
        assert!(held_by_other(&expired, None).is_none(), "an expired claim is void");
        assert!(describe(&a).contains("evacuate a by "));
        assert_ne!(claimed.digest(), t.digest(), "a claim is content: two claims of one version conflict");
    }
}
