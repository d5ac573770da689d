//! The indexer: follows each shard's committed change records and keeps a search index current,
//! and the search backends that answer `GET /v1/search`.
//!
//! - [`Follower`] reads the change feed through [`seams::Cluster`] and writes [`Document`]s with
//!   their checkpoints to an [`Index`].
//! - [`EmbeddedIndex`] (tantivy, one local directory) is the default backend; [`ElasticIndex`]
//!   (the indexer's writer) and [`ElasticSearch`] (the api's read-only searcher) serve
//!   deployments that outgrow one machine. Both answer the same query the same way: one
//!   analyzer, one query plan, one order.
//! - [`Dispatcher`] follows the same feed for outgoing webhooks: each order and ticket event,
//!   signed, to every endpoint an admin registered for it, at least once.

mod document;
mod elastic;
mod embedded;
mod error;
mod follower;
mod index;
mod plan;
mod remote;
mod text;
mod webhooks;

#[cfg(test)]
mod tests;

pub use document::Document;
pub use elastic::{ElasticConfig, ElasticIndex, ElasticSearch};
pub use embedded::EmbeddedIndex;
pub use error::IndexError;
pub use follower::{follow, Follower, FollowerConfig, FEED_PAGE_RECORDS_MAX};
pub use index::{Checkpoints, Index};
pub use remote::{ops_routes, search_routes, RemoteSearch, SECRET_HEADER};
pub use webhooks::{DispatchError, Dispatcher, DispatcherConfig, POSITIONS_FILE, SIGNATURE_HEADER};
