use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::{venue_body, TestApp, SECRET};
use crate::token::{mint_token_until, unix_now_s};

fn sign(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

#[tokio::test]
async fn dev_token_mints_a_token_that_authenticates_requests() {
    let app = TestApp::new();
    let reply = app.post("/v1/auth/dev-token", None, &json!({ "user_id": "u1", "role": "user" })).await;
    let body = reply.ok(StatusCode::OK);
    assert_eq!(body["user_id"], "u1");
    assert_eq!(body["role"], "user");
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    let token = body["token"].as_str().unwrap();
    app.get("/v1/me/orders", Some(token)).await.ok(StatusCode::OK);

    let admin = app.post("/v1/auth/dev-token", None, &json!({ "user_id": "boss", "role": "admin" })).await;
    let admin = admin.ok(StatusCode::OK)["token"].as_str().unwrap().to_owned();
    app.post("/v1/venues", Some(&admin), &venue_body()).await.ok(StatusCode::CREATED);
}

#[tokio::test]
async fn dev_token_is_404_when_dev_tokens_are_off() {
    let app = TestApp::with(|c| c.dev_tokens = false);
    let reply = app.post("/v1/auth/dev-token", None, &json!({ "user_id": "u1", "role": "user" })).await;
    reply.problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn dev_token_rejects_invalid_user_ids_and_roles() {
    let app = TestApp::new();
    for body in [
        json!({ "user_id": "", "role": "user" }),
        json!({ "user_id": "a\u{7}b", "role": "user" }),
        json!({ "user_id": "x".repeat(500), "role": "user" }),
        json!({ "user_id": "u1", "role": "root" }),
        json!({ "role": "user" }),
        json!({ "user_id": 7 }),
    ] {
        app.post("/v1/auth/dev-token", None, &body).await.problem(StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test]
async fn missing_token_is_401_with_a_bearer_challenge() {
    let app = TestApp::new();
    let reply = app.get("/v1/me/orders", None).await;
    reply.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
}

#[tokio::test]
async fn malformed_authorization_headers_are_401() {
    let app = TestApp::new();
    for value in ["Basic dTE6cHc=", "Bearer", "Bearer ", "Bearer not.a.jwt", "token"] {
        let request = Request::get("/v1/me/orders").header(header::AUTHORIZATION, value).body(Body::empty()).unwrap();
        let reply = app.send(request).await;
        reply.problem(StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
    }
}

#[tokio::test]
async fn forged_expired_and_incomplete_tokens_are_401() {
    let app = TestApp::new();
    let exp = unix_now_s() + 3600;
    let forged = sign(json!({ "sub": "u1", "role": "admin", "exp": exp }), "another-secret");
    let expired = mint_token_until(SECRET, "u1", "user", unix_now_s() - 3600);
    let no_exp = sign(json!({ "sub": "u1", "role": "user" }), SECRET);
    let no_sub = sign(json!({ "role": "user", "exp": exp }), SECRET);
    let bad_role = crate::mint_token(SECRET, "u1", "root", std::time::Duration::from_secs(600));
    let bad_sub = sign(json!({ "sub": "u\u{0}1", "role": "user", "exp": exp }), SECRET);
    let mut none_alg = sign(json!({ "sub": "u1", "role": "admin", "exp": exp }), SECRET);
    // Same claims, signature stripped: must never pass.
    none_alg.truncate(none_alg.rfind('.').unwrap() + 1);
    for token in [forged, expired, no_exp, no_sub, bad_role, bad_sub, none_alg] {
        let reply = app.get("/v1/me/orders", Some(&token)).await;
        reply.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn writes_to_venues_and_events_need_the_admin_role() {
    let app = TestApp::new();
    let user = app.user("u1");
    app.post("/v1/venues", Some(&user), &venue_body()).await.problem(StatusCode::FORBIDDEN, "forbidden");
    let event_id = app.event_id(json!({})).await;
    let body = super::event_body("ve0000000000000001", json!({}));
    app.post("/v1/events", Some(&user), &body).await.problem(StatusCode::FORBIDDEN, "forbidden");
    let patch =
        app.call(axum::http::Method::PATCH, &format!("/v1/events/{event_id}"), Some(&user), Some(&json!({}))).await;
    patch.problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(app.cluster.submits(), 2, "only the admin's venue and event reached the store");
}

#[tokio::test]
async fn the_user_is_the_tokens_subject_never_a_body_field() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let body = json!({ "seats": ["FLOOR-A-1"], "user_id": "victim", "user": "victim" });
    let hold = app.hold(&event_id, &app.user("u1"), body).await.ok(StatusCode::CREATED);
    assert_eq!(hold["user_id"], "u1");
}
