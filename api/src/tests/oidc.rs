//! Tokens from an OIDC issuer: a local issuer publishes its discovery document and key set;
//! tokens signed with a published key (ES256, EdDSA) are accepted with the right issuer and
//! audience, a key published later (rotation) is found on first use, and every other token is
//! refused.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::{TestApp, SECRET};
use crate::config::OidcConfig;
use crate::token::unix_now_s;

const EC_ONE: &str = include_str!("keys/ec-one.pem");
const EC_TWO: &str = include_str!("keys/ec-two.pem");
const ED: &str = include_str!("keys/ed.pem");
const AUDIENCE: &str = "boxoffice-api";

/// The public half of test key `kid` (`one`, `two`, `ed`), as the issuer publishes it.
fn jwk(kid: &str) -> Value {
    let keys: Value = serde_json::from_str(include_str!("keys/public.json")).unwrap();
    keys[kid].clone()
}

/// A local issuer: its discovery document and a key set a test can change.
struct Issuer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    /// How many times the key set was fetched.
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

impl Issuer {
    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn issuer(keys: Vec<Value>) -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let discovery = json!({ "issuer": url, "jwks_uri": format!("{url}/keys") });
    type Shared = (Arc<Mutex<Vec<Value>>>, Arc<std::sync::atomic::AtomicUsize>);
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(move || async move { Json(discovery) }))
        .route(
            "/keys",
            get(|State((keys, fetches)): State<Shared>| async move {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Json(json!({ "keys": keys.lock().unwrap().clone() }))
            }),
        )
        .with_state((keys.clone(), fetches.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Issuer { url, keys, fetches }
}

fn app_for(issuer: &Issuer, hs256: bool) -> TestApp {
    let oidc = OidcConfig {
        issuer: issuer.url.clone(),
        audience: AUDIENCE.into(),
        jwks_url: None,
        role_claim: "roles".into(),
        ca_file: None,
    };
    TestApp::with(|c| {
        c.oidc = Some(oidc);
        if !hs256 {
            c.jwt_secret = None;
            c.dev_tokens = false;
            c.queue_secret = SECRET.into();
        }
    })
}

fn sign(alg: Algorithm, kid: &str, pem: &str, claims: Value) -> String {
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn claims(issuer: &Issuer, sub: &str, audience: &str) -> Value {
    let now = unix_now_s();
    json!({ "iss": issuer.url, "aud": audience, "sub": sub, "iat": now, "exp": now + 600 })
}

#[tokio::test]
async fn tokens_signed_with_published_keys_are_accepted_and_a_rotated_key_is_found() {
    let issuer = issuer(vec![jwk("one"), jwk("ed")]).await;
    let app = app_for(&issuer, false);
    let es = sign(Algorithm::ES256, "one", EC_ONE, claims(&issuer, "alice", AUDIENCE));
    app.get("/v1/me/orders", Some(&es)).await.ok(StatusCode::OK);
    let ed = sign(Algorithm::EdDSA, "ed", ED, claims(&issuer, "bob", AUDIENCE));
    app.get("/v1/me/orders", Some(&ed)).await.ok(StatusCode::OK);

    // The issuer rotates: a new key is published, the old one withdrawn.
    *issuer.keys.lock().unwrap() = vec![jwk("two")];
    let rotated = sign(Algorithm::ES256, "two", EC_TWO, claims(&issuer, "carol", AUDIENCE));
    // Once the shortest interval between fetches has passed, the first token naming the new key
    // fetches the set again.
    tokio::time::sleep(crate::jwks::REFRESH_MIN_INTERVAL).await;
    app.get("/v1/me/orders", Some(&rotated)).await.ok(StatusCode::OK);

    // A role comes from the configured claim.
    let mut admin = claims(&issuer, "dana", AUDIENCE);
    admin["roles"] = json!("admin");
    let admin = sign(Algorithm::ES256, "two", EC_TWO, admin);
    app.post("/v1/venues", Some(&admin), &super::venue_body()).await.ok(StatusCode::CREATED);
}

#[tokio::test]
async fn tokens_for_another_audience_issuer_or_lifetime_or_unpublished_key_are_refused() {
    let issuer = issuer(vec![jwk("one")]).await;
    let app = app_for(&issuer, false);
    let refused = |token: String| {
        let app = &app;
        async move { app.get("/v1/me/orders", Some(&token)).await.problem(StatusCode::UNAUTHORIZED, "unauthorized") }
    };
    refused(sign(Algorithm::ES256, "one", EC_ONE, claims(&issuer, "alice", "another-api"))).await;
    let mut other_issuer = claims(&issuer, "alice", AUDIENCE);
    other_issuer["iss"] = json!("https://elsewhere.example");
    refused(sign(Algorithm::ES256, "one", EC_ONE, other_issuer)).await;
    let mut too_long = claims(&issuer, "alice", AUDIENCE);
    too_long["exp"] = json!(unix_now_s() + 30 * 24 * 3600);
    refused(sign(Algorithm::ES256, "one", EC_ONE, too_long)).await;
    // Signed with a key the issuer never published (EC_TWO under EC_ONE's id).
    refused(sign(Algorithm::ES256, "one", EC_TWO, claims(&issuer, "alice", AUDIENCE))).await;
    refused(sign(Algorithm::ES256, "missing", EC_TWO, claims(&issuer, "alice", AUDIENCE))).await;
    // Without an HS256 key, an HS256 token is refused whatever its secret.
    refused(crate::mint_token(SECRET, "alice", "user", std::time::Duration::from_secs(60))).await;
}

#[tokio::test]
async fn a_flood_of_unknown_key_ids_fetches_the_key_set_at_most_once_per_interval() {
    let issuer = issuer(vec![jwk("one")]).await;
    let app = app_for(&issuer, false);
    let known = sign(Algorithm::ES256, "one", EC_ONE, claims(&issuer, "alice", AUDIENCE));
    app.get("/v1/me/orders", Some(&known)).await.ok(StatusCode::OK);
    let before = issuer.fetches();
    for n in 0..50 {
        let unknown = sign(Algorithm::ES256, &format!("made-up-{n}"), EC_TWO, claims(&issuer, "eve", AUDIENCE));
        app.get("/v1/me/orders", Some(&unknown)).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // Fifty requests take far less than the interval; even on a slow machine they span few.
    assert!(issuer.fetches() - before <= 2, "{} fetches for 50 unknown keys", issuer.fetches() - before);
}

#[tokio::test]
async fn hs256_tokens_and_issued_tokens_work_side_by_side() {
    let issuer = issuer(vec![jwk("ed")]).await;
    let app = app_for(&issuer, true);
    app.get("/v1/me/orders", Some(&app.user("u1"))).await.ok(StatusCode::OK);
    let ed = sign(Algorithm::EdDSA, "ed", ED, claims(&issuer, "u2", AUDIENCE));
    app.get("/v1/me/orders", Some(&ed)).await.ok(StatusCode::OK);
}

#[tokio::test]
async fn a_scanner_token_is_refused_on_buying_routes() {
    let app = TestApp::new();
    let scanner = crate::mint_token(SECRET, "door-1", "scanner", std::time::Duration::from_secs(60));
    app.get("/v1/me/orders", Some(&scanner)).await.problem(StatusCode::FORBIDDEN, "forbidden");
}
