//! TLS material from PEM files, for both sides of a connection: the public listener
//! (certificate and key, TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`) and the peer links
//! (mutual TLS, both sides trusting one CA). The server accepts with it and the data plane
//! dials peers with it, so it sits below both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read certificates: {source}", path.display())]
    Cert { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("{}: no certificate in file", path.display())]
    NoCert { path: PathBuf },
    #[error("{}: cannot read private key: {source}", path.display())]
    Key { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("{} / {}: {source}", cert.display(), key.display())]
    Config { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("{}: cannot verify client certificates with it: {message}", ca.display())]
    Verifier { ca: PathBuf, message: String },
}

/// Builds the acceptor. Uses the process-wide crypto provider installed at start.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|source| TlsError::Cert { path: cert.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert { path: cert.to_owned() });
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key { path: key.to_owned(), source })?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|source| TlsError::Config { cert: cert.to_owned(), key: key.to_owned(), source })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|source| TlsError::Cert { path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert { path: path.to_owned() });
    }
    Ok(certs)
}

fn load_roots(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|source| TlsError::Config {
            cert: ca.to_owned(),
            key: ca.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// The acceptor of the `peer_tls` listener: TLS with a client certificate required,
/// signed by `ca`. Only a request that arrived this way carries hop headers that an
/// untrusted network could not have forged.
pub fn mtls_acceptor(cert: &Path, key: &Path, ca: &Path) -> Result<TlsAcceptor, TlsError> {
    let roots = load_roots(ca)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| TlsError::Verifier { ca: ca.to_owned(), message: e.to_string() })?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key { path: key.to_owned(), source })?;
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, key_der)
        .map_err(|source| TlsError::Config { cert: cert.to_owned(), key: key.to_owned(), source })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The client side of a peer link: trust `ca` only, present `cert`/`key`.
pub fn peer_client_config(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let roots = load_roots(ca)?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key { path: key.to_owned(), source })?;
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(load_certs(cert)?, key_der)
        .map_err(|source| TlsError::Config { cert: cert.to_owned(), key: key.to_owned(), source })
}
