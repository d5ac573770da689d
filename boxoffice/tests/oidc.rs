//! Tokens from an identity provider, through the real binary: `boxoffice dev --oidc-issuer` in
//! front of a local issuer (discovery document and key set over HTTP). A token signed with a
//! published key is accepted, one signed with a key published later (rotation) too, and tokens
//! for another audience, from another issuer, or signed with an unpublished key are refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Json;
use common::{eventually, Server};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const EC_ONE: &str = include_str!("../../api/src/tests/keys/ec-one.pem");
const EC_TWO: &str = include_str!("../../api/src/tests/keys/ec-two.pem");
const AUDIENCE: &str = "boxoffice-shop";

fn jwk(kid: &str) -> Value {
    let keys: Value = serde_json::from_str(include_str!("../../api/src/tests/keys/public.json")).unwrap();
    keys[kid].clone()
}

/// Serves the issuer's discovery document and key set on a free port; returns its URL and the
/// published keys, which the test may change.
async fn issuer() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let keys = Arc::new(Mutex::new(vec![jwk("one")]));
    let discovery = json!({ "issuer": url, "jwks_uri": format!("{url}/protocol/openid-connect/certs") });
    let published = keys.clone();
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(move || async move { Json(discovery) }))
        .route(
            "/protocol/openid-connect/certs",
            get(move || {
                let keys = published.lock().unwrap().clone();
                async move { Json(json!({ "keys": keys })) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, keys)
}

fn token(issuer: &str, kid: &str, pem: &str, audience: &str, extra: Value) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut claims = json!({ "iss": issuer, "aud": audience, "sub": "alice", "iat": now, "exp": now + 300 });
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()).unwrap()
}

#[tokio::test]
async fn the_binary_accepts_an_issuers_tokens_across_a_key_rotation() {
    let (issuer, keys) = issuer().await;
    let server = Server::start(&[
        "--oidc-issuer",
        &issuer,
        "--oidc-audience",
        AUDIENCE,
        "--oidc-role-claim",
        "realm_access.roles",
    ])
    .await;
    let orders = |token: String| {
        let server = &server;
        async move { server.get("/v1/me/orders", Some(&token)).await.0 }
    };
    assert_eq!(orders(token(&issuer, "one", EC_ONE, AUDIENCE, json!({}))).await, 200);
    assert_eq!(orders(token(&issuer, "one", EC_ONE, "another-app", json!({}))).await, 401);
    assert_eq!(orders(token("https://elsewhere.example", "one", EC_ONE, AUDIENCE, json!({}))).await, 401);
    assert_eq!(orders(token(&issuer, "one", EC_TWO, AUDIENCE, json!({}))).await, 401);

    // An admin by the issuer's role list may create venues; a user by it may not.
    let venue = json!({ "name": "Hall", "city": "Oslo", "country": "NO", "location": { "lat": 59.9, "lon": 10.7 },
        "sections": [{ "id": "GA", "name": "Standing", "kind": "general", "capacity": 100 }] });
    let admin =
        token(&issuer, "one", EC_ONE, AUDIENCE, json!({ "realm_access": { "roles": ["offline_access", "admin"] } }));
    assert_eq!(server.call("POST", "/v1/venues", Some(&admin), Some(venue.clone()), None).await.0, 201);
    let user = token(&issuer, "one", EC_ONE, AUDIENCE, json!({ "realm_access": { "roles": ["offline_access"] } }));
    assert_eq!(server.call("POST", "/v1/venues", Some(&user), Some(venue), None).await.0, 403);

    // The issuer rotates to a new key; a token signed with it is accepted once the api has
    // fetched the set again (at most every few seconds when a token names an unknown key).
    *keys.lock().unwrap() = vec![jwk("two")];
    let rotated = token(&issuer, "two", EC_TWO, AUDIENCE, json!({}));
    eventually(Duration::from_secs(20), "the rotated key is accepted", || {
        let rotated = rotated.clone();
        let orders = &orders;
        async move { (orders(rotated).await == 200).then_some(()) }
    })
    .await;
    // Dev tokens still work beside the issuer's.
    let dev = server.token("bob", "user").await;
    assert_eq!(orders(dev).await, 200);
}
