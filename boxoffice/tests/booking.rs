//! Booking through the real binary over HTTP: the race for seats (I1), the whole flow, expiry (I3)
//! and idempotent retries (I4).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Server};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const USERS: usize = 50;
const ATTEMPTS_PER_USER: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_users_racing_for_overlapping_seats_never_share_a_seat() {
    let server = Arc::new(Server::start(&[]).await);
    let admin = server.token("admin", "admin").await;
    // 2 rows × 15 seats: far fewer seats than the users want, so they collide constantly.
    let event = server.create_event(&admin, 2, 15, 40, json!({})).await;
    let seat_ids: Vec<String> =
        (0..2).flat_map(|r| (1..=15).map(move |n| format!("FLOOR-{}-{n}", common::row_name(r)))).collect();

    let mut tasks = Vec::new();
    for u in 0..USERS {
        let server = server.clone();
        let event = event.clone();
        let seat_ids = seat_ids.clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("racer{u}");
            let token = server.token(&user, "user").await;
            let mut rng = rand::rngs::StdRng::seed_from_u64(u as u64);
            let mut won: Vec<(Value, Option<Value>)> = Vec::new();
            for _ in 0..ATTEMPTS_PER_USER {
                let (status, body) = if rng.gen_bool(0.8) {
                    let n = rng.gen_range(1..=3);
                    let seats: Vec<&String> = seat_ids.choose_multiple(&mut rng, n).collect();
                    server
                        .call(
                            "POST",
                            &format!("/v1/events/{event}/holds"),
                            Some(&token),
                            Some(json!({"seats": seats})),
                            None,
                        )
                        .await
                } else {
                    let body = json!({"section": "LAWN", "quantity": rng.gen_range(1..=3)});
                    server.call("POST", &format!("/v1/events/{event}/holds"), Some(&token), Some(body), None).await
                };
                match status {
                    201 => {
                        let hold = body;
                        let order = if rng.gen_bool(0.5) {
                            let path = format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap());
                            let (s, order) = server
                                .call("POST", &path, Some(&token), Some(json!({"payment_method": "sandbox_ok"})), None)
                                .await;
                            assert_eq!(s, 201, "{order}");
                            assert_eq!(order["status"], "confirmed");
                            Some(order)
                        } else {
                            None
                        };
                        won.push((hold, order));
                    }
                    409 => assert!(body["code"] == "seats_unavailable" || body["code"] == "sold_out", "{body}"),
                    other => panic!("unexpected {other}: {body}"),
                }
            }
            (user, won)
        }));
    }
    let mut seat_owner: BTreeMap<String, String> = BTreeMap::new();
    let mut general_taken = 0u64;
    let mut sold_seats = BTreeSet::new();
    for task in tasks {
        let (user, won) = task.await.expect("racer");
        for (hold, order) in won {
            for seat in hold["seats"].as_array().unwrap() {
                let seat = seat.as_str().unwrap().to_owned();
                if let Some(previous) = seat_owner.insert(seat.clone(), user.clone()) {
                    panic!("seat {seat} acknowledged to both {previous} and {user}");
                }
                if order.is_some() {
                    sold_seats.insert(seat);
                }
            }
            general_taken += hold["quantity"].as_u64().unwrap_or(0);
        }
    }
    assert!(seat_owner.len() > 10, "the race produced bookings");
    assert!(general_taken <= 40, "general admission oversold: {general_taken}");

    // The store agrees with what clients were told, seat by seat.
    let statuses = server.seat_statuses(&event).await;
    for (seat, status) in &statuses {
        let expected = if sold_seats.contains(seat) {
            "sold"
        } else if seat_owner.contains_key(seat) {
            "held"
        } else {
            "available"
        };
        assert_eq!(status, expected, "seat {seat}");
    }
    let (_, detail) = server.get(&format!("/v1/events/{event}"), None).await;
    let lawn = detail["sections"].as_array().unwrap().iter().find(|s| s["section"] == "LAWN").unwrap().clone();
    assert_eq!(lawn["held"].as_u64().unwrap() + lawn["sold"].as_u64().unwrap(), general_taken, "{lawn}");
}

