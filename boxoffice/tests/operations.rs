//! Health, readiness, metrics and the OpenAPI document of the real binary.

mod common;

use common::Server;

#[tokio::test]
async fn operations_endpoints_answer() {
    let server = Server::start(&["--shards", "3"]).await;
    let (s, _) = server.get("/healthz", None).await;
    assert_eq!(s, 200);
    let (s, ready) = server.get("/readyz", None).await;
    assert_eq!(s, 200, "{ready}");

    let (s, doc) = server.get("/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'), "{doc}");
    for path in [
        "/v1/events",
        "/v1/events/{event_id}/holds",
        "/v1/holds/{hold_id}/checkout",
        "/v1/me/tickets",
        "/v1/orders/{order_id}/cancel",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }

    // A request, then the metrics show it and the Raft groups.
    let _ = server.get("/v1/events", None).await;
    let text = server.http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("boxoffice_raft_is_leader"), "{text}");
    assert!(text.contains("http_requests_total") || text.contains("boxoffice_http_requests_total"), "{text}");
}
