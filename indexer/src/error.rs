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
    /// A search answered from some shards only (`_shards.failed > 0`, or timed out): not served,
    /// since the page and its cursor would silently leave out what the other shards hold.
    #[error("elasticsearch answered from {failed} of {total} shards failing (timed out: {timed_out}): {reason}")]
    Partial { failed: u64, total: u64, timed_out: bool, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The indexer's search is served over mutual TLS only.
    #[error("the indexer's URL {0} is not https://: its search is served over TLS only")]
    NotHttps(String),
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

/// Shown to clients for a query Elasticsearch refused: its own text names indexes and internals,
/// and is logged instead.
const REJECTED_QUERY: &str = "the search index cannot answer this query as asked";

impl From<IndexError> for SearchError {
    /// A 400 from Elasticsearch is a query that cannot be answered as asked (the api's 400);
    /// anything else, a partial answer included, is the index being unable to answer now (503).
    fn from(e: IndexError) -> SearchError {
        match e {
            IndexError::Rejected { status: 400, .. } => SearchError::Invalid(REJECTED_QUERY.into()),
            other => SearchError::Unavailable(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for IndexError {
    fn from(e: tokio::task::JoinError) -> IndexError {
        IndexError::Task(e.to_string())
    }
}