#[tokio::test]
async fn hold_checkout_tickets_and_cancel_work_end_to_end() {
    let server = Server::start(&[]).await;
    let admin = server.token("admin", "admin").await;
    let event = server.create_event(&admin, 1, 10, 5, json!({})).await;
    let alice = server.token("alice", "user").await;

    let (s, hold) = server
        .call(
            "POST",
            &format!("/v1/events/{event}/holds"),
            Some(&alice),
            Some(json!({"seats": ["FLOOR-A-1", "FLOOR-A-2"]})),
            None,
        )
        .await;
    assert_eq!(s, 201, "{hold}");
    assert_eq!(hold["status"], "active");
    assert_eq!(hold["user_id"], "alice");
    assert_eq!(hold["total"], json!({"amount": 10000, "currency": "USD"}));
    let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
    assert_eq!(server.seat_statuses(&event).await["FLOOR-A-1"], "held");

    let (s, fetched) = server.get(&format!("/v1/holds/{hold_id}"), Some(&alice)).await;
    assert_eq!((s, &fetched["hold_id"]), (200, &hold["hold_id"]));

    let (s, order) = server
        .call(
            "POST",
            &format!("/v1/holds/{hold_id}/checkout"),
            Some(&alice),
            Some(json!({"payment_method": "sandbox_ok"})),
            None,
        )
        .await;
    assert_eq!(s, 201, "{order}");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["tickets"].as_array().unwrap().len(), 2);
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    assert_eq!(server.seat_statuses(&event).await["FLOOR-A-1"], "sold");

    // A second checkout of the same hold returns the same order.
    let (s, again) = server
        .call(
            "POST",
            &format!("/v1/holds/{hold_id}/checkout"),
            Some(&alice),
            Some(json!({"payment_method": "sandbox_ok"})),
            None,
        )
        .await;
    assert_eq!((s, &again["order_id"]), (201, &order["order_id"]));

    let (s, tickets) = server.get("/v1/me/tickets", Some(&alice)).await;
    assert_eq!(s, 200);
    let seats: BTreeSet<&str> =
        tickets["items"].as_array().unwrap().iter().map(|t| t["seat"].as_str().unwrap()).collect();
    assert_eq!(seats, BTreeSet::from(["FLOOR-A-1", "FLOOR-A-2"]));
    let (s, orders) = server.get("/v1/me/orders", Some(&alice)).await;
    assert_eq!((s, orders["items"].as_array().unwrap().len()), (200, 1));

    let (s, cancelled) = server.call("POST", &format!("/v1/orders/{order_id}/cancel"), Some(&alice), None, None).await;
    assert_eq!(s, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["tickets"].as_array().unwrap().iter().all(|t| t["status"] == "cancelled"));
    assert_eq!(server.seat_statuses(&event).await["FLOOR-A-1"], "available");

    // A declined payment gives the seats back at once.
    let (_, hold) = server
        .call(
            "POST",
            &format!("/v1/events/{event}/holds"),
            Some(&alice),
            Some(json!({"section": "LAWN", "quantity": 2})),
            None,
        )
        .await;
    let path = format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap());
    let (s, declined) =
        server.call("POST", &path, Some(&alice), Some(json!({"payment_method": "sandbox_decline"})), None).await;
    assert_eq!((s, &declined["status"]), (201, &json!("payment_failed")), "{declined}");
    let (_, detail) = server.get(&format!("/v1/events/{event}"), None).await;
    let lawn = detail["sections"].as_array().unwrap().iter().find(|s| s["section"] == "LAWN").unwrap().clone();
    assert_eq!(lawn["available"], 5, "{lawn}");

    // Releasing a hold frees its seats at once.
    let (_, hold) = server
        .call("POST", &format!("/v1/events/{event}/holds"), Some(&alice), Some(json!({"seats": ["FLOOR-A-9"]})), None)
        .await;
    let (s, _) = server
        .call("DELETE", &format!("/v1/holds/{}", hold["hold_id"].as_str().unwrap()), Some(&alice), None, None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(server.seat_statuses(&event).await["FLOOR-A-9"], "available");
}

#[tokio::test]
async fn a_short_hold_expires_and_its_seats_can_be_held_again() {
    let server = Server::start(&["--hold-ttl", "1s"]).await;
    let admin = server.token("admin", "admin").await;
    let event = server.create_event(&admin, 1, 5, 5, json!({})).await;
    let alice = server.token("alice", "user").await;
    let bob = server.token("bob", "user").await;
    let holds = format!("/v1/events/{event}/holds");

    let (s, hold) = server.call("POST", &holds, Some(&alice), Some(json!({"seats": ["FLOOR-A-1"]})), None).await;
    assert_eq!(s, 201, "{hold}");
    let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
    let (s, body) = server.call("POST", &holds, Some(&bob), Some(json!({"seats": ["FLOOR-A-1"]})), None).await;
    common::assert_problem(s, &body, 409, "seats_unavailable");
    assert_eq!(body["unavailable"], json!(["FLOOR-A-1"]));

    eventually(Duration::from_secs(10), "the hold to expire", || async {
        let (_, h) = server.get(&format!("/v1/holds/{hold_id}"), Some(&alice)).await;
        (h["status"] == "expired").then_some(())
    })
    .await;
    assert_eq!(server.seat_statuses(&event).await["FLOOR-A-1"], "available");
    let (s, body) = server
        .call(
            "POST",
            &format!("/v1/holds/{hold_id}/checkout"),
            Some(&alice),
            Some(json!({"payment_method": "sandbox_ok"})),
            None,
        )
        .await;
    common::assert_problem(s, &body, 409, "hold_expired");
    let (s, body) = server.call("POST", &holds, Some(&bob), Some(json!({"seats": ["FLOOR-A-1"]})), None).await;
    assert_eq!(s, 201, "{body}");
    // Counted once, whichever entry ended it (the leader's `Expire` or bob's hold), by the task
    // that proposed that entry, which may count after bob's answer went out.
    let counted = eventually(Duration::from_secs(5), "the expiry to be counted", || async {
        let n = counter(&server, "boxoffice_expired_holds_total ").await;
        (n > 0.0).then_some(n)
    })
    .await;
    assert_eq!(counted, 1.0, "counted once");
}

