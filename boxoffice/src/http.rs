//! The HTTP side of a node's port: `/healthz`, `/readyz`, `/metrics` for operators. Calls between
//! processes use the node's framed protocol on the same port (`node::SplitListener`).

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

/// The HTTP side of the node's port, as axum's server sees it.
pub struct NodePort(pub node::SplitListener);

impl axum::serve::Listener for NodePort {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept_http().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.0.local_addr())
    }
}
