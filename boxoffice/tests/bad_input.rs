//! Bad input gets a clear 4xx problem document and changes nothing (I6).

mod common;

use common::{assert_problem, Server};
use serde_json::json;

#[tokio::test]
async fn bad_input_gets_problem_documents_and_changes_nothing() {
    let server = Server::start(&["--body-limit-bytes", "65536"]).await;
    let admin = server.token("admin", "admin").await;
    let event = server.create_event(&admin, 1, 5, 5, json!({})).await;
    let alice = server.token("alice", "user").await;
    let bob = server.token("bob", "user").await;
    let holds = format!("/v1/events/{event}/holds");
    let before = server.seat_statuses(&event).await;
    let (_, detail_before) = server.get(&format!("/v1/events/{event}"), None).await;

    // Malformed JSON, wrong types, missing fields, both selections, hostile strings.
    for body in [
        r#"{"seats": ["FLOOR-A-1""#,
        "not json",
        r#"{"seats": "FLOOR-A-1"}"#,
        r#"{"seats": [1, 2]}"#,
        r#"{"section": "LAWN", "quantity": "two"}"#,
        r#"{"section": "LAWN", "quantity": -1}"#,
        "{}",
        r#"{"seats": ["FLOOR-A-1"], "section": "LAWN", "quantity": 1}"#,
        "[]",
        "null",
    ] {
        let (s, problem) = server.call_raw("POST", &holds, Some(&alice), Some(body), None).await;
        assert_problem(s, &problem, 400, "bad_request");
    }
    // Unknown ids: event, seat, hold, order, venue; ids of the wrong shape too.
    let (s, p) = server
        .call("POST", "/v1/events/ev0123456789abcdef/holds", Some(&alice), Some(json!({"seats": ["FLOOR-A-1"]})), None)
        .await;
    assert_problem(s, &p, 404, "not_found");
    let (s, p) = server.call("POST", &holds, Some(&alice), Some(json!({"seats": ["FLOOR-Z-99"]})), None).await;
    assert_problem(s, &p, 404, "not_found");
    let (s, p) = server
        .call("POST", &holds, Some(&alice), Some(json!({"seats": ["FLOOR-A-1\u{0}; DROP TABLE seats"]})), None)
        .await;
    assert!(s == 404 || s == 400, "{p}");
    for path in [
        "/v1/holds/ho-ev0123456789abcdef-1",
        "/v1/holds/nonsense",
        "/v1/orders/or-ev0123456789abcdef-1",
        "/v1/events/ev0123456789abcdef",
        "/v1/venues/ve0123456789abcdef",
        "/v1/events/%00%ff",
    ] {
        let (s, p) = server.get(path, Some(&alice)).await;
        assert_problem(s, &p, 404, "not_found");
    }
    // An oversized body.
    let huge = json!({"seats": vec!["FLOOR-A-1"; 20_000]});
    let (s, p) = server.call("POST", &holds, Some(&alice), Some(huge), None).await;
    assert_problem(s, &p, 413, "payload_too_large");
    // Missing, malformed and forged tokens; the wrong role.
    let (s, p) = server.call("POST", &holds, None, Some(json!({"seats": ["FLOOR-A-1"]})), None).await;
    assert_problem(s, &p, 401, "unauthorized");
    let (s, p) = server.call("POST", &holds, Some("not-a-jwt"), Some(json!({"seats": ["FLOOR-A-1"]})), None).await;
    assert_problem(s, &p, 401, "unauthorized");
    let forged = api::mint_token("some-other-secret", "alice", "admin", std::time::Duration::from_secs(600));
    let (s, p) = server.call("POST", &holds, Some(&forged), Some(json!({"seats": ["FLOOR-A-1"]})), None).await;
    assert_problem(s, &p, 401, "unauthorized");
    let (s, p) = server.call("POST", "/v1/venues", Some(&alice), Some(json!({"name": "x"})), None).await;
    assert_problem(s, &p, 403, "forbidden");
    // Another user's hold and order answer 404, and stay untouched.
    let (_, hold) = server.call("POST", &holds, Some(&alice), Some(json!({"seats": ["FLOOR-A-5"]})), None).await;
    let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
    let (s, p) = server.get(&format!("/v1/holds/{hold_id}"), Some(&bob)).await;
    assert_problem(s, &p, 404, "not_found");
    let (s, p) = server.call("DELETE", &format!("/v1/holds/{hold_id}"), Some(&bob), None, None).await;
    assert_problem(s, &p, 404, "not_found");
    let (s, p) = server
        .call(
            "POST",
            &format!("/v1/holds/{hold_id}/checkout"),
            Some(&bob),
            Some(json!({"payment_method": "sandbox_ok"})),
            None,
        )
        .await;
    assert_problem(s, &p, 404, "not_found");
    let (_, order) = server
        .call(
            "POST",
            &format!("/v1/holds/{hold_id}/checkout"),
            Some(&alice),
            Some(json!({"payment_method": "sandbox_ok"})),
            None,
        )
        .await;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let (s, p) = server.call("POST", &format!("/v1/orders/{order_id}/cancel"), Some(&bob), None, None).await;
    assert_problem(s, &p, 404, "not_found");
    let (s, p) = server.get(&format!("/v1/orders/{order_id}"), Some(&bob)).await;
    assert_problem(s, &p, 404, "not_found");
    // An unknown payment method, and bad list parameters.
    let (_, hold2) = server.call("POST", &holds, Some(&alice), Some(json!({"seats": ["FLOOR-A-4"]})), None).await;
    let (s, p) = server
        .call(
            "POST",
            &format!("/v1/holds/{}/checkout", hold2["hold_id"].as_str().unwrap()),
            Some(&alice),
            Some(json!({"payment_method": "cash"})),
            None,
        )
        .await;
    assert_problem(s, &p, 400, "bad_request");
    for q in ["limit=0", "limit=1000", "limit=abc", "cursor=%%%", "from=yesterday"] {
        let (s, p) = server.get(&format!("/v1/events?{q}"), None).await;
        assert_problem(s, &p, 400, "bad_request");
    }

    // Nothing changed but alice's two holds and her order.
    let after = server.seat_statuses(&event).await;
    for (seat, status) in &before {
        let expected = match seat.as_str() {
            "FLOOR-A-5" => "sold",
            "FLOOR-A-4" => "held",
            _ => status.as_str(),
        };
        assert_eq!(after[seat], expected, "seat {seat}");
    }
    let (_, detail_after) = server.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(detail_after["name"], detail_before["name"]);
    assert_eq!(detail_after["sections"][1], detail_before["sections"][1], "general admission untouched");
}

#[tokio::test]
async fn problems_use_the_problem_media_type_and_unknown_routes_are_problems_too() {
    let server = Server::start(&[]).await;
    let resp = server.http.get(format!("{}/v1/nowhere", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_problem(404, &body, 404, "not_found");
    let resp = server.http.delete(format!("{}/v1/events", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = server.http.post(format!("{}/v1/events/x/holds", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
}
