//! The seams the tiers share: how the api and the indexer reach the store ([`Cluster`]), how the
//! api reaches a search index ([`SearchBackend`]), and the small types both sides of each seam
//! speak. Nothing here does I/O; the node crate implements [`Cluster`], the indexer crate
//! implements [`SearchBackend`].
//!
//! Architecture invariant: this crate depends on `raft-store` alone among the workspace's crates,
//! and builds unchanged under the simulation (`--cfg madsim`).

mod cluster;
mod search;
#[cfg(feature = "testing")]
mod testing;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use cluster::{Cluster, ClusterError, Consistency, GroupHealth, Readiness, Submit};
pub use search::{
    GeoFilter, SearchBackend, SearchError, SearchHit, SearchPage, SearchQuery, SEARCH_DEPTH_MAX, SEARCH_RADIUS_KM_MAX,
    SEARCH_TEXT_LEN_MAX,
};
#[cfg(feature = "testing")]
pub use testing::{Fault, TestCluster};

/// The future every seam's methods return: boxed, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Renders the process's metrics in Prometheus's text format, for `/metrics`.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;
