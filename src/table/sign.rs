//! Signed tables: Ed25519 over the table's canonical JSON without its `signature`.
//!
//! With `[admin] table_keys` set, a proxy accepts a table from any path (a push, a peer's
//! catch-up, the file or state folder at start) only with a valid signature by one of
//! those keys, so a stolen admin token or a compromised peer cannot steer traffic. The
//! fleet commands sign what they push with `--signing-key FILE` (or the file named by
//! `FLOWGATE_SIGNING_KEY`); `flowgate keygen --out FILE` makes the pair: `FILE` holds
//! the PKCS#8 private key and `FILE.pub` the public key, each one line of base64.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::{Table, TableError};

/// What the signature covers: the table as JSON, `signature` left out.
fn payload(t: &Table) -> Vec<u8> {
    let mut unsigned = t.clone();
    unsigned.signature = None;
    serde_json::to_vec(&unsigned).unwrap_or_default()
}

/// A private key, loaded.
pub(crate) struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    pub(crate) fn load(path: &Path) -> Result<SigningKey, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let der = B64
            .decode(text.trim())
            .map_err(|e| format!("{}: not a flowgate signing key (base64 of PKCS#8): {e}", path.display()))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| format!("{}: not an Ed25519 PKCS#8 key: {e}", path.display()))?;
        Ok(SigningKey(pair))
    }

    /// Signs `t` in place (replacing any signature it had).
    pub(crate) fn sign(&self, t: &mut Table) {
        t.signature = None;
        t.signature = Some(B64.encode(self.0.sign(&payload(t)).as_ref()));
    }
}

/// Writes a new key pair to `out` (mode 0600) and `out.pub`; returns the public key.
pub(crate) fn keygen(out: &Path) -> Result<String, String> {
    let rng = ring::rand::SystemRandom::new();
    let der = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| format!("cannot make a key: {e}"))?;
    let pair =
        Ed25519KeyPair::from_pkcs8(der.as_ref()).map_err(|e| format!("cannot read the new key: {e}"))?;
    let public = B64.encode(pair.public_key().as_ref());
    write_private(out, &B64.encode(der.as_ref()))?;
    let mut pub_path = out.as_os_str().to_owned();
    pub_path.push(".pub");
    std::fs::write(&pub_path, format!("{public}\n"))
        .map_err(|e| format!("{}: cannot write: {e}", Path::new(&pub_path).display()))?;
    Ok(public)
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
            format!("{}: cannot create (an existing key is never overwritten): {e}", path.display())
        })?;
    f.write_all(format!("{text}\n").as_bytes()).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

/// Accepts `t` only with a valid signature by one of `keys` (no keys: anything goes).
pub(crate) fn verify(t: &Table, keys: &[String]) -> Result<(), TableError> {
    if keys.is_empty() {
        return Ok(());
    }
    let bad = |m: &str| TableError { field: "signature".into(), message: m.into() };
    let sig = t
        .signature
        .as_deref()
        .ok_or_else(|| bad("this proxy accepts only signed tables ([admin] table_keys)"))?;
    let sig = B64.decode(sig).map_err(|_| bad("not base64"))?;
    let msg = payload(t);
    let ok = keys
        .iter()
        .filter_map(|k| B64.decode(k.trim()).ok())
        .any(|k| UnparsedPublicKey::new(&ED25519, k).verify(&msg, &sig).is_ok());
    if ok {
        Ok(())
    } else {
        Err(bad("not signed by any of [admin] table_keys (or the table was changed after signing)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tables_verify_and_anything_else_is_refused_naming_signature() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let public = keygen(&path).unwrap();
        assert!(keygen(&path).is_err(), "an existing key is never overwritten");
        let other = dir.path().join("other");
        let other_public = keygen(&other).unwrap();
        let key = SigningKey::load(&path).unwrap();
        assert_eq!(B64.encode(key.0.public_key().as_ref()), public);
        assert_eq!(std::fs::read_to_string(dir.path().join("key.pub")).unwrap().trim(), public);
        let keys = vec![public.clone()];
        let mut t = Table::local_only();
        t.version = 3;
        assert_eq!(verify(&t, &keys).unwrap_err().field, "signature", "unsigned");
        key.sign(&mut t);
        verify(&t, &keys).unwrap();
        // Survives the JSON round trip a push makes.
        let back = Table::parse(&serde_json::to_vec(&t).unwrap()).unwrap();
        verify(&back, &keys).unwrap();
        let mut tampered = t.clone();
        tampered.version = 4;
        assert_eq!(verify(&tampered, &keys).unwrap_err().field, "signature");
        let mut by_other = t.clone();
        SigningKey::load(&other).unwrap().sign(&mut by_other);
        assert!(verify(&by_other, &keys).is_err());
        verify(&by_other, &[public, other_public]).unwrap();
        assert!(verify(&t, &[]).is_ok(), "no keys: unsigned tables are fine");
    }
}
