//! `fluxgate certs`: a CA and a serving certificate for the webhook (ECDSA P-256: an RSA-2048
//! signature costs about 13 times more CPU per TLS handshake).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("at least one --dns name or --ip address is needed")]
    NoNames,
}

/// What to put in the serving certificate.
#[derive(Debug, Clone)]
pub struct CertRequest {
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub valid_days: i64,
}

/// The files `fluxgate certs` writes into its output directory.
pub struct CertFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn in_dir(dir: &Path) -> Self {
        CertFiles {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    pub fn all_exist(&self) -> bool {
        [&self.ca_cert, &self.ca_key, &self.cert, &self.key]
            .iter()
            .all(|p| p.is_file())
    }
}

/// PEM text of a generated CA and serving certificate.
pub struct GeneratedCerts {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl GeneratedCerts {
    /// The `caBundle` of a webhook configuration: the CA certificate, PEM, base64-encoded.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_cert_pem.as_bytes())
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks that are behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// Makes a CA and a serving certificate signed by it.
pub fn generate(request: &CertRequest) -> Result<GeneratedCerts, CertsError> {
    if request.dns_names.is_empty() && request.ips.is_empty() {
        return Err(CertsError::NoNames);
    }
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut ca_dn = DistinguishedName::new();
    ca_dn.push(DnType::CommonName, "fluxgate webhook CA");
    ca_params.distinguished_name = ca_dn;
    // The CA outlives the serving certificates it signs, so they can be renewed under it.
    validity(&mut ca_params, request.valid_days.saturating_mul(3));
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_cert_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(request.dns_names.clone())?;
    params
        .subject_alt_names
        .extend(request.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let mut dn = DistinguishedName::new();
    let common_name = request
        .dns_names
        .first()
        .cloned()
        .or_else(|| request.ips.first().map(|ip| ip.to_string()))
        .unwrap_or_default();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, request.valid_days);
    let cert = params.signed_by(&key, &issuer)?;

    Ok(GeneratedCerts {
        ca_cert_pem,
        ca_key_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertsError> {
    let err = |source| CertsError::Write {
        path: path.to_path_buf(),
        source,
    };
    // Write to a temporary name and rename, so a server watching the files never reads half
    // a certificate.
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut file = options.open(&tmp).map_err(err)?;
        file.write_all(contents.as_bytes()).map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

/// Writes generated certificates into `dir` (created if missing); keys are readable by the
/// owner only.
pub fn write_to(dir: &Path, certs: &GeneratedCerts) -> Result<CertFiles, CertsError> {
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = CertFiles::in_dir(dir);
    write(&files.ca_cert, &certs.ca_cert_pem, false)?;
    write(&files.ca_key, &certs.ca_key_pem, true)?;
    write(&files.key, &certs.key_pem, true)?;
    write(&files.cert, &certs.cert_pem, false)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_names_the_service_and_loads_for_tls() {
        let certs = generate(&CertRequest {
            dns_names: vec!["fluxgate.fluxgate-system.svc".into()],
            ips: vec!["127.0.0.1".parse().expect("ip")],
            valid_days: 365,
        })
        .expect("generates");
        let dir = std::env::temp_dir().join(format!("fluxgate-certs-{}", std::process::id()));
        let files = write_to(&dir, &certs).expect("writes");
        let loaded = crate::tls::TlsFiles {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }
        .load()
        .expect("loads");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let not_after = loaded.not_after.expect("has an expiry");
        assert!(not_after > now + 364 * 86400 && not_after < now + 366 * 86400);
        assert!(!certs.ca_bundle().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_certificate_needs_a_name() {
        let err = generate(&CertRequest {
            dns_names: vec![],
            ips: vec![],
            valid_days: 1,
        });
        assert!(matches!(err, Err(CertsError::NoNames)));
    }
}
