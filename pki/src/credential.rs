//! A process's credential (`--tls-dir`: `cert.pem`, `key.pem`, `ca.pem`) and the rustls
//! configurations made from it: servers require a client certificate of the cluster CA, clients
//! present theirs and trust only that CA.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::files::read_private;
use crate::verify::RoleVerifier;
use crate::{provider, PkiError, Role, CA_CERT_FILE};

pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// The role a certificate names, if exactly one. The caller has verified the certificate.
pub fn role_of(cert: &CertificateDer<'_>) -> Option<Role> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    let mut named = Role::ALL.into_iter().filter(|role| {
        let san = ServerName::try_from(role.san()).expect("a role's name is a valid DNS name");
        cert.verify_is_valid_for_subject_name(&san).is_ok()
    });
    match (named.next(), named.next()) {
        (Some(role), None) => Some(role),
        _ => None,
    }
}

/// The name a client checks a server's certificate against: the host of `host:port`.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, PkiError> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| PkiError::Address(addr.to_owned()))?;
    if port.parse::<u16>().is_err() {
        return Err(PkiError::Address(addr.to_owned()));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| PkiError::Address(addr.to_owned()))
}

pub struct Credential {
    role: Role,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("role", &self.role).finish_non_exhaustive()
    }
}

fn certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| PkiError::invalid(path, e))?;
    if certs.is_empty() {
        return Err(PkiError::invalid(path, "no certificate in it"));
    }
    Ok(certs)
}

