//! TLS to services outside the cluster (an OIDC issuer, Stripe, webhook endpoints): the public
//! roots of `webpki-roots`, and a deployment's own CA from a PEM file.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::PkiError;

/// A client configuration that trusts the public roots and the certificates in `ca_file`.
pub fn public_client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| PkiError::invalid(path, e))? {
            roots.add(cert.map_err(|e| PkiError::invalid(path, e))?).map_err(|e| PkiError::invalid(path, e))?;
            added += 1;
        }
        if added == 0 {
            return Err(PkiError::invalid(path, "no certificate in it"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
