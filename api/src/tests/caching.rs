//! The read cache: coalescing, expiry, invalidation by writes and by the change feed, ETags.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::json;

use super::{TestApp, SHARDS};
use crate::ApiConfig;
use seams::TestCluster;

/// An api instance over `cluster` whose browsing reads are slow enough for concurrent requests
/// to overlap (the cluster counts them).
fn counted_app(cluster: Arc<TestCluster>, adjust: impl FnOnce(&mut ApiConfig)) -> TestApp {
    cluster.set_browsing_read_delay(ms(20));
    TestApp::on(cluster, |config| {
        // Long enough that nothing expires by itself during a test.
        config.read_cache.ttl = Duration::from_secs(30);
        adjust(config);
    })
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn get_with(path: &str, if_none_match: &str) -> Request<Body> {
    Request::get(path).header(header::IF_NONE_MATCH, if_none_match).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn concurrent_misses_on_one_seat_map_cost_one_cluster_read() {
    let app = counted_app(TestCluster::new(SHARDS), |_| {});
    let event_id = app.event_id(json!({})).await;
    let path = format!("/v1/events/{event_id}/seats");
    let replies = futures_util::future::join_all((0..50).map(|_| app.get(&path, None))).await;
    assert_eq!(app.cluster.browsing_reads(), 1, "fifty concurrent misses, one read");
    let etag = &replies[0].headers[header::ETAG];
    for reply in &replies {
        assert_eq!(reply.ok(StatusCode::OK)["event_id"], event_id.as_str());
        assert_eq!(&reply.headers[header::ETAG], etag);
    }
    let details = format!("/v1/events/{event_id}");
    let again = futures_util::future::join_all((0..50).map(|_| app.get(&details, None))).await;
    assert!(again.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(app.cluster.browsing_reads(), 2, "the event's details are one more read");
}

#[tokio::test]
async fn reads_within_the_ttl_are_served_from_the_cache_and_a_zero_ttl_turns_it_off() {
    let app = counted_app(TestCluster::new(SHARDS), |_| {});
    let event_id = app.event_id(json!({})).await;
    for i in 0..5 {
        let reply = app.get(&format!("/v1/events/{event_id}/seats"), None).await;
        reply.ok(StatusCode::OK);
        assert_eq!(reply.headers["x-cache"], if i == 0 { "miss" } else { "hit" });
    }
    assert_eq!(app.cluster.browsing_reads(), 1);

    let app = counted_app(TestCluster::new(SHARDS), |c| c.read_cache.ttl = Duration::ZERO);
    let event_id = app.event_id(json!({})).await;
    for _ in 0..5 {
        let reply = app.get(&format!("/v1/events/{event_id}/seats"), None).await;
        reply.ok(StatusCode::OK);
        assert!(reply.headers.contains_key(header::ETAG), "tags do not need the cache");
        assert_eq!(reply.headers[header::CACHE_CONTROL], "public, no-cache");
        assert_eq!(reply.headers["x-cache"], "miss");
    }
    assert_eq!(app.cluster.browsing_reads(), 5);
}

#[tokio::test]
async fn writes_through_this_instance_show_in_its_next_read() {
    let app = counted_app(TestCluster::new(SHARDS), |_| {});
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "available");
    let event = app.get(&format!("/v1/events/{event_id}"), None).await.ok(StatusCode::OK);
    assert_eq!(event["sections"][0]["held"], 0);

    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "held");
    let event = app.get(&format!("/v1/events/{event_id}"), None).await.ok(StatusCode::OK);
    assert_eq!(event["sections"][0]["held"], 1);

    let hold_id = hold["hold_id"].as_str().unwrap();
    app.delete(&format!("/v1/holds/{hold_id}"), Some(&user)).await;
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "available");
    app.buy(&event_id, &user, &["FLOOR-A-2"]).await;
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-2").await, "sold");
    let patched = app
        .call(
            axum::http::Method::PATCH,
            &format!("/v1/events/{event_id}"),
            Some(&app.admin()),
            Some(&json!({ "name": "Renamed" })),
        )
        .await;
    patched.ok(StatusCode::OK);
    let event = app.get(&format!("/v1/events/{event_id}"), None).await.ok(StatusCode::OK);
    assert_eq!(event["name"], "Renamed");
    // A refused hold changes nothing and keeps the cache.
    app.seat_status(&event_id, "FLOOR-A-1").await;
    let before = app.cluster.browsing_reads();
    app.hold(&event_id, &app.user("u2"), json!({ "seats": ["FLOOR-A-2"] }))
        .await
        .problem(StatusCode::CONFLICT, "seats_unavailable");
    app.seat_status(&event_id, "FLOOR-A-1").await;
    assert_eq!(app.cluster.browsing_reads(), before);
}

