use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{event_body, in_days, venue_body, TestApp};

fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn admin_creates_a_venue_and_anyone_reads_it() {
    let app = TestApp::new();
    let venue = app.venue().await;
    let venue_id = venue["venue_id"].as_str().unwrap();
    assert!(venue_id.starts_with("ve"));
    // The body's fields come back as sent.
    let mut expected = venue_body();
    expected["venue_id"] = json!(venue_id);
    assert_eq!(venue, expected);
    let read = app.get(&format!("/v1/venues/{venue_id}"), None).await.ok(StatusCode::OK);
    assert_eq!(read, venue);
}

#[tokio::test]
async fn invalid_venues_are_refused_and_never_reach_the_store() {
    let app = TestApp::new();
    let admin = app.admin();
    let mut duplicate = venue_body();
    duplicate["sections"][1]["id"] = json!("FLOOR");
    let mut hostile = venue_body();
    hostile["name"] = json!("Hall\u{0}\u{1b}[31m");
    let mut huge = venue_body();
    huge["name"] = json!("x".repeat(10_000));
    let mut off_map = venue_body();
    off_map["location"]["lat"] = json!(123.0);
    let mut bad_kind = venue_body();
    bad_kind["sections"][0]["kind"] = json!("standing");
    let mut negative = venue_body();
    negative["sections"][1]["capacity"] = json!(-5);
    let mut empty = venue_body();
    empty["sections"] = json!([]);
    // 400 for what the OpenAPI document states; 422 for a rule between items it cannot.
    let cases = [
        (duplicate, StatusCode::UNPROCESSABLE_ENTITY),
        (hostile, StatusCode::BAD_REQUEST),
        (huge, StatusCode::BAD_REQUEST),
        (off_map, StatusCode::BAD_REQUEST),
        (bad_kind, StatusCode::BAD_REQUEST),
        (negative, StatusCode::BAD_REQUEST),
        (empty, StatusCode::BAD_REQUEST),
    ];
    for (body, status) in cases {
        let doc = app.post("/v1/venues", Some(&admin), &body).await.problem(status, "bad_request");
        assert!(!doc["detail"].as_str().unwrap().is_empty());
    }
    assert_eq!(app.cluster.submits(), 0);
}

