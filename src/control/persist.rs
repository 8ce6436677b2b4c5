//! The last applied table on disk, so that a restart serves what was pushed.
//!
//! Written atomically ([`write_atomically`]): a temporary file in the same folder, fsync,
//! rename over the old one, fsync of the folder. A crash at any point leaves either the
//! old table or the new one, never half of one. A file that cannot be read back is moved
//! aside, not deleted: an operator may want to see what was there.

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

/// Writes `table` as the state file of `dir`, durably.
pub(crate) fn save(dir: &Path, table: &Table) -> Result<(), PersistError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let bytes = serde_json::to_vec_pretty(table)
        .map_err(|source| PersistError::Encode { what: "the table", source })?;
    write_atomically(&dir.join(FILE), &bytes)
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees the old file or the new
/// one, never half of one: a temporary file in the same folder, fsync, rename over the old
/// one, fsync of the folder. The folder must exist.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    // The rename is durable only once the folder itself is synced.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
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
        save(dir.path(), &t).unwrap();
        match load(dir.path(), &known()) {
            Loaded::Table(back) => assert_eq!(back, t),
            other => panic!("{other:?}"),
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
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
