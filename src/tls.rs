//! TLS for the webhook listener: rustls (ring), TLS 1.2 and 1.3, ALPN for HTTP/2 and
//! HTTP/1.1, and a serving certificate that is reloaded from disk when it changes
//! (cert-manager rotates it) without a restart and without touching connections in flight.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {message}")]
    BadPem { path: PathBuf, message: String },
    #[error("{path} holds no usable private key: {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate and key loaded from PEM files.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// `notAfter` of the leaf certificate, as Unix seconds.
    pub not_after: Option<i64>,
    /// A fingerprint of both files' bytes, to tell whether a reload is needed.
    pub fingerprint: u64,
}

/// Where the serving certificate and key live.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn fingerprint(parts: &[&[u8]]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for part in parts {
        part.hash(&mut hasher);
    }
    hasher.finish()
}

impl TlsFiles {
    /// The fingerprint of the files as they are on disk now.
    pub fn fingerprint(&self) -> Result<u64, TlsError> {
        Ok(fingerprint(&[&read(&self.cert)?, &read(&self.key)?]))
    }

    /// Reads, parses and checks the certificate chain and key.
    pub fn load(&self) -> Result<LoadedCert, TlsError> {
        let cert_pem = read(&self.cert)?;
        let key_pem = read(&self.key)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::BadPem {
                path: self.cert.clone(),
                message: e.to_string(),
            })?;
        let Some(leaf) = chain.first() else {
            return Err(TlsError::NoCertificate {
                path: self.cert.clone(),
            });
        };
        let not_after = x509_parser::parse_x509_certificate(leaf)
            .ok()
            .map(|(_, cert)| cert.validity().not_after.timestamp());
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
            path: self.key.clone(),
            message: e.to_string(),
        })?;
        let provider = rustls::crypto::ring::default_provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| TlsError::BadKey {
                path: self.key.clone(),
                message: e.to_string(),
            })?;
        let certified = CertifiedKey::new(chain, signing_key);
        if certified.keys_match().is_err() {
            return Err(TlsError::KeyMismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
            });
        }
        Ok(LoadedCert {
            key: Arc::new(certified),
            not_after,
            fingerprint: fingerprint(&[&cert_pem, &key_pem]),
        })
    }
}

/// Hands every new TLS connection the certificate in use now; a reload swaps it atomically.
pub struct ReloadableCert {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadableCert")
    }
}

impl ReloadableCert {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        ReloadableCert {
            current: ArcSwap::new(key),
        }
    }

    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Loads the CA that client certificates must chain to (mutual TLS).
pub fn load_client_ca(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let pem = read(path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// The rustls server configuration: TLS 1.3 and 1.2 only, ALPN `h2` then `http/1.1`, and
/// with `client_ca` only clients holding a certificate from that CA (the API server can
/// present one through its admission configuration).
pub fn server_config(
    cert: Arc<ReloadableCert>,
    client_ca: Option<rustls::RootCertStore>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
