//! Who may change things: bearer tokens from `token_env` (one token, named after the
//! variable) and `token_file` (named tokens), compared in constant time.
//!
//! Tokens are kept as SHA-256 digests and the offered token is hashed the same way, so the
//! comparison is over equal lengths and its time says nothing about either token.

use std::path::Path;

use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("admin.token_file {}: {source}", path.display())]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("admin.token_file {}: line {line}: expected `NAME TOKEN`", path.display())]
    Line { path: std::path::PathBuf, line: usize },
}

/// The accepted tokens.
#[derive(Clone, Default)]
pub(crate) struct Tokens {
    entries: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print digests, let alone tokens.
        f.debug_struct("Tokens")
            .field("names", &self.entries.iter().map(|e| &e.0).collect::<Vec<_>>())
            .finish()
    }
}

fn hash(token: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token).as_ref());
    out
}

impl Tokens {
    /// Reads `token_env` from the environment and `token_file` from disk.
    pub(crate) fn load(token_env: &str, token_file: Option<&Path>) -> Result<Tokens, AuthError> {
        let mut t = Tokens::default();
        if let Ok(v) = std::env::var(token_env) {
            let v = v.trim();
            if !v.is_empty() {
                t.add(token_env, v);
            }
        }
        if let Some(path) = token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| AuthError::Read { path: path.to_owned(), source })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(name), Some(token), None) => t.add(name, token),
                    _ => return Err(AuthError::Line { path: path.to_owned(), line: i + 1 }),
                }
            }
        }
        Ok(t)
    }

    pub(crate) fn add(&mut self, name: &str, token: &str) {
        self.entries.push((name.to_owned(), hash(token.as_bytes())));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of the token an `Authorization` value carries, if it is one of ours.
    /// Every entry is compared, so the time taken does not depend on which one matched.
    pub(crate) fn check(&self, authorization: Option<&[u8]>) -> Option<&str> {
        let value = authorization?;
        let token = value.strip_prefix(b"Bearer ").or_else(|| value.strip_prefix(b"bearer "))?;
        let offered = hash(token);
        let mut found = None;
        for (name, digest) in &self.entries {
            if bool::from(digest.ct_eq(&offered)) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_tokens_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "# operators\nalice s3cret\nfleet-bot  other-token  # the evacuate job\n")
            .unwrap();
        let t = Tokens::load("FLOWGATE_TEST_UNSET_VARIABLE", Some(&f)).unwrap();
        assert_eq!(t.check(Some(b"Bearer s3cret")), Some("alice"));
        assert_eq!(t.check(Some(b"Bearer other-token")), Some("fleet-bot"));
        assert_eq!(t.check(Some(b"Bearer s3cre")), None);
        assert_eq!(t.check(Some(b"s3cret")), None);
        assert_eq!(t.check(None), None);
        std::fs::write(&f, "lonely\n").unwrap();
        assert!(matches!(Tokens::load("X", Some(&f)), Err(AuthError::Line { line: 1, .. })));
    }
}
