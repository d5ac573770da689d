//! The indexer's search over HTTPS: `/internal/search`, which api instances call over mutual TLS
//! with the cluster secret as a second factor (`boxoffice api --search-url https://…`), served by
//! `boxoffice indexer` beside its operator endpoints, and [`RemoteSearch`], the api's
//! [`SearchBackend`] that calls it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use seams::{BoxFuture, MetricsRender, SearchBackend, SearchError, SearchPage, SearchQuery};
use subtle::ConstantTimeEq;

use crate::error::IndexError;
use crate::index::Index;

/// Header carrying the cluster secret on calls to the indexer.
pub const SECRET_HEADER: &str = "x-boxoffice-cluster-secret";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// `GET /v1/search` answered by an indexer process over HTTPS (`boxoffice api --search-url`).
pub struct RemoteSearch {
    http: reqwest::Client,
    url: String,
    secret: String,
}

/// How long the api waits for the indexer's answer.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(5);

impl RemoteSearch {
    /// Calls the indexer at `url` (`https://HOST:PORT`) with `tls`: the caller's credential, the
    /// cluster CA, and an indexer's certificate expected of the server.
    pub fn new(url: &str, secret: &str, tls: Arc<rustls::ClientConfig>) -> Result<RemoteSearch, IndexError> {
        if !url.starts_with("https://") {
            return Err(IndexError::NotHttps(url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .use_preconfigured_tls((*tls).clone())
            .build()?;
        Ok(RemoteSearch { http, url: url.trim_end_matches('/').to_owned(), secret: secret.to_owned() })
    }
}

impl SearchBackend for RemoteSearch {
    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<SearchPage, SearchError>> {
        Box::pin(async move {
            let unavailable = |e: String| SearchError::Unavailable(e);
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
                400 => Err(SearchError::Invalid(String::from_utf8_lossy(&bytes).into_owned())),
                _ => Err(unavailable(format!("indexer answered {status}"))),
            }
        })
    }
}

#[derive(Clone)]
struct IndexerState {
    index: Arc<dyn Index>,
    secret: Arc<[u8]>,
}

/// `/internal/search`, for api instances: `boxoffice indexer` serves it only over mutual TLS,
/// to an api's or an operator's certificate.
pub fn search_routes(index: Arc<dyn Index>, secret: &str) -> axum::Router {
    let state = IndexerState { index, secret: secret.as_bytes().into() };
    axum::Router::new().route("/internal/search", post(indexer_search)).with_state(state)
}

/// The operator endpoints (`/healthz`, `/readyz`, `/metrics`), served over TLS and in plain HTTP.
pub fn ops_routes(metrics: MetricsRender) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route(
            "/metrics",
            get(|State(metrics): State<MetricsRender>| async move {
                ([("content-type", "text/plain; version=0.0.4")], metrics())
            }),
        )
        .with_state(metrics)
}

async fn indexer_search(State(s): State<IndexerState>, headers: HeaderMap, body: Bytes) -> Response {
    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !bool::from(given.ct_eq(&s.secret)) {
        return (StatusCode::UNAUTHORIZED, "cluster secret missing or wrong").into_response();
    }
    let query: SearchQuery = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("undecodable query: {e}")).into_response(),
    };
    match s.index.search(query).await {
        Ok(page) => axum::Json(page).into_response(),
        Err(SearchError::Invalid(detail)) => (StatusCode::BAD_REQUEST, detail).into_response(),
        Err(SearchError::Unavailable(detail)) => (StatusCode::SERVICE_UNAVAILABLE, detail).into_response(),
    }
}
