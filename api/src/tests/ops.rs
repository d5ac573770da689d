use axum::http::{header, StatusCode};
use serde_json::Value;

use super::TestApp;

#[tokio::test]
async fn healthz_answers_while_the_process_lives() {
    let app = TestApp::new();
    assert_eq!(app.get("/healthz", None).await.ok(StatusCode::OK)["status"], "ok");
}

#[tokio::test]
async fn readyz_follows_the_clusters_leaders() {
    let app = TestApp::new();
    let ready = app.get("/readyz", None).await.ok(StatusCode::OK);
    assert_eq!(ready["ready"], true);
    let groups = ready["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 5);
    assert_eq!(groups[0]["group"], "meta");
    assert_eq!(groups[1]["group"], "shard-0");
    assert_eq!(groups[1]["leader"], 1);

    app.cluster.set_ready(false);
    let reply = app.get("/readyz", None).await;
    let doc = reply.problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(doc["ready"], false);
    assert_eq!(doc["groups"][1]["leader"], Value::Null);
    assert!(doc["detail"].as_str().unwrap().contains("shard-0"));
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let app = TestApp::new();
    let reply = app.get("/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "text/plain; version=0.0.4");
    assert!(String::from_utf8_lossy(&reply.body).contains("http_requests_total"));
}

#[tokio::test]
async fn openapi_json_is_valid_json_listing_every_path() {
    let app = TestApp::new();
    let reply = app.get("/openapi.json", None).await;
    let doc = reply.ok(StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/auth/dev-token", "post"),
        ("/v1/venues", "post"),
        ("/v1/venues/{venue_id}", "get"),
        ("/v1/events", "get"),
        ("/v1/events", "post"),
        ("/v1/events/{event_id}", "get"),
        ("/v1/events/{event_id}", "patch"),
        ("/v1/events/{event_id}/seats", "get"),
        ("/v1/events/{event_id}/seats/stream", "get"),
        ("/v1/events/{event_id}/holds", "post"),
        ("/v1/holds/{hold_id}", "get"),
        ("/v1/holds/{hold_id}", "delete"),
        ("/v1/holds/{hold_id}/checkout", "post"),
        ("/v1/orders/{order_id}", "get"),
        ("/v1/orders/{order_id}/cancel", "post"),
        ("/v1/me/orders", "get"),
        ("/v1/me/tickets", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is missing");
    }
    let operation_ids: Vec<&str> = paths
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let unique: std::collections::BTreeSet<&str> = operation_ids.iter().copied().collect();
    assert_eq!(unique.len(), operation_ids.len(), "operation ids are unique: {operation_ids:?}");
    let schemes = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(schemes["scheme"], "bearer");
    assert!(doc["components"]["schemas"].get("EventJson").is_some());
}
