//! Operations: liveness, readiness and metrics (the OpenAPI document is served by `openapi.rs`).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::dto::{GroupHealthJson, HealthJson, ProblemJson, ReadinessJson};
use crate::error::Problem;
use crate::state::ApiState;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The process is alive; says nothing about the cluster.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = HealthJson)))]
pub(crate) async fn healthz() -> Json<HealthJson> {
    Json(HealthJson { status: "ok".into() })
}

/// The tier can serve: the cluster is reachable and every group has a leader.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, body = ReadinessJson),
        (status = 503, description = "Not ready: a problem document with `groups`", body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn readyz(State(state): State<ApiState>) -> Response {
    let readiness = state.cluster().readiness().await;
    let groups: Vec<GroupHealthJson> = readiness.groups.iter().map(GroupHealthJson::from).collect();
    if readiness.ready {
        return Json(ReadinessJson { ready: true, groups }).into_response();
    }
    let leaderless: Vec<String> = groups.iter().filter(|g| g.leader.is_none()).map(|g| g.group.clone()).collect();
    let detail = format!("groups without a reachable leader: {}", leaderless.join(", "));
    let mut problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Not ready", detail);
    problem.extensions.insert("ready".into(), json!(false));
    problem.extensions.insert("groups".into(), json!(groups));
    problem.into_response()
}

/// Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String))
)]
pub(crate) async fn metrics(State(state): State<ApiState>) -> Response {
    let mut response = state.render_metrics().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE));
    response
}
