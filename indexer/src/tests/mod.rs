//! Tests: the embedded backend's search semantics and durability, the Elasticsearch request
//! bodies, the follower over real state machines, and (when a server is configured) both
//! backends side by side.

mod catalog;
mod elastic;
mod embedded;
mod fake_elastic;
mod follower;
mod latency;
mod webhooks;

use std::sync::Arc;

use raft_store::{EventId, EventStatus};
use seams::{SearchBackend, SearchPage, SearchQuery};

use crate::document::{usd, Document};

/// An event at the Lisbon hall, starting `id` seconds after the epoch, version 1.
pub(crate) fn doc(id: u64) -> Document {
    Document {
        event_id: EventId::from_u64(id),
        name: "Untitled".into(),
        description: String::new(),
        performers: Vec::new(),
        category: "music".into(),
        venue_name: "Hall".into(),
        city: "Lisbon".into(),
        country: "PT".into(),
        lat: 38.7223,
        lon: -9.1393,
        starts_at_ms: id as i64 * 1_000,
        price_min: usd(1_000),
        price_max: usd(5_000),
        available: 100,
        status: EventStatus::OnSale,
        version: 1,
        shard: 0,
    }
}

/// Everything, by date, first page of 20.
pub(crate) fn query(text: Option<&str>) -> SearchQuery {
    SearchQuery {
        text: text.map(str::to_owned),
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        category: None,
        city: None,
        near: None,
        offset: 0,
        limit: 20,
    }
}

pub(crate) fn ids(page: &SearchPage) -> Vec<u64> {
    page.hits.iter().map(|h| Document::sort_key(&h.event.event_id)).collect()
}

pub(crate) async fn search_ids(backend: &Arc<impl SearchBackend + ?Sized>, q: SearchQuery) -> Vec<u64> {
    ids(&backend.search(q).await.expect("search answers"))
}
