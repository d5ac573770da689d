//! The HTTP side of a node's port (`/healthz`, `/readyz`, `/metrics`; calls between processes use
//! `rpc.rs` on the same port), and of the indexer's (`/internal/search`, which api instances call
//! with the cluster secret).

use std::sync::Arc;
use std::time::Duration;

use api::{BoxFuture, MetricsRender};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::host::Node;

/// Header carrying the cluster secret on calls to the indexer.
pub const SECRET_HEADER: &str = "x-boxoffice-cluster-secret";
const CONNECT_TIMEOUT_MS: u64 = 1_000;

#[derive(Clone)]
struct Internal {
    node: Arc<Node>,
    metrics: MetricsRender,
}

/// Compares in time independent of where the inputs differ, so the secret cannot be guessed a
/// byte at a time from response timings.
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The node's HTTP routes, for operators: `/healthz`, `/readyz` and `/metrics`.
pub fn internal_routes(node: Arc<Node>, metrics: MetricsRender) -> axum::Router {
    let state = Internal { node, metrics };
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(state)
}

async fn ready(State(s): State<Internal>) -> Response {
    let health = s.node.health();
    let ready = s.node.shard_count().is_some() && !health.is_empty() && health.iter().all(|g| g.leader.is_some());
    let body = serde_json::json!({
        "ready": ready,
        "groups": health.iter().map(|g| serde_json::json!({"group": g.group.to_string(), "leader": g.leader})).collect::<Vec<_>>(),
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

async fn render_metrics(State(s): State<Internal>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], (s.metrics)()).into_response()
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}

/// `GET /v1/search` answered by an indexer process over HTTP (`boxoffice api --search-url`).
pub struct HttpSearch {
    http: reqwest::Client,
    url: String,
    secret: String,
}

/// How long the api waits for the indexer's answer.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(5);

impl HttpSearch {
    pub fn new(url: &str, secret: &str) -> Result<HttpSearch, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpSearch { http, url: url.trim_end_matches('/').to_owned(), secret: secret.to_owned() })
    }
}

impl api::SearchBackend for HttpSearch {
    fn search(&self, query: api::SearchQuery) -> BoxFuture<'_, Result<api::SearchPage, api::SearchError>> {
        Box::pin(async move {
            let unavailable = |e: String| api::SearchError::Unavailable(e);
            let response = self
                .http
                .post(format!("{}/internal/search", self.url))
                .header(SECRET_HEADER, &self.secret)
                .timeout(SEARCH_TIMEOUT)
                .json(&query)
                .send()
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(|e| unavailable(e.to_string()))?;
            match status.as_u16() {
                200 => serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("bad answer: {e}"))),
                400 => Err(api::SearchError::Invalid(String::from_utf8_lossy(&bytes).into_owned())),
                _ => Err(unavailable(format!("indexer answered {status}"))),
            }
        })
    }
}

#[derive(Clone)]
struct IndexerState {
    index: Arc<dyn indexer::Index>,
    secret: Arc<[u8]>,
    metrics: MetricsRender,
}

/// The indexer process's server: `/internal/search` for api instances, and the operator endpoints.
pub fn indexer_routes(index: Arc<dyn indexer::Index>, secret: &str, metrics: MetricsRender) -> axum::Router {
    let state = IndexerState { index, secret: secret.as_bytes().into(), metrics };
    axum::Router::new()
        .route("/internal/search", post(indexer_search))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route(
            "/metrics",
            get(|State(s): State<IndexerState>| async move {
                ([("content-type", "text/plain; version=0.0.4")], (s.metrics)())
            }),
        )
        .with_state(state)
}

async fn indexer_search(State(s): State<IndexerState>, headers: HeaderMap, body: Bytes) -> Response {
    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !same_secret(given, &s.secret) {
        return (StatusCode::UNAUTHORIZED, "cluster secret missing or wrong").into_response();
    }
    let query: api::SearchQuery = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("undecodable query: {e}")).into_response(),
    };
    match s.index.search(query).await {
        Ok(page) => axum::Json(page).into_response(),
        Err(api::SearchError::Invalid(detail)) => (StatusCode::BAD_REQUEST, detail).into_response(),
        Err(api::SearchError::Unavailable(detail)) => (StatusCode::SERVICE_UNAVAILABLE, detail).into_response(),
    }
}
