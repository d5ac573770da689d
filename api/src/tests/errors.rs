use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::IntoResponse;
use raft_store::{HoldStatus, OrderStatus, Refusal};
use serde_json::json;

use super::{venue_body, TestApp};
use seams::ClusterError;
use seams::Fault;

use crate::ApiError;

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = TestApp::new();
    for text in ["{", "{\"name\": }", "nul", "[1,2", "\u{feff}{}"] {
        let reply = app.post_keyed("/v1/venues", &app.admin(), "k1", text).await;
        let doc = reply.problem(StatusCode::BAD_REQUEST, "bad_request");
        assert!(doc["detail"].as_str().unwrap().contains("JSON"), "{doc}");
    }
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_400_with_a_helpful_detail() {
    let app = TestApp::new();
    let mut wrong = venue_body();
    wrong["sections"][0]["rows"][0]["seats"] = json!("ten");
    let doc = app.post("/v1/venues", Some(&app.admin()), &wrong).await.problem(StatusCode::BAD_REQUEST, "bad_request");
    assert!(doc["detail"].as_str().unwrap().contains("invalid type"), "{doc}");
    let doc = app.post("/v1/venues", Some(&app.admin()), &json!({ "city": "x" })).await;
    let doc = doc.problem(StatusCode::BAD_REQUEST, "bad_request");
    assert!(doc["detail"].as_str().unwrap().contains("missing field `name`"), "{doc}");
    app.post("/v1/venues", Some(&app.admin()), &json!([1, 2])).await.problem(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn bodies_are_json_whatever_the_content_type_and_unknown_fields_are_ignored() {
    let app = TestApp::new();
    let mut body = venue_body();
    body["surprise"] = json!({ "nested": [1, 2, 3] });
    let request = Request::post("/v1/venues")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin()))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body.to_string()))
        .unwrap();
    let venue = app.send(request).await.ok(StatusCode::CREATED);
    assert!(venue.get("surprise").is_none());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_declared_or_streamed() {
    let app = TestApp::with(|c| c.body_limit_bytes = 1024);
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(4096));
    let declared = Request::post("/v1/venues")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin()))
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    app.send(declared).await.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let chunks = futures_util::stream::iter(
        big.into_bytes().chunks(500).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let streamed = Request::post("/v1/venues")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin()))
        .body(Body::from_stream(chunks))
        .unwrap();
    app.send(streamed).await.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(app.cluster.submits(), 0);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_problems() {
    let app = TestApp::new();
    app.get("/v2/events", None).await.problem(StatusCode::NOT_FOUND, "not_found");
    // `/` is the web client (`web.rs`); its files are under `/app/` only.
    app.get("/index.html", None).await.problem(StatusCode::NOT_FOUND, "not_found");
    app.get("/v1/events/", None).await.problem(StatusCode::NOT_FOUND, "not_found");
    let reply = app.call(Method::DELETE, "/v1/events", Some(&app.admin()), None).await;
    reply.problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let allow = reply.headers[header::ALLOW].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let reply = app.call(Method::PUT, "/v1/venues/ve0000000000000001", None, None).await;
    reply.problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn an_unavailable_store_is_503_with_retry_after() {
    let app = TestApp::new();
    app.cluster.set_fault(Some(Fault::Unavailable));
    let reply = app.get("/v1/events", None).await;
    reply.problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(reply.headers[header::RETRY_AFTER], "1");
    let reply = app.post("/v1/venues", Some(&app.admin()), &venue_body()).await;
    reply.problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
}

#[tokio::test]
async fn an_internal_store_error_is_500_and_its_detail_stays_in_the_log() {
    let app = TestApp::new();
    app.cluster.set_fault(Some(Fault::Internal));
    let reply = app.get("/v1/events", None).await;
    let doc = reply.problem(StatusCode::INTERNAL_SERVER_ERROR, "internal");
    assert!(!reply.json().to_string().contains("secret"), "{doc}");
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem() {
    let app = TestApp::new();
    app.cluster.set_fault(Some(Fault::Panic));
    let reply = app.get("/v1/events", None).await;
    reply.problem(StatusCode::INTERNAL_SERVER_ERROR, "internal");
    assert!(reply.headers.contains_key("x-request-id"));
    app.cluster.set_fault(None);
    app.get("/v1/events", None).await.ok(StatusCode::OK);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = TestApp::new();
    let request = Request::get("/healthz").header("x-request-id", "req-42").body(Body::empty()).unwrap();
    assert_eq!(app.send(request).await.headers["x-request-id"], "req-42");
    let generated = app.get("/healthz", None).await.headers["x-request-id"].clone();
    assert!(!generated.is_empty());
    let hostile = Request::get("/healthz").header("x-request-id", "a b").body(Body::empty()).unwrap();
    assert_ne!(app.send(hostile).await.headers["x-request-id"], "a b");
}

/// Every refusal of the state machine maps to the status and code API.md gives it.
#[test]
fn every_refusal_maps_to_its_status_code_and_fields() {
    let cases: Vec<(Refusal, u64, &str)> = vec![
        (Refusal::not_found("event x"), 404, "not_found"),
        (Refusal::Invalid { detail: "bad".into() }, 422, "bad_request"),
        (Refusal::Conflict { detail: "exists".into() }, 409, "conflict"),
        (Refusal::SeatsUnavailable { seats: vec!["A-1-1".into()] }, 409, "seats_unavailable"),
        (Refusal::SoldOut { section: "LAWN".into(), available: 1 }, 409, "sold_out"),
        (Refusal::LimitExceeded { limit: 4, current: 3, requested: 2 }, 422, "limit_exceeded"),
        (Refusal::HeldSeatsExceeded { limit: 20, current: 19, requested: 2 }, 422, "limit_exceeded"),
        (Refusal::NotOnSale { on_sale_at_ms: 0, starts_at_ms: 1 }, 403, "not_on_sale"),
        (Refusal::QueueRequired, 403, "queue_required"),
        (Refusal::HoldExpired, 409, "hold_expired"),
        (Refusal::HoldNotActive { status: HoldStatus::Released }, 409, "hold_not_active"),
        (
            Refusal::OrderNotCancellable { status: OrderStatus::PendingPayment, reason: "r".into() },
            409,
            "order_not_cancellable",
        ),
        (Refusal::IdempotencyKeyReused, 422, "idempotency_key_reused"),
        (Refusal::WrongGroup, 500, "internal"),
    ];
    for (refusal, status, code) in cases {
        let body = ApiError::from(refusal.clone()).problem().body();
        assert_eq!((body["status"].as_u64(), body["code"].as_str()), (Some(status), Some(code)), "{refusal:?}");
    }
    let body = ApiError::from(Refusal::SeatsUnavailable { seats: vec!["F-A-1".into()] }).problem().body();
    assert_eq!(body["unavailable"], json!(["F-A-1"]));
    let body = ApiError::from(Refusal::NotOnSale { on_sale_at_ms: 0, starts_at_ms: 1 }).problem().body();
    assert_eq!(body["on_sale_at"], "1970-01-01T00:00:00Z");
    let body = ApiError::from(Refusal::HoldNotActive { status: HoldStatus::CheckedOut }).problem().body();
    assert_eq!((body["status"].clone(), body["hold_status"].clone()), (json!(409), json!("checked_out")));
    let response = ApiError::from(ClusterError::Unavailable("x".into())).into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
}
