//! Cross-cutting layers: request ids, request logs and HTTP metrics; problem documents for
//! answers no handler wrote (unknown routes, wrong methods, panics); the rate limits, checked
//! before routing.

use std::any::Any;
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::{ApiError, InternalDetail, Problem, PROBLEM_CONTENT_TYPE};
use crate::state::ApiState;
use crate::token::Role;

/// Paths never limited: probes and scrapers must see a loaded server as it is.
const UNLIMITED_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/openapi.json"];

pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client-supplied request id kept; a longer or odd one is replaced by ours.
const REQUEST_ID_LEN_MAX: usize = 128;
/// The route label of requests that matched no route, so unknown paths cannot grow the metrics.
const ROUTE_UNMATCHED: &str = "unmatched";

/// The matched route template (`/v1/events/{event_id}`), carried out on the response for the
/// outer layers, which run before routing.
#[derive(Clone, Debug)]
struct RouteLabel(String);

/// Inner layer (after routing): labels the response with its route template.
pub(crate) async fn label_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteLabel(route));
    }
    response
}

/// Outer layer: gives the request an id (the client's `x-request-id` if sane), echoes it, logs
/// one line per request and records the HTTP metrics.
pub(crate) async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = client_request_id(&req).unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let request_id_value = HeaderValue::from_str(&request_id).unwrap_or(HeaderValue::from_static("invalid"));
    req.headers_mut().insert(REQUEST_ID_HEADER, request_id_value.clone());
    let method = req.method().clone();
    let span = tracing::info_span!("request", %method, request_id = %request_id);
    let mut response = next.run(req).instrument(span).await;

    let latency = started.elapsed();
    let status = response.status();
    let route = response.extensions().get::<RouteLabel>().map_or(ROUTE_UNMATCHED.to_owned(), |r| r.0.clone());
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        let detail = response.extensions().get::<InternalDetail>().map_or("", |d| d.0.as_str());
        tracing::error!(%method, %route, status = status.as_u16(), latency_ms, %request_id, detail, "request failed");
    } else {
        tracing::info!(%method, %route, status = status.as_u16(), latency_ms, %request_id, "request");
    }
    let labels =
        [("method", method_label(&method).to_owned()), ("route", route), ("status", status.as_u16().to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2]).record(latency.as_secs_f64());
    response.headers_mut().insert(REQUEST_ID_HEADER, request_id_value);
    response
}

/// The method as a metric label: the standard methods by name, anything else `other`, so a
/// client inventing methods cannot grow the metrics (as `ROUTE_UNMATCHED` does for paths).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

fn client_request_id(req: &Request) -> Option<String> {
    let value = req.headers().get(REQUEST_ID_HEADER)?.as_bytes();
    let sane = !value.is_empty() && value.len() <= REQUEST_ID_LEN_MAX && value.iter().all(u8::is_ascii_graphic);
    sane.then(|| String::from_utf8_lossy(value).into_owned())
}

/// Turns any error answer that is not yet a problem document (axum's own 404, 405, 413, ...) into
/// one chosen by its status, keeping its headers (such as `Allow`).
pub(crate) async fn problemize(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()));
    if is_problem {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut problem = Problem::for_status(status).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem.extensions_mut().extend(parts.extensions);
    problem
}

/// The answer to a handler that panicked: a 500 problem; the panic's message goes to the log.
pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = match (panic.downcast_ref::<String>(), panic.downcast_ref::<&str>()) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => (*s).to_owned(),
        (None, None) => "a panic without a message".to_owned(),
    };
    ApiError::Internal(format!("handler panicked: {message}")).into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no resource at this path".into())
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The layer: per-address, then per-user limits, before routing. Runs inside the request log and
/// problem layers, so refusals are logged, counted and rendered like any error.
pub(crate) async fn rate_limit(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let limits = state.limits();
    if !limits.any() || UNLIMITED_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        if let Err(e) = limits.check_ip(addr.ip()) {
            return e.into_response();
        }
    }
    if let Some(caller) = crate::extract::verified_caller(req.headers(), state.tokens()).await {
        if caller.role == Role::User {
            if let Err(e) = limits.check_user(&caller.user) {
                return e.into_response();
            }
        }
        // Verified once: the handler's `Caller` extractor takes it from here.
        req.extensions_mut().insert(caller);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_are_metric_labels() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for invented in ["FOO", "get", "PROPFIND", "X-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert_eq!(method_label(&Method::from_bytes(invented.as_bytes()).unwrap()), "other", "{invented}");
        }
    }
}
