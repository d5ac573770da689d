use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{in_days, TestApp};

fn id(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_else(|| panic!("no {field} in {v}")).to_owned()
}

#[tokio::test]
async fn holding_seats_then_paying_confirms_the_order_and_issues_tickets() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1", "FLOOR-A-2"] })).await.ok(StatusCode::CREATED);
    let hold_id = id(&hold, "hold_id");
    assert_eq!(hold["event_id"], event_id.as_str());
    assert_eq!(hold["user_id"], "u1");
    assert_eq!(hold["seats"], json!(["FLOOR-A-1", "FLOOR-A-2"]));
    assert_eq!(hold["total"], json!({ "amount": 10000, "currency": "USD" }));
    assert_eq!(hold["status"], "active");
    assert!(hold.get("section").is_none() && hold.get("quantity").is_none());
    assert!(hold["expires_at"].as_str().unwrap() > hold["created_at"].as_str().unwrap());
    assert_eq!(app.get(&format!("/v1/holds/{hold_id}"), Some(&user)).await.ok(StatusCode::OK), hold);
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "held");

    let order = app.checkout(&hold_id, &user, "sandbox_ok").await.ok(StatusCode::CREATED);
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["hold_id"], hold_id.as_str());
    assert_eq!(order["user_id"], "u1");
    assert_eq!(order["total"], json!({ "amount": 10000, "currency": "USD" }));
    let tickets = order["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 2);
    assert_eq!(tickets[0]["seat"], "FLOOR-A-1");
    assert_eq!(tickets[0]["section"], "FLOOR");
    assert_eq!(tickets[0]["status"], "valid");
    assert_eq!(tickets[0]["order_id"], order["order_id"]);
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "sold");
    let read = app.get(&format!("/v1/orders/{}", id(&order, "order_id")), Some(&user)).await.ok(StatusCode::OK);
    assert_eq!(read, order);
    let hold = app.get(&format!("/v1/holds/{hold_id}"), Some(&user)).await.ok(StatusCode::OK);
    assert_eq!(hold["status"], "checked_out");
}

#[tokio::test]
async fn general_admission_is_held_and_sold_by_quantity() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "section": "LAWN", "quantity": 2 })).await.ok(StatusCode::CREATED);
    assert_eq!((hold["section"].clone(), hold["quantity"].clone()), (json!("LAWN"), json!(2)));
    assert_eq!(hold["seats"], json!([]));
    assert_eq!(hold["total"]["amount"], 4000);
    let order = app.checkout(&id(&hold, "hold_id"), &user, "sandbox_ok").await.ok(StatusCode::CREATED);
    let tickets = order["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 2);
    assert!(tickets[0].get("seat").is_none());
    assert_eq!(tickets[0]["section"], "LAWN");
}

#[tokio::test]
async fn a_hold_names_seats_or_a_quantity_and_never_both() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let submits = app.cluster.submits();
    for body in [
        json!({ "seats": ["FLOOR-A-1"], "section": "LAWN", "quantity": 1 }),
        json!({}),
        json!({ "section": "LAWN" }),
        json!({ "quantity": 2 }),
        json!({ "seats": [] }),
        json!({ "seats": "FLOOR-A-1" }),
        json!({ "seats": ["FLOOR-A-1", "FLOOR-A-1"] }),
        json!({ "seats": ["not a seat"] }),
        json!({ "section": "LAWN", "quantity": -1 }),
        json!({ "section": "LAWN", "quantity": 0 }),
        json!({ "section": "LAWN", "quantity": 1e10 }),
    ] {
        app.hold(&event_id, &user, body).await.problem(StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(app.cluster.submits(), submits);
}

#[tokio::test]
async fn unknown_seats_and_sections_are_404() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    for body in [
        json!({ "seats": ["FLOOR-Z-1"] }),
        json!({ "seats": ["FLOOR-A-11"] }),
        json!({ "seats": ["BALCONY-A-1"] }),
        json!({ "section": "BALCONY", "quantity": 1 }),
    ] {
        app.hold(&event_id, &user, body).await.problem(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn taken_seats_are_409_seats_unavailable_and_nothing_is_held() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let reply = app.hold(&event_id, &app.user("u2"), json!({ "seats": ["FLOOR-A-1", "FLOOR-A-2"] })).await;
    let doc = reply.problem(StatusCode::CONFLICT, "seats_unavailable");
    assert_eq!(doc["unavailable"], json!(["FLOOR-A-1"]));
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-2").await, "available");
}

#[tokio::test]
async fn too_large_a_quantity_is_409_sold_out_with_what_is_left() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    app.hold(&event_id, &app.user("u1"), json!({ "section": "LAWN", "quantity": 3 })).await.ok(StatusCode::CREATED);
    let reply = app.hold(&event_id, &app.user("u2"), json!({ "section": "LAWN", "quantity": 3 })).await;
    let doc = reply.problem(StatusCode::CONFLICT, "sold_out");
    assert_eq!((doc["section"].clone(), doc["available"].clone()), (json!("LAWN"), json!(2)));
}

#[tokio::test]
async fn the_per_user_limit_is_422_limit_exceeded() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({ "per_user_limit": 2 })).await;
    let user = app.user("u1");
    app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let reply = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-2", "FLOOR-A-3"] })).await;
    let doc = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded");
    assert_eq!(
        (doc["limit"].clone(), doc["current"].clone(), doc["requested"].clone()),
        (json!(2), json!(1), json!(2))
    );
}

