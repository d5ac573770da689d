//! The `/v1` routes of API.md and the operations endpoints, and the layers around them.

pub(crate) mod auth;
pub(crate) mod booking;
pub(crate) mod events;
pub(crate) mod ops;
pub(crate) mod orders;
pub(crate) mod queue;
pub(crate) mod search;
pub(crate) mod seats;
pub(crate) mod venues;

use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use raft_store::{Command, Outcome, RequestId};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::middleware;
use crate::state::ApiState;
use seams::Submit;

/// The whole public surface. Layers, outermost first: request id, log and metrics; panics to
/// 500; error answers to problem documents; then the routes.
pub fn router(state: ApiState) -> Router {
    let mut routes = Router::new()
        .route("/v1/venues", post(venues::create))
        .route("/v1/venues/{venue_id}", get(venues::get))
        .route("/v1/events", get(events::list).post(events::create))
        .route("/v1/events/{event_id}", get(events::get).patch(events::update))
        .route("/v1/events/{event_id}/seats", get(seats::map))
        .route("/v1/events/{event_id}/seats/stream", get(seats::stream))
        .route("/v1/events/{event_id}/holds", post(booking::hold))
        .route("/v1/holds/{hold_id}", get(booking::get_hold).delete(booking::release))
        .route("/v1/holds/{hold_id}/checkout", post(booking::checkout))
        .route("/v1/orders/{order_id}", get(orders::get))
        .route("/v1/orders/{order_id}/cancel", post(orders::cancel))
        .route("/v1/me/orders", get(orders::mine))
        .route("/v1/me/tickets", get(orders::my_tickets))
        .route("/v1/events/{event_id}/queue", get(queue::status).post(queue::join))
        .route("/v1/search", get(search::search))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi));
    // Without dev tokens the route does not exist, so it answers 404 like any unknown path.
    if state.config().dev_tokens {
        routes = routes.route("/v1/auth/dev-token", post(auth::dev_token));
    }
    routes
        // Must follow the routes: it applies to the routes present when it is called.
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .route_layer(from_fn(middleware::label_route))
        .fallback(middleware::not_found)
        // Before routing, so unknown paths count too; inside the log and problem layers.
        .layer(from_fn_with_state(state.clone(), crate::limits::rate_limit))
        .with_state(state)
        .layer(from_fn(middleware::problemize))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(from_fn(middleware::observe))
}

/// Proposes a command and returns its outcome; a refusal becomes the matching error.
pub(crate) async fn submit(
    state: &ApiState,
    command: Command,
    request_id: RequestId,
    fingerprint: u64,
) -> Result<Outcome, ApiError> {
    submit_as(state, Submit { command, request_id, fingerprint, keyed: true }).await
}

/// Submits a command, says whether it was applied or refused in the metrics, lets the read
/// caches know, and turns a refusal into its problem document.
pub(crate) async fn submit_as(state: &ApiState, submit: Submit) -> Result<Outcome, ApiError> {
    let name = submit.command.name();
    let written = crate::state::Written::of(&submit.command);
    let result = state.cluster().submit(submit).await;
    let label = match &result {
        Ok(Outcome::Refused(_)) => "refused",
        Ok(_) => "applied",
        Err(_) => "error",
    };
    metrics::counter!("api_commands_total", "command" => name, "result" => label).increment(1);
    let result = result.map_err(ApiError::from);
    state.after_write(&result, written).await;
    match result? {
        Outcome::Refused(refusal) => Err(refusal.into()),
        outcome => Ok(outcome),
    }
}

/// An outcome or answer of the wrong kind: the store and the api disagree on the protocol.
pub(crate) fn unexpected(what: impl std::fmt::Debug) -> ApiError {
    ApiError::Internal(format!("unexpected reply from the store: {what:?}"))
}
