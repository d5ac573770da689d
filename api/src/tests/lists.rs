use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use raft_store::{shard_of, EventId};
use serde_json::{json, Value};

use super::{event_body, in_days, TestApp, SHARDS};

/// Creates events with derived ids (the key fixes the id, so the shard spread is deterministic).
async fn events_at(app: &TestApp, days: &[i64]) -> Vec<String> {
    let venue = app.venue().await;
    let venue_id = venue["venue_id"].as_str().unwrap();
    let mut ids = Vec::new();
    for (i, d) in days.iter().enumerate() {
        let body = event_body(venue_id, json!({ "starts_at": in_days(*d), "name": format!("Show {i}") }));
        let event = app.post_keyed("/v1/events", &app.admin(), &format!("event-{i}"), &body.to_string()).await;
        ids.push(event.ok(StatusCode::CREATED)["event_id"].as_str().unwrap().to_owned());
    }
    let shards: BTreeSet<u32> = ids.iter().map(|id| shard_of(&EventId::parse(id).unwrap(), SHARDS)).collect();
    assert!(shards.len() > 1, "the test needs events on several shards");
    ids
}

/// Follows `next_cursor` from `first` to the end; returns every item.
async fn all_pages(app: &TestApp, first: &str, token: Option<&str>) -> (Vec<Value>, usize) {
    let (mut items, mut pages) = (Vec::new(), 0);
    let mut path = first.to_owned();
    loop {
        let page = app.get(&path, token).await.ok(StatusCode::OK);
        pages += 1;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{first}&cursor={cursor}"),
            None => return (items, pages),
        }
        assert!(pages < 50, "pagination does not end");
    }
}

#[tokio::test]
async fn events_list_soonest_first_across_shards_and_page_with_cursors() {
    let app = TestApp::new();
    let days = [9, 3, 7, 1, 5, 2, 8, 4];
    let ids = events_at(&app, &days).await;
    let (items, pages) = all_pages(&app, "/v1/events?limit=3", None).await;
    assert_eq!(pages, 3);
    let mut expected: Vec<(i64, &String)> = days.iter().copied().zip(&ids).collect();
    expected.sort();
    let listed: Vec<&str> = items.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    let expected: Vec<&str> = expected.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(listed, expected);
    let one = app.get("/v1/events", None).await.ok(StatusCode::OK);
    assert_eq!(one["items"].as_array().unwrap().len(), 8);
    assert_eq!(one["next_cursor"], Value::Null);
}

#[tokio::test]
async fn events_list_filters_starts_at_by_from_and_to() {
    let app = TestApp::new();
    let ids = events_at(&app, &[1, 3, 5, 7]).await;
    let path = format!("/v1/events?from={}&to={}", in_days(2), in_days(6));
    let page = app.get(&path, None).await.ok(StatusCode::OK);
    let listed: Vec<&str> = page["items"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[1].as_str(), ids[2].as_str()]);
}

#[tokio::test]
async fn an_event_summary_has_the_documented_shape() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let page = app.get("/v1/events", None).await.ok(StatusCode::OK);
    let summary = &page["items"][0];
    assert_eq!(summary["event_id"], event_id.as_str());
    assert_eq!(summary["name"], "Night Show");
    assert_eq!(summary["category"], "music");
    assert!(summary["starts_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(summary["venue"], json!({ "name": "Coliseu", "city": "Lisbon" }));
    assert_eq!(summary["performers"], json!([{ "name": "The Band" }]));
    assert_eq!(
        summary["price_range"],
        json!({ "min": { "amount": 2000, "currency": "USD" }, "max": { "amount": 5000, "currency": "USD" } })
    );
    assert_eq!(summary["available"], 25);
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let app = TestApp::new();
    let user = app.user("u1");
    for query in
        ["limit=0", "limit=101", "limit=abc", "limit=-1", "cursor=%%%", "cursor=bm9wZQ", "from=yesterday", "to=1"]
    {
        app.get(&format!("/v1/events?{query}"), None).await.problem(StatusCode::BAD_REQUEST, "bad_request");
    }
    let later_first = format!("/v1/events?from={}&to={}", in_days(5), in_days(1));
    // Each bound is valid on its own: the order between them is a rule the document cannot state.
    app.get(&later_first, None).await.problem(StatusCode::UNPROCESSABLE_ENTITY, "bad_request");
    for path in ["/v1/me/orders", "/v1/me/tickets"] {
        for query in ["limit=0", "limit=x", "cursor=garbage!"] {
            let reply = app.get(&format!("{path}?{query}"), Some(&user)).await;
            reply.problem(StatusCode::BAD_REQUEST, "bad_request");
        }
    }
}

#[tokio::test]
async fn my_orders_and_tickets_list_newest_first_across_shards_with_cursors() {
    let app = TestApp::new();
    let ids = events_at(&app, &[1, 2, 3]).await;
    let user = app.user("fan");
    let mut orders = Vec::new();
    for (i, event_id) in ids.iter().enumerate() {
        let seats: Vec<String> = (1..=i + 1).map(|n| format!("FLOOR-A-{n}")).collect();
        let seats: Vec<&str> = seats.iter().map(String::as_str).collect();
        orders.push(app.buy(event_id, &user, &seats).await);
        // Distinct creation times, so "newest first" has one answer.
        app.cluster.advance(Duration::from_secs(1));
    }
    app.buy(&ids[0], &app.user("someone-else"), &["FLOOR-B-1"]).await;

    let (listed, pages) = all_pages(&app, "/v1/me/orders?limit=2", Some(&user)).await;
    assert_eq!(pages, 2);
    let listed: Vec<&Value> = listed.iter().map(|o| &o["order_id"]).collect();
    let newest_first: Vec<&Value> = orders.iter().rev().map(|o| &o["order_id"]).collect();
    assert_eq!(listed, newest_first);

    let (tickets, pages) = all_pages(&app, "/v1/me/tickets?limit=4", Some(&user)).await;
    assert_eq!((tickets.len(), pages), (6, 2));
    assert!(tickets.iter().all(|t| t["user_id"] == "fan" && t["status"] == "valid"));
    let order_of_tickets: Vec<&Value> = tickets.iter().map(|t| &t["order_id"]).collect();
    assert_eq!(order_of_tickets[..3], [newest_first[0]; 3]);
    let unique: BTreeSet<&str> = tickets.iter().map(|t| t["ticket_id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), 6);

    let mine = app.get("/v1/me/orders", Some(&app.user("nobody"))).await.ok(StatusCode::OK);
    assert_eq!(mine, json!({ "items": [], "next_cursor": null }));
}
