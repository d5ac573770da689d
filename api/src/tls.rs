//! TLS for the api's own HTTPS clients (the OIDC issuer): rustls with ring, the public roots of
//! `webpki-roots`, and optionally a deployment's own CA from a PEM file.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct TlsError(#[from] pki::PkiError);

/// A client configuration that trusts the public roots and the certificates in `ca_file`.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    Ok(pki::public_client_config(ca_file)?)
}
