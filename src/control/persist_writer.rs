//! The state file's power-loss durability, off the push's path.
//!
//! A push replaces the state file before it is answered ([`persist::save_unsynced`]), which
//! a process crash cannot undo; the fsyncs that make it survive power loss as well are done
//! here, by one background thread, at most once per [`SYNC_EVERY`] and for the latest table
//! only: pushes faster than the disk overwrite one pending slot, they never queue. It also
//! closes the files that pushes replaced (their blocks' discard can wait for the disk). A sync
//! that fails is logged and retried with a full rewrite of the latest table. Dropping the
//! writer (at the end of a drain) syncs what is pending first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::persist::{self, PersistError};
use crate::table::Table;

/// How far power-loss durability may lag an acknowledged push, at most (plus one sync).
pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The one state file not yet synced, if any: the latest written.
struct Pending {
    path: PathBuf,
    bytes: Vec<u8>,
    /// A sync of it failed: write it again, durably, rather than trust the page cache.
    rewrite: bool,
}

/// Replaced files kept open before the thread is woken to close them: a push wakes it only
/// when it has nothing to do or when this many are waiting (a wake-up per push cost a
/// context switch each), so the files a push holds stay few.
const RETIRED_BATCH: usize = 32;

#[derive(Default)]
struct State {
    pending: Option<Pending>,
    /// Replaced state files still open, closed here rather than on the push's path (see
    /// [`persist::save_unsynced`]); fewer than [`RETIRED_BATCH`] between wake-ups, plus
    /// the pushes of one rest.
    retired: Vec<std::fs::File>,
    /// The thread waits for a job (rather than resting between syncs): a push must wake it.
    idle: bool,
    stopping: bool,
    /// Times the thread woke from a wait, for tests.
    wakes: u64,
}

struct Inner {
    state: Mutex<State>,
    wake: Condvar,
    /// Syncs done (successful or not), for tests and the log.
    syncs: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes state files and syncs them in the background.
pub(crate) struct PersistWriter {
    inner: Arc<Inner>,
    /// The state file the last save wrote, for the next one to write over in place.
    kept: Mutex<Option<persist::Kept>>,
    /// `None` if no thread could be started: then every save syncs at once.
    thread: Option<JoinHandle<()>>,
}

impl PersistWriter {
    pub(crate) fn start() -> PersistWriter {
        PersistWriter::every(SYNC_EVERY)
    }

    pub(crate) fn every(interval: Duration) -> PersistWriter {
        let inner =
            Arc::new(Inner { state: Mutex::default(), wake: Condvar::new(), syncs: AtomicU64::new(0) });
        let worker = inner.clone();
        let thread = std::thread::Builder::new()
            .name("flowgate-fsync".into())
            .spawn(move || run(&worker, interval))
            .map_err(|e| tracing::warn!(error = %e, "no background fsync thread; every push syncs at once"))
            .ok();
        PersistWriter { inner, kept: Mutex::new(None), thread }
    }

    /// Replaces the state file of `dir` with `table` (survives a process crash when this
    /// returns) and schedules the sync that makes it survive power loss. An error means
    /// the file was not replaced.
    pub(crate) fn save(&self, dir: &Path, table: &Table) -> Result<(), PersistError> {
        let (path, bytes, replaced) = {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            persist::save_unsynced(dir, table, &mut kept)?
        };
        if self.thread.is_none() {
            return persist::sync(&path);
        }
        let mut st = self.inner.lock();
        st.pending = Some(Pending { path, bytes, rewrite: false });
        st.retired.extend(replaced);
        // Resting, the thread takes the job when its rest ends anyway.
        let wake = st.idle || st.retired.len() >= RETIRED_BATCH;
        drop(st);
        if wake {
            self.inner.wake.notify_all();
        }
        Ok(())
    }

    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.inner.syncs.load(Ordering::SeqCst)
    }
}

impl Drop for PersistWriter {
    fn drop(&mut self) {
        self.inner.lock().stopping = true;
        self.inner.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: sync the pending file, then rest `interval` (cut short by a stop, which
/// syncs what is pending once more and ends).
fn run(inner: &Inner, interval: Duration) {
    loop {
        let (job, retired) = {
            let mut st = inner.lock();
            while st.pending.is_none() && !st.stopping {
                st.idle = true;
                st = inner.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                st.wakes += 1;
            }
            st.idle = false;
            (st.pending.take(), std::mem::take(&mut st.retired))
        };
        // Closing may wait for the disk: not with the lock held.
        drop(retired);
        let Some(job) = job else { return };
        let result = if job.rewrite {
            persist::write_atomically(&job.path, &job.bytes)
        } else {
            persist::sync(&job.path)
        };
        inner.syncs.fetch_add(1, Ordering::SeqCst);
        let mut st = inner.lock();
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot sync the state file to disk; retrying");
            // A newer table replaced the file meanwhile: that one is what to sync. At a stop,
            // one try is all: the drain must end.
            if st.pending.is_none() && !st.stopping {
                st.pending = Some(Pending { rewrite: true, ..job });
            }
        }
        let until = Instant::now() + interval;
        while !st.stopping {
            // Checked under the lock before every wait, so a batch's wake-up, sent while
            // this thread was closing the last batch, is never lost.
            let retired = std::mem::take(&mut st.retired);
            if !retired.is_empty() {
                drop(st);
                drop(retired);
                st = inner.lock();
                continue;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = inner.wake.wait_timeout(st, left).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            st.wakes += 1;
        }
    }
}

#[cfg(test)]
mod tests;
