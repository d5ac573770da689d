use axum::http::StatusCode;
use serde_json::json;

use super::{event_body, venue_body, TestApp};

#[tokio::test]
async fn a_replayed_hold_returns_the_same_answer_and_holds_once() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let path = format!("/v1/events/{event_id}/holds");
    let first = app.post_keyed(&path, &user, "hold-1", r#"{"seats": ["FLOOR-A-1"]}"#).await;
    // Same JSON, other key order and spacing.
    let again = app.post_keyed(&path, &user, "hold-1", r#"{ "seats":["FLOOR-A-1"] }"#).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!((again.status, again.json()), (first.status, first.json()));
    let event = app.get(&format!("/v1/events/{event_id}"), None).await.json();
    assert_eq!(event["sections"][0]["held"], 1);
}

#[tokio::test]
async fn a_replayed_refusal_is_the_same_refusal() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let user = app.user("u2");
    let path = format!("/v1/events/{event_id}/holds");
    let first = app.post_keyed(&path, &user, "k", r#"{"seats": ["FLOOR-A-1"]}"#).await;
    let again = app.post_keyed(&path, &user, "k", r#"{"seats": ["FLOOR-A-1"]}"#).await;
    first.problem(StatusCode::CONFLICT, "seats_unavailable");
    assert_eq!((again.status, again.json()), (first.status, first.json()));
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let path = format!("/v1/events/{event_id}/holds");
    app.post_keyed(&path, &user, "k", r#"{"seats": ["FLOOR-A-1"]}"#).await.ok(StatusCode::CREATED);
    let reply = app.post_keyed(&path, &user, "k", r#"{"seats": ["FLOOR-A-2"]}"#).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-2").await, "available");
    // Keys are per user: another user's identical key is another request.
    app.post_keyed(&path, &app.user("u2"), "k", r#"{"seats": ["FLOOR-A-2"]}"#).await.ok(StatusCode::CREATED);
}

#[tokio::test]
async fn replayed_creations_return_the_same_venue_and_event() {
    let app = TestApp::new();
    let admin = app.admin();
    let venue_text = venue_body().to_string();
    let first = app.post_keyed("/v1/venues", &admin, "venue-1", &venue_text).await.ok(StatusCode::CREATED);
    let again = app.post_keyed("/v1/venues", &admin, "venue-1", &venue_text).await.ok(StatusCode::CREATED);
    assert_eq!(first, again);
    let mut other = venue_body();
    other["name"] = json!("Other Hall");
    let reused = app.post_keyed("/v1/venues", &admin, "venue-1", &other.to_string()).await;
    reused.problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");

    let event_text = event_body(first["venue_id"].as_str().unwrap(), json!({})).to_string();
    let event = app.post_keyed("/v1/events", &admin, "event-1", &event_text).await.ok(StatusCode::CREATED);
    let again = app.post_keyed("/v1/events", &admin, "event-1", &event_text).await.ok(StatusCode::CREATED);
    assert_eq!(event, again);
    let list = app.get("/v1/events", None).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_replayed_checkout_returns_the_same_order_and_pays_once() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let path = format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap());
    let body = r#"{"payment_method": "sandbox_ok"}"#;
    let first = app.post_keyed(&path, &user, "pay-1", body).await.ok(StatusCode::CREATED);
    assert_eq!(first["status"], "confirmed");
    let submits = app.cluster.submits();
    let again = app.post_keyed(&path, &user, "pay-1", body).await.ok(StatusCode::CREATED);
    assert_eq!(again, first);
    // The replay is answered from remembered outcomes: the checkout and the payment lookup.
    assert_eq!(app.cluster.submits(), submits + 2);

    // After a cancellation the replay still answers the first response and charges nothing.
    let cancel = format!("/v1/orders/{}/cancel", first["order_id"].as_str().unwrap());
    app.post(&cancel, Some(&user), &json!({})).await.ok(StatusCode::OK);
    let late = app.post_keyed(&path, &user, "pay-1", body).await.ok(StatusCode::CREATED);
    assert_eq!(late, first);
    let order = app.get(&format!("/v1/orders/{}", first["order_id"].as_str().unwrap()), Some(&user)).await.json();
    assert_eq!(order["status"], "cancelled");
}

#[tokio::test]
async fn malformed_idempotency_keys_are_400() {
    let app = TestApp::new();
    let admin = app.admin();
    for key in ["", "has space", &"k".repeat(256)] {
        let reply = app.post_keyed("/v1/venues", &admin, key, &venue_body().to_string()).await;
        reply.problem(StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(app.cluster.submits(), 0);
}
