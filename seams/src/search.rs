//! What the api needs from a search index: the seam between `GET /v1/search` and the indexer's
//! backends (embedded tantivy, Elasticsearch, or an indexer process over HTTP).
//!
//! Every backend answers the same query the same way: the same filters, the same order (by
//! relevance when there is text, then soonest first; soonest first without text), the same
//! pages.

use raft_store::EventSummary;
use serde::{Deserialize, Serialize};

use crate::BoxFuture;

/// Results a search may page through at most (offset + limit).
pub const SEARCH_DEPTH_MAX: usize = 10_000;
/// Longest query text accepted, in characters.
pub const SEARCH_TEXT_LEN_MAX: usize = 200;
/// Largest search radius, in kilometres.
pub const SEARCH_RADIUS_KM_MAX: f64 = 20_000.0;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeoFilter {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Words to match against name, description, performers, venue and city, with typo
    /// tolerance; `None` to list by date.
    pub text: Option<String>,
    /// Events with `from_ms <= starts_at < to_ms`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Exact category, lower-cased.
    pub category: Option<String>,
    /// Exact city, lower-cased.
    pub city: Option<String>,
    pub near: Option<GeoFilter>,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub event: EventSummary,
    /// Relevance; 0 when the query has no text.
    pub score: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Whether results follow this page.
    pub more: bool,
}

#[derive(Clone, Debug, thiserror::Error, Serialize, Deserialize)]
pub enum SearchError {
    /// The index cannot answer now (503).
    #[error("search is unavailable: {0}")]
    Unavailable(String),
    /// The query cannot be answered as asked (400).
    #[error("{0}")]
    Invalid(String),
}

pub trait SearchBackend: Send + Sync + 'static {
    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<SearchPage, SearchError>>;
}
