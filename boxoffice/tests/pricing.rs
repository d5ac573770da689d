//! Dynamic pricing through the real binary: an admin sets rules, holds move the price and lock
//! the one they were made at, and the event, its seat map and search show the current price.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::{json, Value};

fn floor_price(event: &Value) -> i64 {
    event["sections"].as_array().unwrap().iter().find(|s| s["section"] == "FLOOR").unwrap()["price"]["amount"]
        .as_i64()
        .unwrap()
}

async fn hold(server: &Server, token: &str, event: &str, seats: &[&str]) -> Value {
    let path = format!("/v1/events/{event}/holds");
    let (status, hold) = server.call("POST", &path, Some(token), Some(json!({"seats": seats})), None).await;
    assert_eq!(status, 201, "{hold}");
    hold
}

#[tokio::test]
async fn demand_moves_the_price_that_holds_lock_and_readers_see() {
    let server = Server::start(&[]).await;
    let admin = server.token("admin", "admin").await;
    let buyer = server.token("buyer", "user").await;
    // 10 seats at 50.00: +20% from 20% taken, +50% from 50%, never above 70.00.
    let event = server.create_event(&admin, 1, 10, 10, json!({})).await;
    let usd = |amount: i64| json!({"amount": amount, "currency": "USD"});
    let rules = json!({"rules": [{
        "section": "FLOOR", "base": usd(5000), "floor": usd(4000), "ceiling": usd(7000),
        "demand_steps": [{"at_least": 20, "adjust_percent": 20}, {"at_least": 50, "adjust_percent": 50}]
    }]});
    let path = format!("/v1/events/{event}/pricing");
    // Only an admin sets or reads rules; rules the event cannot take change nothing.
    let (status, _) = server.call("PUT", &path, Some(&buyer), Some(rules.clone()), None).await;
    assert_eq!(status, 403);
    let bad = json!({"rules": [{"section": "NOPE", "base": usd(5000), "floor": usd(4000), "ceiling": usd(7000)}]});
    let (status, body) = server.call("PUT", &path, Some(&admin), Some(bad), None).await;
    assert_eq!(status, 422, "{body}");
    let bad = json!({"rules": [{"section": "FLOOR", "base": usd(5000), "floor": usd(4000), "ceiling": usd(7000),
        "demand_steps": [{"at_least": 101, "adjust_percent": 20}]}]});
    let (status, body) = server.call("PUT", &path, Some(&admin), Some(bad), None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, set) = server.call("PUT", &path, Some(&admin), Some(rules), None).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["rules"][0]["demand_steps"][1]["adjust_percent"], 50);
    let (status, read) = server.get(&path, Some(&admin)).await;
    assert_eq!((status, &read["rules"]), (200, &set["rules"]));

    let first = hold(&server, &buyer, &event, &["FLOOR-A-1", "FLOOR-A-2"]).await;
    assert_eq!(first["total"]["amount"], 10_000, "two at the base price");
    let (_, view) = server.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(floor_price(&view), 6_000, "20% taken: +20%");
    let second = hold(&server, &buyer, &event, &["FLOOR-A-3", "FLOOR-A-4", "FLOOR-A-5"]).await;
    assert_eq!(second["total"]["amount"], 18_000, "three at 60.00");
    let (_, map) = server.get(&format!("/v1/events/{event}/seats"), None).await;
    let seat = map["seats"].as_array().unwrap().iter().find(|s| s["id"] == "FLOOR-A-9").unwrap().clone();
    assert_eq!(seat["price"]["amount"], 7_000, "50% taken: +50%, the ceiling");
    // The first hold checks out at the price it locked.
    let path = format!("/v1/holds/{}/checkout", first["hold_id"].as_str().unwrap());
    let (status, order) =
        server.call("POST", &path, Some(&buyer), Some(json!({"payment_method": "sandbox_ok"})), None).await;
    assert_eq!((status, order["total"]["amount"].as_i64()), (201, Some(10_000)), "{order}");

    // Search shows the price as it is now.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = server.get("/v1/search?q=Test%20Concert", None).await;
        assert_eq!(status, 200, "{page}");
        let item = page["items"].as_array().unwrap().iter().find(|i| i["event_id"] == event.as_str()).cloned();
        if item.as_ref().is_some_and(|i| i["price_range"]["max"]["amount"] == 7_000) {
            break;
        }
        assert!(Instant::now() < deadline, "search never showed the new price: {item:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Releasing seats brings the price back down.
    let path = format!("/v1/holds/{}", second["hold_id"].as_str().unwrap());
    let (status, _) = server.call("DELETE", &path, Some(&buyer), None, None).await;
    assert_eq!(status, 204);
    let (_, view) = server.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(floor_price(&view), 6_000);
}
