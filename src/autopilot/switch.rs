//! The autopilot's persisted state: the pause switch, the region it evacuated and the end
//! of its cooldown, in one small JSON file.
//!
//! `flowgate autopilot pause` and `resume` flip the switch by writing the file (or, with
//! `--autopilot ADDR`, by asking a running autopilot to), and a running autopilot reads it
//! every round, so the switch works without stopping the process and survives a restart.
//! Writes go to a temporary file renamed over the old one: a reader never sees half.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    #[serde(default)]
    pub paused: bool,
    /// Who flipped the switch last and when (RFC 3339), for the page and the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) paused_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) switched_at: Option<String>,
    /// The region the autopilot evacuated and has not restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) evacuated: Option<String>,
    /// Unix seconds before which no new action starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cooldown_until: Option<u64>,
}

/// Why the state file could not be read or written; names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not a state file: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Where the state lives when `--state-file` is not given: beside the fleet file.
pub fn default_path(fleet: &Path) -> PathBuf {
    let mut name = fleet.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".autopilot-state.json");
    fleet.with_file_name(name)
}

/// Reads the state; a missing file is the default state (not paused, nothing evacuated).
pub fn load(path: &Path) -> Result<State, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|source| StateError::Parse { path: path.to_owned(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(source) => Err(StateError::Read { path: path.to_owned(), source }),
    }
}

/// Writes the state whole (temporary file, fsync, rename).
pub(crate) fn save(path: &Path, state: &State) -> Result<(), StateError> {
    use std::io::Write;
    let err = |source| StateError::Write { path: path.to_owned(), source };
    let text = serde_json::to_vec_pretty(state).map_err(|e| err(std::io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&text).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Reads, changes and writes back the state (the pause commands and the autopilot both
/// change only their own fields, so the window between the read and the write is small).
pub(crate) fn update(path: &Path, change: impl FnOnce(&mut State)) -> Result<State, StateError> {
    let mut s = load(path)?;
    change(&mut s);
    save(path, &s)?;
    Ok(s)
}

/// Flips the pause switch.
pub(crate) fn set_paused(path: &Path, paused: bool, by: &str) -> Result<State, StateError> {
    update(path, |s| {
        s.paused = paused;
        s.paused_by = Some(by.to_owned());
        s.switched_at = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    })
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_survives_a_reload_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(&dir.path().join("fleet.toml"));
        assert!(path.ends_with("fleet.toml.autopilot-state.json"));
        assert_eq!(load(&path).unwrap(), State::default());
        set_paused(&path, true, "test").unwrap();
        update(&path, |s| s.evacuated = Some("us-east-1".into())).unwrap();
        let s = load(&path).unwrap();
        assert!(s.paused);
        assert_eq!(s.evacuated.as_deref(), Some("us-east-1"));
        set_paused(&path, false, "test").unwrap();
        assert!(!load(&path).unwrap().paused);
        std::fs::write(&path, "{\"paused\": 1}").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()) && e.contains("not a state file"), "{e}");
    }
}
