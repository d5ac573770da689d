//! The crate's one error type.

use seams::SearchError;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The embedded index failed to read or write (I/O, a corrupt segment, a full disk).
    #[error("embedded index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("embedded index directory: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("embedded index: {0}")]
    Io(#[from] std::io::Error),
    /// A stored document or checkpoint does not decode: stop rather than serve or overwrite it.
    #[error("corrupt index record: {0}")]
    Corrupt(String),
    /// Elasticsearch could not be reached, or kept answering 429 or 5xx.
    #[error("elasticsearch is unavailable: {0}")]
    Unavailable(String),
    /// Elasticsearch refused a request for a reason a retry will not fix (mapping, auth, syntax).
    #[error("elasticsearch refused the request ({status}): {detail}")]
    Rejected { status: u16, detail: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The HTTP client of a remote index could not be built (its TLS backend failed to load).
    #[error("search client: {0}")]
    Client(#[from] reqwest::Error),
    /// An earlier write panicked while holding the writer; the process should restart.
    #[error("the index writer was poisoned by a panic")]
    Poisoned,
    /// A blocking task panicked or was cancelled.
    #[error("index task failed: {0}")]
    Task(String),
}

impl From<IndexError> for SearchError {
    fn from(e: IndexError) -> SearchError {
        SearchError::Unavailable(e.to_string())
    }
}

impl From<tokio::task::JoinError> for IndexError {
    fn from(e: tokio::task::JoinError) -> IndexError {
        IndexError::Task(e.to_string())
    }
}
