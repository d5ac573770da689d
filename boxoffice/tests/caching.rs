//! The api's read cache through the real binary: ETag round trips, and how soon a seat map shows
//! a hold made through the same api instance and through another instance of the cluster.

mod common;

use std::time::{Duration, Instant};

use common::cluster::RunningCluster;
use common::Server;
use serde_json::json;

/// How soon a write through another api instance must show (the feed invalidates the cache).
const OTHER_INSTANCE_VISIBLE_WITHIN: Duration = Duration::from_secs(2);

#[tokio::test]
async fn an_etag_round_trip_answers_304_until_the_map_changes() {
    let server = Server::start(&[]).await;
    let admin = server.token("ops", "admin").await;
    let user = server.token("alice", "user").await;
    let event = server.create_event(&admin, 1, 4, 10, json!({})).await;
    for path in [format!("/v1/events/{event}"), format!("/v1/events/{event}/seats")] {
        let url = format!("{}{path}", server.url);
        let first = server.http.get(&url).send().await.unwrap();
        assert_eq!(first.status(), 200);
        let etag = first.headers()["etag"].to_str().unwrap().to_owned();
        assert!(first.headers()["cache-control"].to_str().unwrap().contains("max-age="));
        let again = server.http.get(&url).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status(), 304);
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
        assert!(again.bytes().await.unwrap().is_empty());
    }
    let url = format!("{}/v1/events/{event}/seats", server.url);
    let etag = server.http.get(&url).send().await.unwrap().headers()["etag"].to_str().unwrap().to_owned();
    let (status, hold) = server
        .call("POST", &format!("/v1/events/{event}/holds"), Some(&user), Some(json!({"seats": ["FLOOR-A-1"]})), None)
        .await;
    assert_eq!(status, 201, "{hold}");
    let changed = server.http.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn a_seat_map_shows_holds_through_the_same_api_at_once_and_through_another_within_two_seconds() {
    // A long ttl, so only invalidation (by the write, or by the feed) can show the holds in time.
    let ttl = ["--read-cache-ttl", "30s"];
    let mut cluster = RunningCluster::start(1, 2).await;
    let first = cluster.start_api(&ttl).await;
    let second = cluster.start_api(&ttl).await;
    let admin = first.token("ops", "admin").await;
    let user = first.token("alice", "user").await;
    let event = first.create_event(&admin, 1, 4, 10, json!({})).await;
    assert_eq!(first.seat_statuses(&event).await["FLOOR-A-1"], "available");
    assert_eq!(second.seat_statuses(&event).await["FLOOR-A-2"], "available");

    let hold = |api: &Server, seat: &str| {
        let body = json!({"seats": [seat]});
        let path = format!("/v1/events/{event}/holds");
        let (api, user) = (api.url.clone(), user.clone());
        async move {
            let server = Server::attach(&api);
            let (status, body) = server.call("POST", &path, Some(&user), Some(body), None).await;
            assert_eq!(status, 201, "{body}");
        }
    };
    // Through the same instance: the very next read shows it.
    hold(&first, "FLOOR-A-1").await;
    assert_eq!(first.seat_statuses(&event).await["FLOOR-A-1"], "held");

    // Through another instance: the first one's feed follower drops its copy.
    hold(&second, "FLOOR-A-2").await;
    let written = Instant::now();
    while first.seat_statuses(&event).await["FLOOR-A-2"] != "held" {
        assert!(written.elapsed() < OTHER_INSTANCE_VISIBLE_WITHIN, "a hold through another api did not show in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(cluster);
}
