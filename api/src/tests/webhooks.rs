//! `/v1/webhooks`: admins register, list and delete outgoing webhook endpoints.

use axum::http::StatusCode;
use serde_json::json;

use super::*;

const URL: &str = "https://hooks.example.com/boxoffice";

#[tokio::test]
async fn an_admin_registers_lists_and_deletes_an_endpoint() {
    let app = TestApp::new();
    let admin = app.admin();
    let body = json!({"url": URL, "events": ["ticket.checked_in", "order.confirmed"]}).to_string();
    let created = app.post_keyed("/v1/webhooks", &admin, "wh-1", &body).await.ok(StatusCode::CREATED);
    let id = created["webhook_id"].as_str().unwrap().to_owned();
    assert!(raft_store::WebhookId::parse(&id).is_some(), "{created}");
    assert_eq!(created["url"], URL);
    assert_eq!(created["events"], json!(["order.confirmed", "ticket.checked_in"]));
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    // A retry with the key answers the same endpoint and secret; another key registers another.
    let again = app.post_keyed("/v1/webhooks", &admin, "wh-1", &body).await.ok(StatusCode::CREATED);
    assert_eq!(again, created);
    let other = app.post_keyed("/v1/webhooks", &admin, "wh-2", &body).await.ok(StatusCode::CREATED);
    assert_ne!(other["webhook_id"], created["webhook_id"]);
    assert_ne!(other["secret"], created["secret"]);
    let reused = json!({"url": URL, "events": ["order.cancelled"]}).to_string();
    app.post_keyed("/v1/webhooks", &admin, "wh-1", &reused)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");

    // The list shows no secret.
    let list = app.get("/v1/webhooks", Some(&admin)).await.ok(StatusCode::OK);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert!(items.iter().all(|w| w.get("secret").is_none()), "{list}");
    assert_eq!(list["next_cursor"], serde_json::Value::Null);

    let path = format!("/v1/webhooks/{id}");
    assert_eq!(app.delete(&path, Some(&admin)).await.status, StatusCode::NO_CONTENT);
    app.delete(&path, Some(&admin)).await.problem(StatusCode::NOT_FOUND, "not_found");
    app.delete("/v1/webhooks/not-an-id", Some(&admin)).await.problem(StatusCode::NOT_FOUND, "not_found");
    let list = app.get("/v1/webhooks", Some(&admin)).await.ok(StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn only_admins_manage_endpoints() {
    let app = TestApp::new();
    let user = app.user("u1");
    let body = json!({"url": URL, "events": ["order.confirmed"]});
    app.post("/v1/webhooks", Some(&user), &body).await.problem(StatusCode::FORBIDDEN, "forbidden");
    app.post("/v1/webhooks", None, &body).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    app.get("/v1/webhooks", Some(&user)).await.problem(StatusCode::FORBIDDEN, "forbidden");
    app.delete("/v1/webhooks/wh0000000000000001", Some(&user)).await.problem(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn bad_endpoints_are_refused_with_problem_documents() {
    let app = TestApp::new();
    let admin = app.admin();
    for body in [
        json!({"url": "ftp://hooks.example.com", "events": ["order.confirmed"]}),
        json!({"url": "https://hooks.example.com/a b", "events": ["order.confirmed"]}),
        json!({"url": URL, "events": []}),
        json!({"url": URL, "events": ["order.created"]}),
        json!({"url": URL, "events": ["order.confirmed", "order.confirmed"]}),
        json!({"url": URL}),
        json!({"events": ["order.confirmed"]}),
        json!({"url": URL, "events": ["order.confirmed"], "secret": "mine"}),
        json!({"url": 7, "events": ["order.confirmed"]}),
    ] {
        let reply = app.post("/v1/webhooks", Some(&admin), &body).await;
        reply.problem(StatusCode::BAD_REQUEST, "bad_request");
    }
    // What the document cannot say: plain http to a remote host, a port out of range.
    for url in ["http://hooks.example.com/x", "https://hooks.example.com:70000/x", "https://user@hooks.example.com"] {
        let reply = app.post("/v1/webhooks", Some(&admin), &json!({"url": url, "events": ["order.confirmed"]})).await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "bad_request");
    }
    let list = app.get("/v1/webhooks", Some(&admin)).await.ok(StatusCode::OK);
    assert!(list["items"].as_array().unwrap().is_empty(), "{list}");
}

#[tokio::test]
async fn the_document_declares_the_webhook_routes_and_their_rules() {
    let app = TestApp::new();
    let doc = app.get("/openapi.json", None).await.ok(StatusCode::OK);
    let paths = &doc["paths"];
    assert!(paths["/v1/webhooks"]["post"].is_object());
    assert!(paths["/v1/webhooks"]["get"].is_object());
    let delete = &paths["/v1/webhooks/{webhook_id}"]["delete"];
    assert_eq!(delete["parameters"][0]["schema"]["pattern"], "^wh[0-9a-f]{16}$");
    let body = &doc["components"]["schemas"]["WebhookBody"];
    assert_eq!(body["properties"]["events"]["uniqueItems"], true);
    assert_eq!(body["properties"]["events"]["maxItems"], 6);
    assert_eq!(body["properties"]["events"]["items"]["enum"].as_array().unwrap().len(), 6);
    assert!(body["properties"]["url"]["pattern"].as_str().unwrap().starts_with("^(https://"));
}
