//! The last applied table on disk, so that a restart serves what was pushed.
//!
//! A push replaces the file ([`save_unsynced`]: a temporary file in the same folder,
//! renamed over the old one) before it is answered, so a process crash at any point leaves
//! the old table or the new one, never half of one, and an acknowledged table survives
//! `kill -9` (the page cache outlives the process). Making it survive power loss too
//! ([`sync`]: fsync of the file and the folder) is left to
//! [`super::persist_writer`], which coalesces it off the push's path.
//! [`write_atomically`] does both at once, for files written once. A file that cannot be
//! read back is moved aside, not deleted: an operator may want to see what was there.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::table::{Known, Table, TableError};

const FILE: &str = "table.json";

/// Why a file could not be written. `pub` (not nameable outside the crate) because it is
/// the source of [`crate::server::ServeError::AddrFile`].
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot encode {what}: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io { path: path.to_owned(), source }
}

/// Replaces the state file of `dir` with `table`, whole, without waiting for the disk:
/// what a process crash cannot undo, but power loss can until [`sync`]. Returns the file
/// and what was written, for [`sync`] or a rewrite.
///
/// Also returns the replaced file, still open: on a folder mounted with `discard`, the
/// last close of a replaced file frees its blocks with a synchronous discard (measured:
/// most of a push's time), so whoever closes it pays that; the caller hands it to a
/// thread that can wait.
pub(crate) fn save_unsynced(
    dir: &Path,
    table: &Table,
) -> Result<(PathBuf, Vec<u8>, Option<std::fs::File>), PersistError> {
    let bytes = serde_json::to_vec_pretty(table)
        .map_err(|source| PersistError::Encode { what: "the table", source })?;
    let path = dir.join(FILE);
    let replaced = std::fs::File::open(&path).ok();
    // The folder is made only when the write finds it missing: every push after the first
    // saves the two system calls of checking for it.
    match replace(&path, &bytes, false) {
        Err(PersistError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() =>
        {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            replace(&path, &bytes, false)?;
        }
        written => written?,
    }
    Ok((path, bytes, replaced))
}

/// Makes a file replaced by [`save_unsynced`] survive power loss: its data, then the
/// folder that holds the rename.
pub(crate) fn sync(path: &Path) -> Result<(), PersistError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io(path))?;
    let dir = folder(path);
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Replaces `path` with `bytes` so that a reader (or a crash, even a power loss) sees the
/// old file or the new one, never half of one: a temporary file in the same folder, fsync,
/// rename over the old one, fsync of the folder. The folder must exist.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    replace(path, bytes, true)?;
    // The rename is durable only once the folder itself is synced.
    let dir = folder(path);
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A temporary file in the folder of `path` (synced first when `durable`), renamed over
/// it; on failure the temporary file is removed, so a refused write leaves nothing behind.
fn replace(path: &Path, bytes: &[u8], durable: bool) -> Result<(), PersistError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = folder(path).join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        preallocate(&f, bytes.len());
        f.write_all(bytes).map_err(io(&tmp))?;
        if durable {
            f.sync_all().map_err(io(&tmp))?;
        }
        drop(f);
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Gives the temporary file its blocks before it is written. On ext4 (the common state
/// folder), renaming a file over another whose data still waits for delayed allocation
/// makes the rename allocate and start writing it out at once (`auto_da_alloc`): measured
/// here, most of a push's system time (create + write + rename over: 100-136 µs; with the
/// blocks allocated first: 67 µs). Only a saving: a file system without `fallocate` (or one
/// that refuses it) gets the plain write.
fn preallocate(f: &std::fs::File, len: usize) {
    #[cfg(target_os = "linux")]
    if let Ok(len) = u64::try_from(len)
        && len > 0
    {
        let _ = rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), 0, len);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, len);
}

/// What start-up found in the state folder.
#[derive(Debug)]
pub(crate) enum Loaded {
    Nothing,
    Table(Table),
    /// The file was unreadable or invalid and has been moved to `moved_to`.
    MovedAside {
        reason: String,
        moved_to: PathBuf,
    },
}

/// Reads the state file; a file that does not parse or fit `known` is moved aside.
pub(crate) fn load(dir: &Path, known: &Known<'_>) -> Loaded {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Nothing,
        Err(e) => return move_aside(&path, format!("cannot read: {e}")),
    };
    let checked = Table::parse(&bytes).and_then(|t| {
        if t.version == 0 {
            return Err(TableError { field: "version".into(), message: "must be positive".into() });
        }
        t.validate(known).map(|_| t)
    });
    match checked {
        Ok(t) => Loaded::Table(t),
        Err(e) => move_aside(&path, e.to_string()),
    }
}

fn move_aside(path: &Path, reason: String) -> Loaded {
    let stamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let moved_to = path.with_extension(format!("json.corrupt-{stamp}"));
    if let Err(e) = std::fs::rename(path, &moved_to) {
        tracing::error!(path = %path.display(), error = %e, "cannot move the bad state file aside");
    }
    Loaded::MovedAside { reason, moved_to }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known<'static> {
        Known { regions: vec!["a", "b"], origins: vec!["api"] }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Table::local_only();
        t.version = 9;
        t.weights.insert("a".into(), [("b".to_string(), 3u64)].into());
        let (path, _, _) = save_unsynced(dir.path(), &t).unwrap();
        sync(&path).unwrap();
        match load(dir.path(), &known()) {
            Loaded::Table(back) => assert_eq!(back, t),
            other => panic!("{other:?}"),
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_missing_folder_is_made_on_the_first_save() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        let mut t = Table::local_only();
        t.version = 4;
        let (path, _, replaced) = save_unsynced(&nested, &t).unwrap();
        assert!(replaced.is_none(), "nothing was there to replace");
        assert_eq!(path, nested.join(FILE));
        match load(&nested, &known()) {
            Loaded::Table(back) => assert_eq!(back, t),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_write_leaves_the_old_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        write_atomically(&path, b"old").unwrap();
        // A folder where the temporary file is renamed to: the rename fails.
        let blocked = dir.path().join(FILE);
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(save_unsynced(dir.path(), &Table::local_only()).is_err());
        assert!(blocked.join("x").is_dir());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file is left behind: {names:?}");
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"version\": 3, \"weig").unwrap();
        match load(dir.path(), &known()) {
            Loaded::MovedAside { moved_to, .. } => assert!(moved_to.exists()),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join(FILE).exists());
        assert!(matches!(load(dir.path(), &known()), Loaded::Nothing));
    }
}
