//! The last applied table on disk, so that a restart serves what was pushed.
//!
//! A push replaces the file ([`save_unsynced`]) before it is answered, so a process crash
//! at any point leaves the old table or the new one, never half of one, and an acknowledged
//! table survives `kill -9` (the page cache outlives the process). A table that fits in one
//! page is written over the file in place, with one write the kernel copies whole or not at
//! all (a new file and a rename cost a push most of its CPU: inode creation, block
//! allocation, and the freeing of the replaced file's blocks); a larger one goes to a
//! temporary file in the same folder, renamed over the old one. Making it survive power
//! loss too ([`sync`]: fsync of the file and the folder) is left to
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

/// Tables up to this size are written over the state file in place: the write then falls
/// in the file's first page, which the kernel copies whole or not at all, so neither a
/// process crash nor a reader that starts at the file's beginning sees half of it.
const IN_PLACE_MAX: usize = 4096;

/// The state file the last save wrote, still open, so that the next save can write over it
/// in place; it is used only while the folder's `table.json` is still that very file.
pub(crate) struct Kept {
    file: std::fs::File,
    dev: u64,
    ino: u64,
}

/// Replaces the state file of `dir` with `table`, whole, without waiting for the disk:
/// what a process crash cannot undo, but power loss can until [`sync`]. Returns the file
/// and what was written, for [`sync`] or a rewrite. `kept` is the file the last save left
/// (updated here), for a write in place.
///
/// Also returns the file a rename replaced, still open: on a folder mounted with `discard`,
/// the last close of a replaced file frees its blocks with a synchronous discard (measured:
/// most of a push's time), so whoever closes it pays that; the caller hands it to a
/// thread that can wait.
pub(crate) fn save_unsynced(
    dir: &Path,
    table: &Table,
    kept: &mut Option<Kept>,
) -> Result<(PathBuf, Vec<u8>, Option<std::fs::File>), PersistError> {
    let bytes = serde_json::to_vec_pretty(table)
        .map_err(|source| PersistError::Encode { what: "the table", source })?;
    let path = dir.join(FILE);
    if let Some(k) = kept.as_ref()
        && bytes.len() <= IN_PLACE_MAX
    {
        match write_in_place(k, &path, &bytes) {
            Ok(true) => return Ok((path, bytes, None)),
            Ok(false) => {}
            // Nothing was written (one page goes whole or not at all): the rename below
            // replaces the file, or refuses the push with the old table still there.
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot rewrite the state file in place")
            }
        }
    }
    *kept = None;
    let replaced = std::fs::File::open(&path).ok();
    // The folder is made only when the write finds it missing: every push after the first
    // saves the two system calls of checking for it.
    let written = match replace(&path, &bytes, false) {
        Err(PersistError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() =>
        {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            replace(&path, &bytes, false)?
        }
        written => written?,
    };
    *kept = keep(written);
    Ok((path, bytes, replaced))
}

#[cfg(unix)]
fn keep(file: std::fs::File) -> Option<Kept> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().ok()?;
    Some(Kept { dev: m.dev(), ino: m.ino(), file })
}

#[cfg(not(unix))]
fn keep(_: std::fs::File) -> Option<Kept> {
    None
}

/// Writes `bytes` over `k` from its start, if `path` is still that file and all of it fits
/// in its first page; `Ok(false)` when not (replaced by someone, grown past a page), so the
/// caller renames a new file in. A shorter table is padded with spaces to the old length
/// (JSON ignores trailing whitespace): the one write never leaves the old tail behind.
#[cfg(unix)]
fn write_in_place(k: &Kept, path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let now = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let old = usize::try_from(now.len()).unwrap_or(usize::MAX);
    if (now.dev(), now.ino()) != (k.dev, k.ino) || old > IN_PLACE_MAX {
        return Ok(false);
    }
    let padded;
    let out = if bytes.len() < old {
        let mut p = Vec::with_capacity(old);
        p.extend_from_slice(bytes);
        p.resize(old, b' ');
        padded = p;
        &padded[..]
    } else {
        bytes
    };
    let n = k.file.write_at(out, 0)?;
    if n != out.len() {
        return Err(std::io::Error::other(format!("short write: {n} of {} bytes", out.len())));
    }
    Ok(true)
}

