//! A client's check of the server it reached: the certificate chains to the cluster CA and names
//! the host dialed (rustls's own verifier), and names the role the client meant to reach. Without
//! the role check an api that dials a node's address would accept any process of the cluster
//! answering there — an indexer's or an operator's credential — as the node.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use crate::{provider, role_of, Role};

#[derive(Debug)]
pub(crate) struct RoleVerifier {
    inner: Arc<WebPkiServerVerifier>,
    role: Role,
}

impl RoleVerifier {
    pub(crate) fn new(roots: Arc<RootCertStore>, role: Role) -> Result<RoleVerifier, Error> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| Error::General(e.to_string()))?;
        Ok(RoleVerifier { inner, role })
    }
}

impl ServerCertVerifier for RoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        match role_of(end_entity) {
            Some(role) if role == self.role => Ok(verified),
            other => {
                let named = other.map_or("no role".to_owned(), |r| format!("the {r} role"));
                let why = format!("the server's certificate names {named}, not the {} role", self.role);
                Err(Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(RoleMismatch(why))))))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RoleMismatch(String);
