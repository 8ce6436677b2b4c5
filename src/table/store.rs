//! The holder of the table in force: one atomic load per request, a whole new compiled
//! table stored on change. Requests keep the `Arc` they loaded, so a request under way
//! finishes on the table it started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::compile::CompiledTable;

#[derive(Debug)]
pub struct TableStore {
    current: ArcSwap<CompiledTable>,
}

impl TableStore {
    pub fn new(initial: CompiledTable) -> TableStore {
        TableStore { current: ArcSwap::from_pointee(initial) }
    }

    /// The table for one request. An owned `Arc`, so it may be held across `.await`.
    pub fn load(&self) -> Arc<CompiledTable> {
        self.current.load_full()
    }

    /// Puts a new table in force for every request that starts after this returns.
    pub fn store(&self, next: CompiledTable) {
        self.current.store(Arc::new(next));
    }

    /// Like `store`, for a table already shared (benches swap prepared tables).
    pub fn store_arc(&self, next: Arc<CompiledTable>) {
        self.current.store(next);
    }
}
