//! The client side of TLS (rustls, ring provider): the agent's CA from
//! `--cacert` (else the system's CA bundle) and, for mutual TLS, a client
//! certificate and key.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::transport::TlsFiles;

/// System CA bundles, Debian's and openEuler's (and SUSE's) places.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
];

fn certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{flag} {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {shown}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {shown}: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----`)"
        ));
    }
    Ok(certs)
}

/// The rustls client config for these files; errors name the flag and file.
pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &files.cacert {
        Some(p) => {
            for c in certs("--cacert", p)? {
                roots
                    .add(c)
                    .map_err(|e| format!("--cacert {}: {e}", p.display()))?;
            }
        }
        None => {
            let bundle = SYSTEM_BUNDLES
                .iter()
                .map(Path::new)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    format!(
                        "https:// without --cacert needs the system CA bundle, and none is there (looked for {})",
                        SYSTEM_BUNDLES.join(", ")
                    )
                })?;
            let (added, _ignored) = roots.add_parsable_certificates(certs("CA bundle", bundle)?);
            if added == 0 {
                return Err(format!(
                    "CA bundle {}: no usable certificate",
                    bundle.display()
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    match (&files.cert, &files.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(c), Some(k)) => {
            let chain = certs("--cert", c)?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| {
                format!(
                    "--key {}: no PEM private key read ({e}); expected `-----BEGIN PRIVATE KEY-----` (or RSA/EC)",
                    k.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--cert {} with --key {}: {e}", c.display(), k.display()))
        }
        _ => Err("--cert and --key go together (mutual TLS needs both)".into()),
    }
}
