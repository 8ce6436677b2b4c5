//! The addresses a proxy actually bound (port 0 in the config picks a free one), and
//! `serve --addr-file`, which publishes them so that a script or a test finds the ports
//! without parsing logs.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ServeError;
use crate::control::persist;

/// The addresses actually bound, by listener; `None` for one not configured. Also the
/// `--addr-file` format: a JSON object with these field names, each address a string
/// (`"127.0.0.1:8080"`) or `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundAddrs {
    pub public: SocketAddr,
    pub public_tls: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    pub peer_tls: Option<SocketAddr>,
    pub admin: SocketAddr,
}

impl BoundAddrs {
    /// Writes the addresses to `path` atomically (a temporary file in the same folder,
    /// then a rename): whoever polls for the file never reads half of it.
    pub fn write_file(&self, path: &Path) -> Result<(), ServeError> {
        let bytes = serde_json::to_vec(self)
            .map_err(|source| persist::PersistError::Encode { what: "the bound addresses", source })
            .map_err(ServeError::AddrFile)?;
        persist::write_atomically(path, &bytes).map_err(ServeError::AddrFile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_file_reads_back_with_nulls_for_missing_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addrs.json");
        let addrs = BoundAddrs {
            public: "127.0.0.1:1234".parse().unwrap(),
            public_tls: None,
            peer: Some("127.0.0.1:2345".parse().unwrap()),
            peer_tls: None,
            admin: "127.0.0.1:3456".parse().unwrap(),
        };
        addrs.write_file(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            r#"{"public":"127.0.0.1:1234","public_tls":null,"peer":"127.0.0.1:2345","peer_tls":null,"admin":"127.0.0.1:3456"}"#
        );
        assert_eq!(serde_json::from_str::<BoundAddrs>(&text).unwrap(), addrs);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("addrs.json");
        let addrs = BoundAddrs {
            public: "127.0.0.1:1".parse().unwrap(),
            public_tls: None,
            peer: None,
            peer_tls: None,
            admin: "127.0.0.1:2".parse().unwrap(),
        };
        let err = addrs.write_file(&path).unwrap_err().to_string();
        assert!(err.starts_with("--addr-file: ") && err.contains("absent"), "{err}");
    }
}
