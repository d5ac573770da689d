//! What stops a `boxoffice` command, one enum per boundary: starting and serving a process
//! ([`ServeError`]), and the command line as a whole ([`CliError`]).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a long-running command (`dev`, `node`, `api`, `indexer`) could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("storage: {0}")]
    Storage(#[from] raft_store::KvError),
    #[error("search index: {0}")]
    Index(#[from] indexer::IndexError),
    #[error(transparent)]
    Webhooks(#[from] indexer::DispatchError),
    #[error(transparent)]
    Node(#[from] node::NodeError),
    #[error("demo data: {0}")]
    Demo(#[from] crate::demo::SeedError),
    #[error("listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("api configuration: {0}")]
    Api(#[from] api::ConfigError),
    #[error(transparent)]
    SecretFile(#[from] crate::secrets::SecretFileError),
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    #[error("TLS credential: {0}")]
    Credential(#[from] pki::PkiError),
    #[error("give {what} ({flags})")]
    MissingSecret { what: &'static str, flags: &'static str },
    #[error("dev tokens mint anyone's tokens: they are served only on a loopback address, not {listen}")]
    DevTokensOffLoopback { listen: SocketAddr },
    #[error("restore: {0}")]
    Restore(#[from] crate::restore::RestoreCliError),
    /// The storage failed a flush and refuses every later one: stop, so that the supervisor
    /// restarts the process on what was durable.
    #[error("storage failed: {0}; stopping so that a restart recovers what was durable")]
    StorageFailed(String),
}

impl ServeError {
    pub fn data_dir(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ServeError {
        let path = path.into();
        move |source| ServeError::DataDir { path, source }
    }

    pub fn listen(addr: SocketAddr) -> impl FnOnce(std::io::Error) -> ServeError {
        move |source| ServeError::Listen { addr, source }
    }
}

/// Why `boxoffice` exits with a failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster_cli::ClusterCliError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error(transparent)]
    Restore(#[from] crate::restore::RestoreCliError),
    #[error("metrics: {0}")]
    Metrics(#[from] crate::telemetry::MetricsError),
    #[error("search index: {0}")]
    Index(#[from] indexer::IndexError),
    #[error("give the Elasticsearch URL (--elasticsearch-url)")]
    NoElasticsearch,
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Certs(#[from] pki::PkiError),
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
}
