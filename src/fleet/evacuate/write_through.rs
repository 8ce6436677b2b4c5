//! With `[store]` in the fleet file: a run plans from the store's table and writes every
//! table to the store before any proxy gets it.

use super::{RunError, Runner};
use crate::fleet::store_write;
use crate::table::Table;

impl Runner<'_> {
    /// The table to plan from with a store: the store's, unless the proxies are ahead of
    /// it (a direct push went past it). Opens the store on first use.
    pub(super) async fn store_base(&mut self, from_proxies: Table) -> Result<Table, RunError> {
        let Some(cfg) = self.fleet.store.clone() else { return Ok(from_proxies) };
        if self.store.is_none() {
            let run = store_write::StoreRun::open(&cfg)
                .await
                .map_err(|e| RunError::Refused(format!("refused before any push: {e}")))?;
            self.store = Some(run);
        }
        let stored = self.store.as_ref().and_then(|r| r.table().cloned());
        match stored {
            Some(t) if t.version >= from_proxies.version => {
                if t.version > from_proxies.version {
                    self.say(format!(
                        "proxies lag the store (version {} against {}): planning from the store's table",
                        t.version, from_proxies.version
                    ));
                }
                Ok(t)
            }
            Some(t) => {
                self.say(format!(
                    "proxies are ahead of the store (version {} against {}): planning from theirs",
                    from_proxies.version, t.version
                ));
                Ok(from_proxies)
            }
            None => Ok(from_proxies),
        }
    }

    /// Writes `t` to the store first (when there is one): nothing the store refused is
    /// pushed.
    pub(super) async fn write_store(&mut self, t: &Table, what: &str) -> Result<(), RunError> {
        let Some(run) = self.store.as_mut() else { return Ok(()) };
        match run.write(t).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let msg = store_write::refused(&e, what);
                self.say(msg.clone());
                Err(match e {
                    crate::store::StoreError::Moved { .. } => RunError::Moved(msg),
                    _ => RunError::Held(msg),
                })
            }
        }
    }
}
