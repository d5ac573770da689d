//! Acknowledged bookings survive `kill -9` (I2), and data survives restarts.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Server;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_bookings_keeps_every_acknowledged_hold_and_order() {
    let mut server = Server::start(&[]).await;
    let admin = server.token("admin", "admin").await;
    let event = server.create_event(&admin, 10, 20, 100, json!({})).await;
    let url = server.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    // Holds whose 201 a buyer has read: what the kill waits for (the event's counts include
    // holds applied whose answers the kill may still cut off).
    let acked = Arc::new(AtomicUsize::new(0));

    // Eight buyers book distinct seats as fast as they can; each records what was acknowledged.
    let mut buyers = Vec::new();
    for b in 0..8usize {
        let token = server.token(&format!("buyer{b}"), "user").await;
        let (url, event, stop, acked) = (url.clone(), event.clone(), stop.clone(), acked.clone());
        buyers.push(tokio::spawn(async move {
            let http = common::client();
            let mut acked_holds = Vec::new();
            let mut acked_orders = Vec::new();
            for i in 0..25usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seat = format!("FLOOR-{}-{}", common::row_name(b), i % 20 + 1);
                let resp = http
                    .post(format!("{url}/v1/events/{event}/holds"))
                    .bearer_auth(&token)
                    .json(&json!({"seats": [seat]}))
                    .send()
                    .await;
                let Ok(resp) = resp else { break };
                if resp.status() != 201 {
                    continue;
                }
                let Ok(hold) = resp.json::<serde_json::Value>().await else { break };
                let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
                acked_holds.push(hold_id.clone());
                acked.fetch_add(1, Ordering::Relaxed);
                if i % 2 == 0 {
                    let resp = http
                        .post(format!("{url}/v1/holds/{hold_id}/checkout"))
                        .bearer_auth(&token)
                        .json(&json!({"payment_method": "sandbox_ok"}))
                        .send()
                        .await;
                    if let Ok(resp) = resp {
                        if resp.status() == 201 {
                            if let Ok(order) = resp.json::<serde_json::Value>().await {
                                acked_orders.push(order["order_id"].as_str().unwrap().to_owned());
                            }
                        }
                    }
                }
            }
            (token, acked_holds, acked_orders)
        }));
    }
    // Let bookings flow, then pull the plug mid-stream.
    common::eventually(Duration::from_secs(30), "some bookings", || async {
        (acked.load(Ordering::Relaxed) >= 40).then_some(())
    })
    .await;
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for b in buyers {
        results.push(b.await.expect("buyer"));
    }
    server.crash_and_restart().await;

    let (mut holds, mut orders) = (0, 0);
    for (token, acked_holds, acked_orders) in results {
        for hold_id in acked_holds {
            let (s, hold) = server.get(&format!("/v1/holds/{hold_id}"), Some(&token)).await;
            assert_eq!(s, 200, "acknowledged hold {hold_id} lost: {hold}");
            assert!(hold["status"] == "active" || hold["status"] == "checked_out", "{hold}");
            holds += 1;
        }
        for order_id in acked_orders {
            let (s, order) = server.get(&format!("/v1/orders/{order_id}"), Some(&token)).await;
            assert_eq!(s, 200, "acknowledged order {order_id} lost: {order}");
            assert_eq!(order["status"], "confirmed", "{order}");
            orders += 1;
        }
    }
    eprintln!("checked {holds} acknowledged holds and {orders} orders after kill -9");
    assert!(holds >= 40 && orders > 0, "{holds} holds, {orders} orders checked");
}

#[tokio::test]
async fn demo_data_is_there_and_survives_restarts_without_duplicates() {
    let mut server = Server::start_with_demo().await;
    let (s, events) = server.get("/v1/events?limit=100", None).await;
    assert_eq!(s, 200, "{events}");
    let items = events["items"].as_array().unwrap().clone();
    assert!(items.len() >= 5, "{events}");
    assert!(items.iter().any(|e| e["category"] == "theatre"));
    let high_traffic =
        items.iter().find(|e| e["name"].as_str().unwrap().contains("Aurora")).expect("the high-traffic demo event");
    let (_, detail) = server.get(&format!("/v1/events/{}", high_traffic["event_id"].as_str().unwrap()), None).await;
    assert_eq!(detail["high_traffic"], true);
    let kinds: Vec<&str> = detail["sections"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"seated") && kinds.contains(&"general"), "{kinds:?}");

    // A hold made before a restart is still there after it, and the demo is not seeded twice.
    let alice = server.token("alice", "user").await;
    let jazz = items.iter().find(|e| e["name"] == "Jazz in the Park").unwrap()["event_id"].as_str().unwrap().to_owned();
    let (s, hold) = server
        .call(
            "POST",
            &format!("/v1/events/{jazz}/holds"),
            Some(&alice),
            Some(json!({"section": "LAWN", "quantity": 2})),
            None,
        )
        .await;
    assert_eq!(s, 201, "{hold}");
    server.crash_and_restart().await;
    let (_, after) = server.get("/v1/events?limit=100", None).await;
    assert_eq!(after["items"].as_array().unwrap().len(), items.len());
    let (s, again) = server.get(&format!("/v1/holds/{}", hold["hold_id"].as_str().unwrap()), Some(&alice)).await;
    assert_eq!((s, &again["status"]), (200, &json!("active")));
}
