//! Search in a cluster: a `boxoffice indexer` process follows the cluster's change feed, and an api
//! answers `GET /v1/search` through it. Killing the indexer mid-stream loses and duplicates
//! nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::RunningCluster;
use common::eventually;
use serde_json::json;

const EVENTS: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_indexer_mid_stream_loses_and_duplicates_nothing() {
    let mut cluster = RunningCluster::start(1, 4).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut indexer = cluster.start_indexer(&listen);
    let api = cluster.start_api(&["--search-url", &indexer.url]).await;
    let admin = api.token("admin", "admin").await;
    let venue = json!({
        "name": "Marathon Hall", "city": "Braga", "country": "PT", "location": {"lat": 41.55, "lon": -8.42},
        "sections": [{"id": "GA", "name": "Standing", "kind": "general", "capacity": 50}]
    });
    let (s, venue) = api.call("POST", "/v1/venues", Some(&admin), Some(venue), None).await;
    assert_eq!(s, 201, "{venue}");

    let mut created = Vec::new();
    for i in 0..EVENTS {
        if i == EVENTS / 3 {
            indexer.kill9();
        }
        if i == 2 * EVENTS / 3 {
            indexer = cluster.start_indexer(&listen);
        }
        let body = json!({
            "name": format!("Marathon night {i}"), "description": "Long evening", "category": "marathon",
            "performers": [{"name": "Runner"}], "venue_id": venue["venue_id"],
            "starts_at": format!("2032-01-{:02}T20:00:00Z", i % 28 + 1),
            "prices": [{"section": "GA", "price": {"amount": 1000, "currency": "USD"}}]
        });
        let (s, e) = api.call("POST", "/v1/events", Some(&admin), Some(body), None).await;
        assert_eq!(s, 201, "{e}");
        created.push(e["event_id"].as_str().unwrap().to_owned());
    }

    // Every event is searchable, each exactly once.
    let found = eventually(Duration::from_secs(30), "every event in the index", || async {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => "/v1/search?category=marathon&from=2031-01-01T00:00:00Z&limit=100".to_owned(),
                Some(c) => format!("/v1/search?category=marathon&from=2031-01-01T00:00:00Z&limit=100&cursor={c}"),
            };
            let (s, page) = api.get(&path, None).await;
            if s != 200 {
                return None;
            }
            for item in page["items"].as_array().unwrap() {
                *seen.entry(item["event_id"].as_str().unwrap().to_owned()).or_default() += 1;
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        (seen.len() == EVENTS).then_some(seen)
    })
    .await;
    assert!(found.values().all(|n| *n == 1), "an event appears twice: {found:?}");
    assert!(created.iter().all(|id| found.contains_key(id)));
    drop(indexer);
}
