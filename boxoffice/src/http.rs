//! The HTTP side of a node's port: `/healthz`, `/readyz`, `/metrics` for operators, in plain
//! HTTP and unauthenticated (what a load balancer's probe and a scraper can reach), and nothing
//! else. Calls between processes use the node's framed protocol over mutual TLS on the same port
//! (`node::SplitListener`); `ports.rs` serves these routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use seams::MetricsRender;

use node::Node;

#[derive(Clone)]
struct Internal {
    node: Arc<Node>,
    metrics: MetricsRender,
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
    // A damaged copy stays stopped: the node serves its other groups, and says which copy to
    // rebuild (`boxoffice cluster repair`).
    let damaged: Vec<serde_json::Value> = s
        .node
        .damaged_groups()
        .into_iter()
        .map(|(group, error)| serde_json::json!({"group": group.to_string(), "error": error}))
        .collect();
    let body = serde_json::json!({
        "ready": ready,
        "groups": health.iter().map(|g| serde_json::json!({"group": g.group.to_string(), "leader": g.leader})).collect::<Vec<_>>(),
        "damaged": damaged,
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

async fn render_metrics(State(s): State<Internal>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], (s.metrics)()).into_response()
}
