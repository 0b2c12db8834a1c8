//! TLS to the broker (`stomps://`, `stomp+ssl://`) with rustls.
//!
//! Trust roots are the public web roots (webpki-roots) plus, when given, the
//! certificates of one PEM file (a private CA, or the test CA `scripts/brokers.sh`
//! generates for ActiveMQ's `stomp+ssl://127.0.0.1:61614`). The server name checked is
//! the `--relay` host, so an IP literal must be in the certificate's IP SANs.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// The trust roots for `stomps://` could not be loaded: the file and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRootsError(pub String);

impl std::fmt::Display for TrustRootsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TrustRootsError {}

/// A client configuration trusting the web roots and the certificates in `ca`.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TrustRootsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| TrustRootsError(format!("{}: {e}", path.display())))?
        {
            let cert = cert.map_err(|e| TrustRootsError(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| TrustRootsError(format!("{}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(TrustRootsError(format!(
                "{}: no PEM certificate in the file",
                path.display()
            )));
        }
    }
    // ring is named explicitly: another crate in the build may enable aws-lc-rs too,
    // and then rustls cannot pick a default provider on its own.
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustRootsError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_ca_file_is_a_clear_error() {
        let err = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let empty = std::env::temp_dir().join(format!("relay-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_file(empty).unwrap();
        assert!(client_config(None).is_ok());
    }
}
