//! The waiting room's abuse rules through the router: one place per user and event, on one api
//! instance and across two; and the cap on seats a user holds at once.

use axum::http::StatusCode;
use raft_store::{Answer, EventId, GroupId, Query, UserId};
use serde_json::{json, Value};

use super::{TestApp, SHARDS};
use seams::TestCluster;

/// Joins `event_id`'s queue as `user`; returns the answer and the place its token names.
async fn join(app: &TestApp, event_id: &str, user: &str) -> (Value, u64) {
    let joined = app.post(&format!("/v1/events/{event_id}/queue"), Some(&app.user(user)), &json!({})).await;
    let joined = joined.ok(StatusCode::CREATED);
    let (user, event) = (UserId::parse(user).unwrap(), EventId::parse(event_id).unwrap());
    let token = joined["queue_token"].as_str().unwrap();
    let claims = app.state.waiting_room().keys().verify_queue(token, &user, &event).unwrap();
    (joined, claims.seq)
}

fn places_given(cluster: &TestCluster, event_id: &str) -> u64 {
    let event = EventId::parse(event_id).unwrap();
    let group = GroupId::shard(raft_store::shard_of(&event, SHARDS));
    match cluster.read_now(group, &Query::Queue(event)) {
        Answer::Queue(Some(view)) => view.queue.next_seq,
        other => panic!("no queue: {other:?}"),
    }
}

#[tokio::test]
async fn joining_twice_gives_one_place_on_one_instance_and_across_two() {
    let first = TestApp::new();
    let second = TestApp::on(first.cluster.clone(), |_| {});
    let event_id = first.event_id(json!({ "high_traffic": true })).await;
    let (_, alice) = join(&first, &event_id, "alice").await;
    assert_eq!(join(&first, &event_id, "alice").await.1, alice, "again on the same instance");
    assert_eq!(join(&second, &event_id, "alice").await.1, alice, "again on another instance");
    let (_, bob) = join(&second, &event_id, "bob").await;
    assert_ne!(bob, alice);
    // Concurrent joins of one user, on both instances: one batch each, one place.
    let (a, b, c) = tokio::join!(
        join(&first, &event_id, "carol"),
        join(&second, &event_id, "carol"),
        join(&first, &event_id, "carol")
    );
    assert!(a.1 == b.1 && b.1 == c.1, "carol got {} {} {}", a.1, b.1, c.1);
    assert_eq!(places_given(&first.cluster, &event_id), 3, "repeated joins take no numbers");
}

#[tokio::test]
async fn a_hold_past_the_held_seat_cap_is_422_limit_exceeded() {
    let app = TestApp::with(|config| config.held_seats_per_user_max = 3);
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let first =
        app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1", "FLOOR-A-2"] })).await.ok(StatusCode::CREATED);
    let reply = app.hold(&event_id, &user, json!({ "section": "LAWN", "quantity": 2 })).await;
    let doc = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded");
    assert_eq!(
        (doc["limit"].clone(), doc["current"].clone(), doc["requested"].clone()),
        (json!(3), json!(2), json!(2))
    );
    assert!(doc["detail"].as_str().unwrap().contains("held at once"), "{doc}");
    // Another user is not counted; a released hold stops counting.
    app.hold(&event_id, &app.user("u2"), json!({ "seats": ["FLOOR-B-1", "FLOOR-B-2", "FLOOR-B-3"] }))
        .await
        .ok(StatusCode::CREATED);
    let hold_id = first["hold_id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/v1/holds/{hold_id}"), Some(&user)).await.status, StatusCode::NO_CONTENT);
    app.hold(&event_id, &user, json!({ "section": "LAWN", "quantity": 3 })).await.ok(StatusCode::CREATED);
}

#[tokio::test]
async fn the_held_seat_cap_is_20_by_default_and_0_turns_it_off() {
    let twenty: Vec<String> = ["A", "B"].iter().flat_map(|r| (1..=10).map(move |n| format!("FLOOR-{r}-{n}"))).collect();
    let capped = TestApp::new();
    let event_id = capped.event_id(json!({})).await;
    let user = capped.user("u1");
    capped.hold(&event_id, &user, json!({ "seats": twenty })).await.ok(StatusCode::CREATED);
    let reply = capped.hold(&event_id, &user, json!({ "section": "LAWN", "quantity": 1 })).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded");

    let uncapped = TestApp::with(|config| config.held_seats_per_user_max = 0);
    let event_id = uncapped.event_id(json!({})).await;
    let user = uncapped.user("u1");
    uncapped.hold(&event_id, &user, json!({ "seats": twenty })).await.ok(StatusCode::CREATED);
    uncapped.hold(&event_id, &user, json!({ "section": "LAWN", "quantity": 5 })).await.ok(StatusCode::CREATED);
}