#[tokio::test]
async fn before_on_sale_at_a_hold_is_403_not_on_sale() {
    let app = TestApp::new();
    let on_sale_at = in_days(7);
    let event_id = app.event_id(json!({ "on_sale_at": on_sale_at })).await;
    let reply = app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-1"] })).await;
    let doc = reply.problem(StatusCode::FORBIDDEN, "not_on_sale");
    assert_eq!(doc["on_sale_at"].as_str().unwrap()[..16], on_sale_at[..16]);
}

#[tokio::test]
async fn a_high_traffic_event_without_a_queue_pass_is_403_queue_required() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({ "high_traffic": true })).await;
    let reply = app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-1"] })).await;
    reply.problem(StatusCode::FORBIDDEN, "queue_required");
}

#[tokio::test]
async fn releasing_a_hold_frees_its_seats_at_once() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let path = format!("/v1/holds/{}", id(&hold, "hold_id"));
    let reply = app.delete(&path, Some(&user)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.body.is_empty());
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "available");
    assert_eq!(app.get(&path, Some(&user)).await.ok(StatusCode::OK)["status"], "released");
    // Releasing again changes nothing.
    assert_eq!(app.delete(&path, Some(&user)).await.status, StatusCode::NO_CONTENT);
    let doc =
        app.checkout(&id(&hold, "hold_id"), &user, "sandbox_ok").await.problem(StatusCode::CONFLICT, "hold_not_active");
    assert_eq!(doc["hold_status"], "released");
}

#[tokio::test]
async fn a_checked_out_hold_cannot_be_released() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let order = app.buy(&event_id, &user, &["FLOOR-A-1"]).await;
    let reply = app.delete(&format!("/v1/holds/{}", id(&order, "hold_id")), Some(&user)).await;
    let doc = reply.problem(StatusCode::CONFLICT, "hold_not_active");
    assert_eq!(doc["hold_status"], "checked_out");
}

#[tokio::test]
async fn checkout_after_the_hold_expired_is_409_hold_expired() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    app.cluster.advance(Duration::from_secs(11 * 60));
    assert_eq!(
        app.get(&format!("/v1/holds/{}", id(&hold, "hold_id")), Some(&user)).await.ok(StatusCode::OK)["status"],
        "expired"
    );
    app.checkout(&id(&hold, "hold_id"), &user, "sandbox_ok").await.problem(StatusCode::CONFLICT, "hold_expired");
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "available");
}

#[tokio::test]
async fn the_hold_ttl_comes_from_the_configuration() {
    let app = TestApp::with(|c| c.hold_ttl = Duration::from_secs(60));
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    app.cluster.advance(Duration::from_secs(61));
    app.checkout(&id(&hold, "hold_id"), &user, "sandbox_ok").await.problem(StatusCode::CONFLICT, "hold_expired");
}

#[tokio::test]
async fn a_declined_payment_is_an_order_that_failed_and_frees_the_seats() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let order = app.checkout(&id(&hold, "hold_id"), &user, "sandbox_decline").await.ok(StatusCode::CREATED);
    assert_eq!(order["status"], "payment_failed");
    assert_eq!(order["tickets"], json!([]));
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "available");
    // A failed order cannot be cancelled.
    let cancel = app.post(&format!("/v1/orders/{}/cancel", id(&order, "order_id")), Some(&user), &json!({})).await;
    let doc = cancel.problem(StatusCode::CONFLICT, "order_not_cancellable");
    assert_eq!(doc["order_status"], "payment_failed");
}

#[tokio::test]
async fn an_unknown_payment_method_is_400_before_anything_is_submitted() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let submits = app.cluster.submits();
    for method in ["bitcoin", "", "sandbox_ok\u{0}"] {
        app.checkout(&id(&hold, "hold_id"), &user, method).await.problem(StatusCode::BAD_REQUEST, "bad_request");
    }
    let reply = app.post(&format!("/v1/holds/{}/checkout", id(&hold, "hold_id")), Some(&user), &json!({})).await;
    reply.problem(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(app.cluster.submits(), submits);
    assert_eq!(app.get(&format!("/v1/holds/{}", id(&hold, "hold_id")), Some(&user)).await.json()["status"], "active");
}

