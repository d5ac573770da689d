//! Abuse limits: per-user and per-address rates, and the hold/release churn budget.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use serde_json::json;

use super::{Reply, TestApp};
use crate::LimitsConfig;

fn retry_after_s(reply: &Reply) -> u64 {
    reply.headers[header::RETRY_AFTER].to_str().unwrap().parse().expect("whole seconds")
}

#[tokio::test]
async fn a_user_over_the_rate_gets_429_rate_limited_with_retry_after() {
    let app = TestApp::with(|c| c.limits = LimitsConfig { user_per_s: 1, user_burst: 3, ..LimitsConfig::off() });
    let alice = app.user("alice");
    for _ in 0..3 {
        app.get("/v1/me/orders", Some(&alice)).await.ok(StatusCode::OK);
    }
    let refused = app.get("/v1/me/orders", Some(&alice)).await;
    let doc = refused.problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(retry_after_s(&refused) >= 1);
    assert_eq!(doc["retry_after_s"], retry_after_s(&refused));
    // Others are not affected: another user, anonymous browsing, an admin, the probes.
    app.get("/v1/me/orders", Some(&app.user("bob"))).await.ok(StatusCode::OK);
    app.get("/v1/events", None).await.ok(StatusCode::OK);
    for _ in 0..5 {
        app.get("/v1/events", Some(&app.admin())).await.ok(StatusCode::OK);
    }
    assert_eq!(app.get("/healthz", Some(&alice)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_per_address_limit_applies_to_connections_and_is_off_by_default() {
    let request = |ip: [u8; 4]| {
        let mut request = Request::get("/v1/events").body(Body::empty()).unwrap();
        request.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
        request
    };
    let default = TestApp::new();
    for _ in 0..300 {
        assert_eq!(default.send(request([10, 0, 0, 1])).await.status, StatusCode::OK);
    }

    let app = TestApp::with(|c| c.limits = LimitsConfig { ip_per_s: 1, ip_burst: 2, ..LimitsConfig::off() });
    for _ in 0..2 {
        assert_eq!(app.send(request([10, 0, 0, 1])).await.status, StatusCode::OK);
    }
    let refused = app.send(request([10, 0, 0, 1])).await;
    refused.problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(retry_after_s(&refused) >= 1);
    assert_eq!(app.send(request([10, 0, 0, 2])).await.status, StatusCode::OK);
    // Without connection info (the router called directly) there is no address to limit.
    app.get("/v1/events", None).await.ok(StatusCode::OK);
}

#[tokio::test]
async fn a_user_who_keeps_releasing_holds_cannot_hold_again_for_a_while() {
    let window = Duration::from_secs(600);
    let app = TestApp::with(|c| {
        c.limits = LimitsConfig { churn_releases_max: 3, churn_window: window, ..LimitsConfig::off() }
    });
    let event_id = app.event_id(json!({})).await;
    let (churner, other) = (app.user("churner"), app.user("other"));
    for _ in 0..3 {
        let hold = app.hold(&event_id, &churner, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
        let hold_id = hold["hold_id"].as_str().unwrap();
        assert_eq!(app.delete(&format!("/v1/holds/{hold_id}"), Some(&churner)).await.status, StatusCode::NO_CONTENT);
    }
    let submits = app.cluster.submits();
    let refused = app.hold(&event_id, &churner, json!({ "seats": ["FLOOR-A-1"] })).await;
    refused.problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // One release's worth refills in window / budget.
    assert_eq!(retry_after_s(&refused), 200);
    assert_eq!(app.cluster.submits(), submits, "a throttled hold never reaches the store");
    // Another user holds as usual; the churner can still browse and buy what they hold.
    app.hold(&event_id, &other, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    app.get(&format!("/v1/events/{event_id}/seats"), Some(&churner)).await.ok(StatusCode::OK);
}

#[tokio::test]
async fn refused_releases_do_not_spend_the_churn_budget() {
    let app = TestApp::with(|c| {
        c.limits = LimitsConfig { churn_releases_max: 1, churn_window: Duration::from_secs(60), ..LimitsConfig::off() }
    });
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let order = app.buy(&event_id, &user, &["FLOOR-A-1"]).await;
    let hold_id = order["hold_id"].as_str().unwrap();
    // Releasing a checked-out hold is refused by the state machine: nothing was released.
    app.delete(&format!("/v1/holds/{hold_id}"), Some(&user)).await.problem(StatusCode::CONFLICT, "hold_not_active");
    app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-2"] })).await.ok(StatusCode::CREATED);
}
