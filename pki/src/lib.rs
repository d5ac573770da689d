//! The cluster's certificates. `boxoffice certs init` creates a cluster CA; `boxoffice certs
//! issue` gives each process a credential: a certificate the CA signed, its key, and the CA's
//! certificate, in one directory (`--tls-dir`). A certificate names one [`Role`] (node, api,
//! indexer, operator) as a subject alternative name in the reserved `.invalid` domain
//! (`api.role.boxoffice.invalid`), which no host can have; a node's and an indexer's also name
//! the hosts others reach them at. Every connection between processes is mutual TLS: both sides
//! present a credential of this CA, and each side learns the other's role from its verified
//! certificate, which decides what the peer may ask.
//!
//! Everything here is rustls with ring; certificates are ECDSA P-256.

mod ca;
mod credential;
mod files;
mod public;
mod verify;

pub use ca::{ClusterCa, Issued, CA_CERT_FILE, CA_DAYS_DEFAULT, CA_KEY_FILE, LEAF_DAYS_DEFAULT};
pub use credential::{role_of, server_name, Credential, CERT_FILE, KEY_FILE};
pub use files::{read_private, write_private};
pub use public::public_client_config;

/// What a process is to the cluster; its certificate says which, and peers act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Hosts replicas: sends Raft messages and group operations to other nodes.
    Node,
    /// An api instance: proposes users' commands and reads.
    Api,
    /// Follows the change feed into the search index; answers api instances' searches.
    Indexer,
    /// A person's command line: changes the layout, backs up, reads status.
    Operator,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Node, Role::Api, Role::Indexer, Role::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Api => "api",
            Role::Indexer => "indexer",
            Role::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The subject alternative name that carries the role.
    pub fn san(self) -> String {
        format!("{}.role.boxoffice.invalid", self.as_str())
    }

    /// Whether the role's certificate names hosts: the roles that serve connections.
    pub fn serves(self) -> bool {
        matches!(self, Role::Node | Role::Indexer)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is readable by every user (mode {mode:o}); make it the owner's only (chmod 600)")]
    WorldReadable { path: String, mode: u32 },
    #[error("{path} already exists; a cluster CA is never overwritten")]
    Exists { path: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}: not a host:port address")]
    Address(String),
    #[error("a {role} certificate needs at least one host (--host) that others reach it at")]
    NoHost { role: Role },
}

impl PkiError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
        move |source| PkiError::Io { path: path.display().to_string(), source }
    }

    pub(crate) fn invalid(path: &std::path::Path, reason: impl ToString) -> PkiError {
        PkiError::Invalid { path: path.display().to_string(), reason: reason.to_string() }
    }
}

/// The crypto provider of every configuration made here.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
