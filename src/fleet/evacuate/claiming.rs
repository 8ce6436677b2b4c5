//! One operation at a time: a run claims the fleet before its first push (an operation
//! in the table every proxy holds, or with `[store]` the store's lock on a lease), renews
//! the claim with every step and releases it when it ends.

use std::time::Duration;

use super::{RunError, Runner};
use crate::fleet::{claim, push};
use crate::table::Table;

impl Runner<'_> {
    /// How long a claim holds after a push: long enough for the next one.
    pub(super) fn claim_ttl(&self) -> Duration {
        self.opts.interval * 2 + self.opts.timeout * 3 + Duration::from_secs(60) + self.claim_extra
    }

    /// Claims the fleet over `table` (the one in force); returns the claim table, the
    /// base of the run's steps. Refuses when another operation's claim holds.
    pub(super) async fn claim(&mut self, table: &Table, kind: &str) -> Result<Table, RunError> {
        if let Some(op) = &self.operation {
            let mut t = table.clone();
            if self.store.is_none() {
                t.operation = Some(op.clone());
            }
            return Ok(t);
        }
        if self.store.is_some() {
            return self.lock_store(table, kind).await;
        }
        if let Some(other) = claim::held_by_other(table, None) {
            if !self.opts.force {
                return Err(RunError::Refused(format!(
                    "{kind} refused: another operation is in progress: {}; wait for it, or take over with --force",
                    claim::describe(other)
                )));
            }
            let taken = claim::describe(other);
            self.say(format!("--force: taking the fleet over from {taken}"));
        }
        let op = claim::new_operation(kind, claim::owner(self.opts.autopilot), self.claim_ttl());
        let mut claim = claim::claim_table(table, &op);
        self.sign(&mut claim);
        let proxies = self.proxies().await?;
        let results = push::push_if(&self.client, &proxies, &claim, Some(table.version)).await;
        if let Some(why) = push::auth_refusal(&results) {
            return Err(self.refused_claim(&claim, &op, &results, &why, kind).await);
        }
        // A proxy already past the version we read holds someone else's table: a rival
        // claim (resolved by id) or a push (the fleet moved under us).
        let ahead: Vec<&push::PushResult> = results
            .iter()
            .filter(|r| r.answer == "moved" && r.after.is_some_and(|v| v > table.version))
            .collect();
        if let Some(first) = ahead.first() {
            let mut rival = None;
            for r in &ahead {
                if let Ok(t) = self.client.table(&r.addr).await
                    && let Some(o) = t.operation.clone().filter(|o| o.id != op.id)
                {
                    rival = Some((o, t.version));
                    break;
                }
            }
            match rival {
                Some((o, _)) if o.id < op.id && !self.opts.force => {
                    return Err(RunError::Refused(format!(
                        "{kind} refused: {} claimed the fleet at the same moment and goes first",
                        claim::describe(&o)
                    )));
                }
                Some((o, v)) => {
                    // Ours goes first: once more over theirs, so every proxy ends on it.
                    self.say(format!("{kind}: went first over a rival claim ({})", claim::describe(&o)));
                    claim.version = v.max(claim.version) + 1;
                    self.sign(&mut claim);
                    let again = push::push(&self.client, &proxies, &claim).await;
                    let missed = again.iter().filter(|r| !r.ok()).count();
                    if missed > 0 {
                        self.say(format!(
                            "{missed} proxies did not take the claim; they catch up from their peers"
                        ));
                    }
                }
                None => {
                    return Err(RunError::Moved(format!(
                        "{kind}: the fleet moved while it was being claimed: proxy {} ({}) is on version {}",
                        first.addr,
                        first.region,
                        first.after.unwrap_or(0)
                    )));
                }
            }
        }
        self.operation = Some(op);
        self.in_force = Some(claim.clone());
        Ok(claim)
    }

    /// A claim some proxy refused for the token: the run stops before its first step, with
    /// one message. Where the claim was applied anyway (proxies with another token) it is
    /// released again, so that nothing is left claimed.
    async fn refused_claim(
        &mut self,
        claim: &Table,
        op: &crate::table::Operation,
        results: &[push::PushResult],
        why: &str,
        kind: &str,
    ) -> RunError {
        let applied = results.iter().filter(|r| r.answer == "applied").count();
        if applied == 0 {
            return RunError::Refused(format!("{kind} refused: {why}; nothing was applied"));
        }
        self.operation = Some(op.clone());
        self.in_force = Some(claim.clone());
        self.release("refused").await;
        RunError::Refused(format!(
            "{kind} refused: {why}; the claim that {applied} proxies applied was released, no traffic moved"
        ))
    }

    /// With a store, the claim is its lock on a lease, not a table.
    async fn lock_store(&mut self, table: &Table, kind: &str) -> Result<Table, RunError> {
        let owner = claim::owner(self.opts.autopilot);
        let ttl = self.fleet.store.as_ref().map(|s| s.lease_ttl).unwrap_or_default();
        let op = claim::new_operation(kind, owner, ttl);
        let Some(run) = self.store.as_mut() else { return Ok(table.clone()) };
        match run.lock(&op, self.opts.force, self.opts.store_lease.as_ref()).await {
            Ok(()) => {
                self.operation = Some(op);
                self.in_force = Some(table.clone());
                Ok(table.clone())
            }
            Err(crate::store::StoreError::LockHeld(other)) => Err(RunError::Refused(format!(
                "{kind} refused: another operation holds the store's lock: {} by {} (operation {}); its lease lapses {ttl:?} after its holder stops; wait for it, or take over with --force",
                other.kind, other.owner, other.id
            ))),
            Err(e) => Err(RunError::Refused(format!("{kind} refused before any push: {e}"))),
        }
    }

    /// Clears the claim: the shares in force, one version up, without the operation.
    pub(super) async fn release(&mut self, why: &str) {
        if let Some(run) = self.store.as_mut() {
            if !self.keep_claim {
                run.unlock().await;
                self.operation = None;
            }
            return;
        }
        let Some(current) = self.in_force.clone() else { return };
        if self.keep_claim || current.operation.is_none() {
            return;
        }
        let mut done = current.clone();
        done.version += 1;
        done.max_shift = None;
        done.operation = None;
        let kind = current.operation.as_ref().map(|o| o.kind.clone()).unwrap_or_default();
        done.note = Some(format!("release: {kind} {why}"));
        self.sign(&mut done);
        let proxies = match self.proxies().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let results = push::push_if(&self.client, &proxies, &done, Some(current.version)).await;
        let missed = results.iter().filter(|r| !r.ok()).count();
        if missed > 0 {
            self.say(format!(
                "the claim was released on all but {missed} proxies (they catch up from their peers)"
            ));
        }
        self.operation = None;
        self.in_force = Some(done);
    }
}
