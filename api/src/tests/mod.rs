//! Tests that drive the real router over a cluster of real state machines.

mod auth;
mod booking;
mod caching;
mod catalog;
mod errors;
mod idempotency;
mod limits;
mod lists;
mod oidc;
mod ops;
mod payments;
mod queue;
mod stream;
mod web;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use seams::{MetricsRender, TestCluster};

use crate::{router, ApiConfig, ApiState, Role};
use payments::RecordingPayments;

pub(crate) const SECRET: &str = "test-secret-that-signs-tokens-0123456789";
pub(crate) const SHARDS: u32 = 4;
const DAY_MS: i64 = 24 * 3_600_000;

pub(crate) struct TestApp {
    router: Router,
    pub state: ApiState,
    pub cluster: Arc<TestCluster>,
    pub payments: Arc<RecordingPayments>,
}

/// An answer, fully read.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a problem document with this status and code, and returns it.
    #[track_caller]
    pub(crate) fn problem(&self, status: StatusCode, code: &str) -> Value {
        let body = String::from_utf8_lossy(&self.body);
        assert_eq!(self.status, status, "body: {body}");
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/problem+json", "body: {body}");
        let doc = self.json();
        assert_eq!(doc["code"], code, "body: {body}");
        assert_eq!(doc["status"], status.as_u16());
        assert!(doc["type"].as_str().is_some_and(|t| t.ends_with(code)));
        assert!(doc["title"].is_string() && doc["detail"].is_string(), "body: {body}");
        doc
    }

    #[track_caller]
    pub(crate) fn ok(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        self.json()
    }
}

impl TestApp {
    pub(crate) fn new() -> TestApp {
        TestApp::with(|_| {})
    }

    pub(crate) fn with(adjust: impl FnOnce(&mut ApiConfig)) -> TestApp {
        TestApp::on(TestCluster::new(SHARDS), adjust)
    }

    /// An api instance over a cluster other instances may share.
    pub(crate) fn on(cluster: Arc<TestCluster>, adjust: impl FnOnce(&mut ApiConfig)) -> TestApp {
        let mut config = ApiConfig::new(SECRET);
        config.dev_tokens = true;
        adjust(&mut config);
        let metrics: MetricsRender = Arc::new(|| "# TYPE http_requests_total counter\n".to_owned());
        let payments = Arc::new(RecordingPayments::default());
        let state = ApiState::new(cluster.clone(), config, payments.clone(), metrics).expect("a valid configuration");
        TestApp { router: router(state.clone()), state, cluster, payments }
    }

    pub(crate) fn admin(&self) -> String {
        crate::mint_token(SECRET, "admin-1", Role::Admin, Duration::from_secs(3600))
    }

    pub(crate) fn user(&self, id: &str) -> String {
        crate::mint_token(SECRET, id, Role::User, Duration::from_secs(3600))
    }

    /// The raw response, body unread (for streams).
    pub(crate) async fn raw(&self, request: Request<Body>) -> axum::response::Response {
        self.router.clone().oneshot(request).await.unwrap()
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.raw(request).await;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Reply { status: parts.status, headers: parts.headers, body }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
        self.send(builder.header(header::CONTENT_TYPE, "application/json").body(body).unwrap()).await
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::DELETE, path, token, None).await
    }

    pub(crate) async fn post_keyed(&self, path: &str, token: &str, key: &str, body: &str) -> Reply {
        let request = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("idempotency-key", key)
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(request).await
    }

    /// A venue with a seated FLOOR (rows A and B of 10) and a general-admission LAWN of 5.
    pub(crate) async fn venue(&self) -> Value {
        self.post("/v1/venues", Some(&self.admin()), &venue_body()).await.ok(StatusCode::CREATED)
    }

    /// An event at `venue_id`, on sale now and starting in 30 days; `extra` overrides fields.
    pub(crate) async fn event(&self, venue_id: &str, extra: Value) -> Value {
        self.post("/v1/events", Some(&self.admin()), &event_body(venue_id, extra)).await.ok(StatusCode::CREATED)
    }

    /// A venue and an event at it; returns the event id.
    pub(crate) async fn event_id(&self, extra: Value) -> String {
        let venue = self.venue().await;
        let event = self.event(venue["venue_id"].as_str().unwrap(), extra).await;
        event["event_id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn hold(&self, event_id: &str, token: &str, body: Value) -> Reply {
        self.post(&format!("/v1/events/{event_id}/holds"), Some(token), &body).await
    }

    pub(crate) async fn checkout(&self, hold_id: &str, token: &str, method: &str) -> Reply {
        self.post(&format!("/v1/holds/{hold_id}/checkout"), Some(token), &json!({ "payment_method": method })).await
    }

    /// Holds `seats` and pays; returns the confirmed order.
    pub(crate) async fn buy(&self, event_id: &str, token: &str, seats: &[&str]) -> Value {
        let hold = self.hold(event_id, token, json!({ "seats": seats })).await.ok(StatusCode::CREATED);
        let order = self.checkout(hold["hold_id"].as_str().unwrap(), token, "sandbox_ok").await.ok(StatusCode::CREATED);
        assert_eq!(order["status"], "confirmed");
        order
    }

    pub(crate) async fn seat_status(&self, event_id: &str, seat: &str) -> String {
        let map = self.get(&format!("/v1/events/{event_id}/seats"), None).await.ok(StatusCode::OK);
        let seat = map["seats"].as_array().unwrap().iter().find(|s| s["id"] == seat).unwrap();
        seat["status"].as_str().unwrap().to_owned()
    }
}

pub(crate) fn venue_body() -> Value {
    json!({
        "name": "Coliseu",
        "city": "Lisbon",
        "country": "PT",
        "location": { "lat": 38.7, "lon": -9.14 },
        "sections": [
            { "id": "FLOOR", "name": "Floor", "kind": "seated", "rows": [{ "id": "A", "seats": 10 }, { "id": "B", "seats": 10 }] },
            { "id": "LAWN", "name": "Lawn", "kind": "general", "capacity": 5 },
        ],
    })
}

pub(crate) fn event_body(venue_id: &str, extra: Value) -> Value {
    let mut body = json!({
        "name": "Night Show",
        "description": "An evening of music.",
        "category": "music",
        "performers": [{ "name": "The Band" }],
        "venue_id": venue_id,
        "starts_at": in_days(30),
        "prices": [
            { "section": "FLOOR", "price": { "amount": 5000, "currency": "USD" } },
            { "section": "LAWN", "price": { "amount": 2000, "currency": "USD" } },
        ],
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// RFC 3339 time `days` from now.
pub(crate) fn in_days(days: i64) -> String {
    crate::dto::time_json(crate::dto::now_ms() + days * DAY_MS)
}