#[tokio::test]
async fn a_second_checkout_of_the_same_hold_returns_the_same_order() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let first = app.checkout(&id(&hold, "hold_id"), &user, "sandbox_ok").await.ok(StatusCode::CREATED);
    let second = app.checkout(&id(&hold, "hold_id"), &user, "sandbox_ok").await.ok(StatusCode::CREATED);
    assert_eq!(first, second);
    // Even with another method, the recorded result stands.
    let third = app.checkout(&id(&hold, "hold_id"), &user, "sandbox_decline").await.ok(StatusCode::CREATED);
    assert_eq!(third, first);
}

#[tokio::test]
async fn cancelling_refunds_the_order_and_frees_its_seats() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let order = app.buy(&event_id, &user, &["FLOOR-A-1", "FLOOR-A-2"]).await;
    let path = format!("/v1/orders/{}/cancel", id(&order, "order_id"));
    let cancelled = app.post(&path, Some(&user), &json!({})).await.ok(StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["refunded"], true);
    assert!(cancelled["tickets"].as_array().unwrap().iter().all(|t| t["status"] == "cancelled"));
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "available");
    // Cancelling again (even with no body at all) answers the cancelled order.
    let again = app.call(axum::http::Method::POST, &path, Some(&user), None).await.ok(StatusCode::OK);
    assert_eq!(again["status"], "cancelled");
    let other = app.buy(&event_id, &app.user("u2"), &["FLOOR-A-1"]).await;
    assert_eq!(other["status"], "confirmed");
}

#[tokio::test]
async fn an_admin_reads_and_cancels_any_order() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let order = app.buy(&event_id, &app.user("u1"), &["FLOOR-A-1"]).await;
    let order_id = id(&order, "order_id");
    let admin = app.admin();
    assert_eq!(app.get(&format!("/v1/orders/{order_id}"), Some(&admin)).await.ok(StatusCode::OK), order);
    let cancelled = app.post(&format!("/v1/orders/{order_id}/cancel"), Some(&admin), &json!({})).await;
    assert_eq!(cancelled.ok(StatusCode::OK)["status"], "cancelled");
}

#[tokio::test]
async fn another_users_holds_and_orders_answer_404() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let owner = app.user("owner");
    let hold = app.hold(&event_id, &owner, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let order = app.buy(&event_id, &owner, &["FLOOR-A-2"]).await;
    let (hold_id, order_id) = (id(&hold, "hold_id"), id(&order, "order_id"));
    let thief = app.user("thief");
    app.get(&format!("/v1/holds/{hold_id}"), Some(&thief)).await.problem(StatusCode::NOT_FOUND, "not_found");
    app.delete(&format!("/v1/holds/{hold_id}"), Some(&thief)).await.problem(StatusCode::NOT_FOUND, "not_found");
    app.checkout(&hold_id, &thief, "sandbox_ok").await.problem(StatusCode::NOT_FOUND, "not_found");
    app.get(&format!("/v1/orders/{order_id}"), Some(&thief)).await.problem(StatusCode::NOT_FOUND, "not_found");
    let cancel = app.post(&format!("/v1/orders/{order_id}/cancel"), Some(&thief), &json!({})).await;
    cancel.problem(StatusCode::NOT_FOUND, "not_found");
    // Nothing changed for the owner.
    assert_eq!(app.get(&format!("/v1/holds/{hold_id}"), Some(&owner)).await.json()["status"], "active");
    assert_eq!(app.get(&format!("/v1/orders/{order_id}"), Some(&owner)).await.json()["status"], "confirmed");
}

#[tokio::test]
async fn malformed_and_unknown_hold_and_order_ids_are_404() {
    let app = TestApp::new();
    let user = app.user("u1");
    for hold_id in [
        "ho-ev0000000000000001-1",
        "ho-nope",
        "or-ev0000000000000001-1",
        "ho-ev0000000000000001-99999999999999999999999",
    ] {
        app.get(&format!("/v1/holds/{hold_id}"), Some(&user)).await.problem(StatusCode::NOT_FOUND, "not_found");
        app.delete(&format!("/v1/holds/{hold_id}"), Some(&user)).await.problem(StatusCode::NOT_FOUND, "not_found");
        app.checkout(hold_id, &user, "sandbox_ok").await.problem(StatusCode::NOT_FOUND, "not_found");
    }
    for order_id in ["or-ev0000000000000001-1", "or-", "ho-ev0000000000000001-1"] {
        app.get(&format!("/v1/orders/{order_id}"), Some(&user)).await.problem(StatusCode::NOT_FOUND, "not_found");
        let cancel = app.post(&format!("/v1/orders/{order_id}/cancel"), Some(&user), &json!({})).await;
        cancel.problem(StatusCode::NOT_FOUND, "not_found");
    }
}