#[tokio::test]
async fn a_replayed_idempotency_key_returns_the_first_answer_and_books_once() {
    let server = Server::start(&[]).await;
    let admin = server.token("admin", "admin").await;
    let event = server.create_event(&admin, 1, 5, 5, json!({})).await;
    let alice = server.token("alice", "user").await;
    let holds = format!("/v1/events/{event}/holds");
    let body = json!({"seats": ["FLOOR-A-1", "FLOOR-A-2"]});

    let first = server.call("POST", &holds, Some(&alice), Some(body.clone()), Some("key-1")).await;
    assert_eq!(first.0, 201, "{}", first.1);
    for _ in 0..3 {
        assert_eq!(server.call("POST", &holds, Some(&alice), Some(body.clone()), Some("key-1")).await, first);
    }
    let (_, detail) = server.get(&format!("/v1/events/{event}"), None).await;
    let floor = detail["sections"].as_array().unwrap().iter().find(|s| s["section"] == "FLOOR").unwrap().clone();
    assert_eq!(floor["held"], 2, "booked once: {floor}");

    // The same key with another body is refused and changes nothing.
    let (s, problem) =
        server.call("POST", &holds, Some(&alice), Some(json!({"seats": ["FLOOR-A-3"]})), Some("key-1")).await;
    common::assert_problem(s, &problem, 422, "idempotency_key_reused");
    assert_eq!(server.seat_statuses(&event).await["FLOOR-A-3"], "available");

    // Checkout retried with a key gives the same order once.
    let hold_id = first.1["hold_id"].as_str().unwrap();
    let path = format!("/v1/holds/{hold_id}/checkout");
    let pay = json!({"payment_method": "sandbox_ok"});
    let a = server.call("POST", &path, Some(&alice), Some(pay.clone()), Some("pay-1")).await;
    let b = server.call("POST", &path, Some(&alice), Some(pay), Some("pay-1")).await;
    assert_eq!(a.0, 201, "{}", a.1);
    assert_eq!(a, b);
    let (_, orders) = server.get("/v1/me/orders", Some(&alice)).await;
    assert_eq!(orders["items"].as_array().unwrap().len(), 1);
}

/// The value of a counter in the server's `/metrics`, 0 when absent.
async fn counter(server: &Server, line_start: &str) -> f64 {
    let response = server.http.get(format!("{}/metrics", server.url)).send().await.expect("GET /metrics");
    let text = response.text().await.expect("metrics text");
    text.lines().find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test]
async fn a_refused_hold_without_a_key_writes_nothing_and_with_a_key_is_remembered() {
    let server = Server::start(&[]).await;
    let admin = server.token("admin", "admin").await;
    let event = server.create_event(&admin, 1, 5, 5, json!({})).await;
    let (alice, bob) = (server.token("alice", "user").await, server.token("bob", "user").await);
    let holds = format!("/v1/events/{event}/holds");
    let seat = json!({"seats": ["FLOOR-A-1"]});
    let quick = r#"boxoffice_quick_refusals_total{command="hold"}"#;

    let (s, alices) = server.call("POST", &holds, Some(&alice), Some(seat.clone()), None).await;
    assert_eq!(s, 201, "{alices}");
    let before = counter(&server, quick).await;
    // Without a key: refused from the leader's confirmed state, the same problem document.
    let (s, body) = server.call("POST", &holds, Some(&bob), Some(seat.clone()), None).await;
    common::assert_problem(s, &body, 409, "seats_unavailable");
    assert_eq!(body["unavailable"], json!(["FLOOR-A-1"]), "{body}");
    assert_eq!(counter(&server, quick).await, before + 1.0, "answered without a log entry");
    // With a key: the refusal goes through the log, so a retry gets it back even after the seat
    // was freed.
    let keyed = server.call("POST", &holds, Some(&bob), Some(seat.clone()), Some("bob-1")).await;
    common::assert_problem(keyed.0, &keyed.1, 409, "seats_unavailable");
    assert_eq!(counter(&server, quick).await, before + 1.0, "a keyed refusal is written");
    let path = format!("/v1/holds/{}", alices["hold_id"].as_str().unwrap());
    let (s, body) = server.call("DELETE", &path, Some(&alice), None, None).await;
    assert!(s == 200 || s == 204, "{s} {body}");
    assert_eq!(server.call("POST", &holds, Some(&bob), Some(seat.clone()), Some("bob-1")).await, keyed);
    // A new request without a key sees the seat free.
    let (s, body) = server.call("POST", &holds, Some(&bob), Some(seat), None).await;
    assert_eq!(s, 201, "{body}");
}