#[cfg(not(unix))]
fn write_in_place(_: &Kept, _: &Path, _: &[u8]) -> std::io::Result<bool> {
    Ok(false)
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
    drop(replace(path, bytes, true)?);
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
fn replace(path: &Path, bytes: &[u8], durable: bool) -> Result<std::fs::File, PersistError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = folder(path).join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        preallocate(&f, bytes.len());
        f.write_all(bytes).map_err(io(&tmp))?;
        if durable {
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io(path))?;
        Ok(f)
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
        let (path, _, _) = save_unsynced(dir.path(), &t, &mut None).unwrap();
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
        let (path, _, replaced) = save_unsynced(&nested, &t, &mut None).unwrap();
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
        assert!(save_unsynced(dir.path(), &Table::local_only(), &mut None).is_err());
        assert!(blocked.join("x").is_dir());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file is left behind: {names:?}");
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    fn loaded(dir: &Path) -> Table {
        match load(dir, &known()) {
            Loaded::Table(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_small_table_is_written_over_the_same_file_and_a_shorter_one_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut kept = None;
        let mut t = Table::local_only();
        t.version = 1;
        t.note = Some("a note long enough to make the first file the longer one".into());
        let (path, _, _) = save_unsynced(dir.path(), &t, &mut kept).unwrap();
        let first = inode(&path);
        let long = std::fs::metadata(&path).unwrap().len();
        t.version = 2;
        t.note = None;
        let (_, bytes, replaced) = save_unsynced(dir.path(), &t, &mut kept).unwrap();
        assert!(replaced.is_none(), "nothing was replaced");
        assert_eq!(inode(&path), first, "written in place, not renamed over");
        assert!((bytes.len() as u64) < long);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), long, "padded, not truncated");
        assert_eq!(loaded(dir.path()), t, "the padding is whitespace");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["table.json"], "no other file");
    }

    #[test]
    fn a_file_replaced_from_outside_is_replaced_again_not_written_into() {
        let dir = tempfile::tempdir().unwrap();
        let mut kept = None;
        let mut t = Table::local_only();
        t.version = 1;
        let (path, _, _) = save_unsynced(dir.path(), &t, &mut kept).unwrap();
        // An operator puts another file in its place; the one kept open is now unlinked.
        let theirs = dir.path().join("theirs");
        std::fs::write(&theirs, b"{\"version\": 7}").unwrap();
        std::fs::rename(&theirs, &path).unwrap();
        let outside = inode(&path);
        t.version = 8;
        save_unsynced(dir.path(), &t, &mut kept).unwrap();
        assert_ne!(inode(&path), outside, "renamed over, so a hard link to theirs keeps their bytes");
        assert_eq!(loaded(dir.path()), t);
        // And the file it renamed in is the one kept for the next save.
        let now = inode(&path);
        t.version = 9;
        save_unsynced(dir.path(), &t, &mut kept).unwrap();
        assert_eq!(inode(&path), now);
        assert_eq!(loaded(dir.path()), t);
    }

    #[test]
    fn a_table_larger_than_a_page_is_renamed_in_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut kept = None;
        let mut t = Table::local_only();
        t.version = 1;
        let (path, _, _) = save_unsynced(dir.path(), &t, &mut kept).unwrap();
        let small = inode(&path);
        t.version = 2;
        t.note = Some("x".repeat(IN_PLACE_MAX));
        let (_, bytes, replaced) = save_unsynced(dir.path(), &t, &mut kept).unwrap();
        assert!(bytes.len() > IN_PLACE_MAX);
        assert!(replaced.is_some(), "the old file is handed back for its close");
        assert_ne!(inode(&path), small);
        assert_eq!(loaded(dir.path()), t);
        // Back to a small one: the file is over a page long, so it is replaced, not padded.
        t.version = 3;
        t.note = None;
        let (_, bytes, _) = save_unsynced(dir.path(), &t, &mut kept).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes.len() as u64);
        assert_eq!(loaded(dir.path()), t);
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