impl Credential {
    /// The credential in `dir`; its key must not be world-readable.
    pub fn load(dir: &Path) -> Result<Credential, PkiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(PkiError::io(&path))
        };
        let key_path = dir.join(KEY_FILE);
        let key = read_private(&key_path)?;
        Credential::parse(dir, &read(CERT_FILE)?, &key, &read(CA_CERT_FILE)?)
    }

    /// A credential from PEM text (`dir` only names it in errors).
    pub fn from_pem(cert: &str, key: &str, ca: &str) -> Result<Credential, PkiError> {
        Credential::parse(Path::new("<memory>"), cert.as_bytes(), key.as_bytes(), ca.as_bytes())
    }

    fn parse(dir: &Path, cert: &[u8], key: &[u8], ca: &[u8]) -> Result<Credential, PkiError> {
        let cert_path = dir.join(CERT_FILE);
        let chain = certs(&cert_path, cert)?;
        let key_path = dir.join(KEY_FILE);
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| PkiError::invalid(&key_path, e))?;
        let ca_path = dir.join(CA_CERT_FILE);
        let mut roots = RootCertStore::empty();
        for ca in certs(&ca_path, ca)? {
            roots.add(ca).map_err(|e| PkiError::invalid(&ca_path, e))?;
        }
        let role =
            role_of(&chain[0]).ok_or_else(|| PkiError::invalid(&cert_path, "names no role of a boxoffice cluster"))?;
        let credential = Credential { role, chain, key, roots: Arc::new(roots) };
        // A certificate of another CA, or a key of another certificate, fails here, at start-up,
        // rather than at every peer's handshake.
        credential.check_signed_by_ca(&cert_path)?;
        credential.server_config_unchecked()?;
        Ok(credential)
    }

    fn check_signed_by_ca(&self, path: &Path) -> Result<(), PkiError> {
        // Every role's certificate is a client's (nodes and indexers serve too): verified as a
        // server of this CA would verify it.
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| PkiError::invalid(path, e))?;
        verifier
            .verify_client_cert(&self.chain[0], &self.chain[1..], rustls::pki_types::UnixTime::now())
            .map_err(|e| PkiError::invalid(path, e))?;
        Ok(())
    }

    pub fn role(&self) -> Role {
        self.role
    }

    fn server_config_unchecked(&self) -> Result<ServerConfig, PkiError> {
        let clients = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))?;
        Ok(ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(clients)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?)
    }

    /// A server that requires a client certificate of the cluster CA (mutual TLS).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        self.server_config_unchecked().map(Arc::new)
    }

    /// A client that presents this credential and trusts only the cluster CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, PkiError> {
        Ok(Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(self.roots.clone())
                .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?,
        ))
    }

    /// As [`Credential::client_config`], and the server's certificate must name `server`'s role:
    /// an api dialing a node accepts only a node's certificate there.
    pub fn client_config_for(&self, server: Role) -> Result<Arc<ClientConfig>, PkiError> {
        let verifier = RoleVerifier::new(self.roots.clone(), server)?;
        Ok(Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use rustls::{ClientConnection, ServerConnection};

    use super::*;
    use crate::{ClusterCa, Issued};

    fn credential(issued: &Issued) -> Credential {
        Credential::from_pem(&issued.cert_pem, &issued.key_pem, &issued.ca_pem).unwrap()
    }

    /// A handshake in memory: the client's and the server's error, and the roles each saw.
    fn handshake(client: &Credential, server: &Credential, name: &str) -> Result<(Option<Role>, Option<Role>), String> {
        handshake_with(client.client_config().unwrap(), server, name)
    }

    fn handshake_with(
        client: Arc<rustls::ClientConfig>,
        server: &Credential,
        name: &str,
    ) -> Result<(Option<Role>, Option<Role>), String> {
        let mut c = ClientConnection::new(client, server_name(name).unwrap()).unwrap();
        let mut s = ServerConnection::new(server.server_config().unwrap()).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets().map_err(|e| format!("server: {e}"))?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets().map_err(|e| format!("client: {e}"))?;
            if !c.is_handshaking() && !s.is_handshaking() {
                let seen_by_client = c.peer_certificates().and_then(|certs| role_of(&certs[0]));
                let seen_by_server = s.peer_certificates().and_then(|certs| role_of(&certs[0]));
                return Ok((seen_by_client, seen_by_server));
            }
        }
        Err("no handshake".into())
    }

    #[test]
    fn processes_of_one_ca_see_each_others_roles_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::create(&dir.path().join("ca"), 30).unwrap();
        let node =
            credential(&ca.issue(Role::Node, "node-1", &["127.0.0.1".into(), "node-1.internal".into()], 30).unwrap());
        let api = credential(&ca.issue(Role::Api, "api-1", &[], 30).unwrap());
        assert_eq!((node.role(), api.role()), (Role::Node, Role::Api));

        assert_eq!(handshake(&api, &node, "127.0.0.1:7001"), Ok((Some(Role::Node), Some(Role::Api))));
        assert_eq!(handshake(&node, &node, "node-1.internal:7001"), Ok((Some(Role::Node), Some(Role::Node))));
        // The server's certificate must name the host the client dialed.
        assert!(handshake(&api, &node, "10.9.9.9:7001").unwrap_err().starts_with("client"));
        // A client that expects a node refuses another role's server at the right host.
        let indexer = credential(&ca.issue(Role::Indexer, "search", &["127.0.0.1".into()], 30).unwrap());
        let to_node = |server: &Credential| {
            let config = api.client_config_for(Role::Node).unwrap();
            handshake_with(config, server, "127.0.0.1:7001")
        };
        assert_eq!(to_node(&node), Ok((Some(Role::Node), Some(Role::Api))));
        let refused = to_node(&indexer).unwrap_err();
        assert!(refused.starts_with("client") && refused.contains("not the node role"), "{refused}");

        // A credential of another CA is refused by the server, and refuses the server.
        let other = ClusterCa::create(&dir.path().join("other"), 30).unwrap();
        let stranger = credential(&other.issue(Role::Operator, "eve", &[], 30).unwrap());
        assert!(handshake(&stranger, &node, "127.0.0.1:7001").is_err());
        let fake_node = credential(&other.issue(Role::Node, "node-1", &["127.0.0.1".into()], 30).unwrap());
        assert!(handshake(&api, &fake_node, "127.0.0.1:7001").unwrap_err().starts_with("client"));
    }

    #[test]
    fn a_credential_is_checked_when_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::create(&dir.path().join("ca"), 30).unwrap();
        assert!(matches!(ClusterCa::create(&dir.path().join("ca"), 30), Err(PkiError::Exists { .. })));
        let issued = ca.issue(Role::Indexer, "indexer", &["search.internal".into()], 30).unwrap();
        issued.write(&dir.path().join("indexer")).unwrap();
        assert_eq!(Credential::load(&dir.path().join("indexer")).unwrap().role(), Role::Indexer);
        // Reloaded, the CA signs certificates that chain to the same root.
        let again = ClusterCa::load(&dir.path().join("ca")).unwrap();
        let op = credential(&again.issue(Role::Operator, "ops", &[], 30).unwrap());
        assert_eq!(op.role(), Role::Operator);

        // A serving role needs a host; a key of another certificate, or another CA, is refused.
        assert!(matches!(ca.issue(Role::Node, "n", &[], 30), Err(PkiError::NoHost { .. })));
        let other = ca.issue(Role::Api, "api", &[], 30).unwrap();
        assert!(Credential::from_pem(&issued.cert_pem, &other.key_pem, &issued.ca_pem).is_err());
        let foreign = ClusterCa::create(&dir.path().join("foreign"), 30).unwrap();
        assert!(Credential::from_pem(&issued.cert_pem, &issued.key_pem, foreign.cert_pem()).is_err());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.path().join("indexer").join(KEY_FILE);
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(Credential::load(&dir.path().join("indexer")), Err(PkiError::WorldReadable { .. })));
        }
    }

    #[test]
    fn a_server_name_is_the_host_of_an_address() {
        assert_eq!(server_name("10.0.0.1:7001").unwrap(), ServerName::try_from("10.0.0.1").unwrap());
        assert_eq!(server_name("[::1]:7001").unwrap(), ServerName::try_from("::1").unwrap());
        assert_eq!(server_name("node-1.internal:7001").unwrap(), ServerName::try_from("node-1.internal").unwrap());
        assert!(server_name("no-port").is_err());
    }
}