#[tokio::test]
async fn unknown_and_malformed_venue_ids_are_404() {
    let app = TestApp::new();
    for id in ["ve0000000000000001", "nope", "ve%00", "VE0000000000000001"] {
        app.get(&format!("/v1/venues/{id}"), None).await.problem(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn an_event_copies_its_venue_and_counts_every_section() {
    let app = TestApp::new();
    let venue = app.venue().await;
    let venue_id = venue["venue_id"].as_str().unwrap();
    let event = app.event(venue_id, json!({ "per_user_limit": 4 })).await;
    assert!(event["event_id"].as_str().unwrap().starts_with("ev"));
    assert_eq!(event["name"], "Night Show");
    assert_eq!(event["performers"], json!([{ "name": "The Band" }]));
    assert_eq!(event["venue_id"], venue_id);
    assert_eq!(event["venue"]["name"], "Coliseu");
    assert_eq!(event["venue"]["city"], "Lisbon");
    assert_eq!(event["venue"]["location"], json!({ "lat": 38.7, "lon": -9.14 }));
    assert_eq!(event["per_user_limit"], 4);
    assert_eq!(event["high_traffic"], false);
    assert_eq!(event["status"], "on_sale");
    assert!(event["on_sale_at"].as_str().unwrap() <= event["starts_at"].as_str().unwrap());
    let sections = event["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 2);
    assert_eq!(
        sections[0],
        json!({ "section": "FLOOR", "name": "Floor", "kind": "seated", "price": { "amount": 5000, "currency": "USD" },
                "capacity": 20, "available": 20, "held": 0, "sold": 0 })
    );
    assert_eq!(sections[1]["kind"], "general");
    assert_eq!(sections[1]["capacity"], 5);
    let read = app.get(&format!("/v1/events/{}", event["event_id"].as_str().unwrap()), None).await;
    assert_eq!(read.ok(StatusCode::OK), event);
}

#[tokio::test]
async fn invalid_events_are_refused_and_never_reach_the_store() {
    let app = TestApp::new();
    let venue = app.venue().await;
    let venue_id = venue["venue_id"].as_str().unwrap();
    let submits = app.cluster.submits();
    let floor_only = json!([{ "section": "FLOOR", "price": { "amount": 5000, "currency": "USD" } }]);
    // 400 for what the OpenAPI document states; 422 for rules against the venue or the clock.
    let (bad, rule) = (StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY);
    let cases = [
        (json!({ "prices": floor_only }), "LAWN", rule),
        (json!({ "starts_at": in_days(-1) }), "future", rule),
        (json!({ "starts_at": "next friday" }), "starts_at", bad),
        (json!({ "on_sale_at": in_days(40) }), "on_sale_at", rule),
        (json!({ "prices": [{ "section": "FLOOR", "price": { "amount": 5, "currency": "usd" } }] }), "currency", bad),
        (json!({ "name": "" }), "name", bad),
        (json!({ "per_user_limit": 0 }), "per_user_limit", bad),
        (json!({ "performers": [{ "name": "a\u{0}" }] }), "control", bad),
    ];
    for (extra, needle, status) in cases {
        let reply = app.post("/v1/events", Some(&app.admin()), &event_body(venue_id, extra.clone())).await;
        let doc = reply.problem(status, "bad_request");
        assert!(doc["detail"].as_str().unwrap().contains(needle), "{extra}: {doc}");
    }
    assert_eq!(app.cluster.submits(), submits);
}

#[tokio::test]
async fn an_event_at_an_unknown_venue_is_404() {
    let app = TestApp::new();
    for venue_id in ["ve00000000000000ff", "garbage"] {
        let reply = app.post("/v1/events", Some(&app.admin()), &event_body(venue_id, json!({}))).await;
        reply.problem(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn patching_an_event_changes_only_the_given_fields() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({ "per_user_limit": 4 })).await;
    let path = format!("/v1/events/{event_id}");
    let patch = json!({ "name": "Late Show", "per_user_limit": null, "high_traffic": true });
    let event = app.call(Method::PATCH, &path, Some(&app.admin()), Some(&patch)).await.ok(StatusCode::OK);
    assert_eq!(event["name"], "Late Show");
    assert_eq!(event["per_user_limit"], Value::Null);
    assert_eq!(event["high_traffic"], true);
    assert_eq!(event["category"], "music");
    assert_eq!(app.get(&path, None).await.ok(StatusCode::OK), event);

    let bad = json!({ "prices": [{ "section": "FLOOR", "price": { "amount": 1, "currency": "USD" } }] });
    let reply = app.call(Method::PATCH, &path, Some(&app.admin()), Some(&bad)).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "bad_request");
    let unknown = app.call(Method::PATCH, "/v1/events/ev00000000000000aa", Some(&app.admin()), Some(&patch)).await;
    unknown.problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn event_counts_follow_holds_and_sales() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1", "FLOOR-A-2"] })).await.ok(StatusCode::CREATED);
    app.buy(&event_id, &user, &["FLOOR-B-1"]).await;
    app.hold(&event_id, &user, json!({ "section": "LAWN", "quantity": 3 })).await.ok(StatusCode::CREATED);
    let event = app.get(&format!("/v1/events/{event_id}"), None).await.ok(StatusCode::OK);
    let floor = &event["sections"][0];
    assert_eq!(
        (floor["available"].clone(), floor["held"].clone(), floor["sold"].clone()),
        (json!(17), json!(2), json!(1))
    );
    let lawn = &event["sections"][1];
    assert_eq!((lawn["available"].clone(), lawn["held"].clone(), lawn["sold"].clone()), (json!(2), json!(3), json!(0)));
}

#[tokio::test]
async fn the_seat_map_has_the_documented_shape() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-2"] })).await.ok(StatusCode::CREATED);
    let map = app.get(&format!("/v1/events/{event_id}/seats"), None).await.ok(StatusCode::OK);
    assert_eq!(keys(&map), ["as_of", "as_of_index", "event_id", "general", "seats"]);
    assert_eq!(map["event_id"], event_id.as_str());
    assert!(map["as_of"].as_str().unwrap().ends_with('Z'));
    let seats = map["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 20);
    assert_eq!(
        seats[0],
        json!({ "id": "FLOOR-A-1", "section": "FLOOR", "row": "A", "number": 1, "status": "available",
                "price": { "amount": 5000, "currency": "USD" } })
    );
    assert_eq!(seats[1]["status"], "held");
    assert_eq!(
        map["general"],
        json!([{ "section": "LAWN", "capacity": 5, "available": 5, "price": { "amount": 2000, "currency": "USD" } }])
    );
}

#[tokio::test]
async fn unknown_and_malformed_event_ids_are_404_on_every_event_route() {
    let app = TestApp::new();
    let user = app.user("u1");
    for id in ["ev00000000000000aa", "ev-nope", "%E2%98%83", "ev00000000000000AA"] {
        for path in
            [format!("/v1/events/{id}"), format!("/v1/events/{id}/seats"), format!("/v1/events/{id}/seats/stream")]
        {
            app.get(&path, None).await.problem(StatusCode::NOT_FOUND, "not_found");
        }
        let hold = app.hold(id, &user, json!({ "seats": ["FLOOR-A-1"] })).await;
        hold.problem(StatusCode::NOT_FOUND, "not_found");
    }
}