#[tokio::test]
async fn the_feed_follower_shows_writes_made_through_another_instance() {
    let cluster = TestCluster::new(SHARDS);
    let reader = counted_app(cluster.clone(), |_| {});
    let writer = counted_app(cluster.clone(), |_| {});
    let _background = reader.state.start_background();
    let event_id = writer.event_id(json!({})).await;
    assert_eq!(reader.seat_status(&event_id, "FLOOR-A-1").await, "available");
    writer.hold(&event_id, &writer.user("u1"), json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(5);
    while reader.seat_status(&event_id, "FLOOR-A-1").await != "held" {
        assert!(Instant::now() < deadline, "the reader's cache was not invalidated by the feed");
        tokio::time::sleep(ms(10)).await;
    }
}

#[tokio::test]
async fn if_none_match_with_the_current_tag_answers_304_without_a_body() {
    let app = counted_app(TestCluster::new(SHARDS), |c| c.read_cache.ttl = Duration::from_secs(1));
    let event_id = app.event_id(json!({})).await;
    for path in [format!("/v1/events/{event_id}"), format!("/v1/events/{event_id}/seats")] {
        let first = app.get(&path, None).await;
        first.ok(StatusCode::OK);
        let etag = first.headers[header::ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong tag: {etag}");
        assert_eq!(first.headers[header::CACHE_CONTROL], "public, max-age=1, stale-while-revalidate=5");
        assert_eq!(first.headers[header::CONTENT_TYPE], "application/json");

        let not_modified = app.send(get_with(&path, &etag)).await;
        assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
        assert!(not_modified.body.is_empty());
        assert_eq!(not_modified.headers[header::ETAG], etag.as_str());
        assert!(not_modified.headers.contains_key(header::CACHE_CONTROL));
        assert_eq!(app.send(get_with(&path, "\"stale\"")).await.status, StatusCode::OK);
    }
    // A change makes the old tag stale.
    let seats = format!("/v1/events/{event_id}/seats");
    let etag = app.get(&seats, None).await.headers[header::ETAG].to_str().unwrap().to_owned();
    app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let changed = app.send(get_with(&seats, &etag)).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_ne!(changed.headers[header::ETAG], etag.as_str());
}

#[tokio::test]
async fn a_seat_map_read_again_after_expiry_keeps_its_tag_when_nothing_changed() {
    let app = counted_app(TestCluster::new(SHARDS), |c| c.read_cache.ttl = ms(50));
    let event_id = app.event_id(json!({})).await;
    let seats = format!("/v1/events/{event_id}/seats");
    let etag = app.get(&seats, None).await.headers[header::ETAG].clone();
    tokio::time::sleep(ms(120)).await;
    let again = app.send(get_with(&seats, etag.to_str().unwrap())).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED, "as_of moved, the seats did not");
    assert_eq!(app.cluster.browsing_reads(), 2, "the entry expired and was read again");
}

#[tokio::test]
async fn unknown_events_stay_404_and_are_not_cached() {
    let app = counted_app(TestCluster::new(SHARDS), |_| {});
    let id = "ev0000000000000001";
    for _ in 0..3 {
        app.get(&format!("/v1/events/{id}"), None).await.problem(StatusCode::NOT_FOUND, "not_found");
        app.get(&format!("/v1/events/{id}/seats"), None).await.problem(StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(app.cluster.browsing_reads(), 6);
    app.get("/v1/events/nonsense/seats", None).await.problem(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.cluster.browsing_reads(), 6, "a malformed id never reaches the store");
}

#[tokio::test]
async fn a_store_error_reaches_every_coalesced_request_and_is_not_cached() {
    let app = counted_app(TestCluster::new(SHARDS), |_| {});
    let event_id = app.event_id(json!({})).await;
    app.cluster.set_fault(Some(seams::Fault::Unavailable));
    let path = format!("/v1/events/{event_id}/seats");
    let replies = futures_util::future::join_all((0..10).map(|_| app.get(&path, None))).await;
    for reply in &replies {
        reply.problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    app.cluster.set_fault(None);
    app.get(&path, None).await.ok(StatusCode::OK);
    assert!(app.cluster.browsing_reads() >= 2, "the failure was not cached");
}
