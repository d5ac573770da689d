//! The whole public surface: the `/v1` routes of API.md, the operations endpoints, and the layers
//! around them.

use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::middleware;
use crate::openapi;
use crate::routes::{
    auth, booking, events, ops, orders, payments, pricing, queue, search, seats, tickets, venues, webhooks,
};
use crate::state::ApiState;
use crate::web;

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
        // Always routed (another method answers 405); without Stripe's keys it answers 404.
        .route(payments::STRIPE_WEBHOOK_PATH, post(payments::stripe_webhook))
        .route("/v1/events/{event_id}/checkin-key", get(tickets::checkin_key))
        .route("/v1/events/{event_id}/pricing", get(pricing::get).put(pricing::set))
        .route("/v1/checkin", post(tickets::check_in))
        .route("/v1/tickets/{ticket_id}/transfer", post(tickets::transfer))
        .route("/v1/events/{event_id}/queue", get(queue::status).post(queue::join))
        .route("/v1/search", get(search::search))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/v1/webhooks/{webhook_id}", axum::routing::delete(webhooks::delete))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/openapi.json", get(openapi::document))
        // The web client: `/` and `/app/{file}`, kept out of the OpenAPI document (`web.rs`).
        .merge(web::router());
    // Without dev tokens the route does not exist, so it answers 404 like any unknown path.
    if state.config().dev_tokens {
        routes = routes.route("/v1/auth/dev-token", post(auth::dev_token));
    }
    // With an internal metrics address, `/metrics` is served there only (`metrics_router`).
    if state.config().metrics_addr.is_none() {
        routes = routes.route("/metrics", get(ops::metrics));
    }
    routes
        // Must follow the routes: it applies to the routes present when it is called.
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .route_layer(from_fn(middleware::label_route))
        .fallback(middleware::not_found)
        // Before routing, so unknown paths count too; inside the log and problem layers.
        .layer(from_fn_with_state(state.clone(), middleware::rate_limit))
        .with_state(state)
        .layer(from_fn(middleware::problemize))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(from_fn(middleware::observe))
}

/// `/metrics` alone, for the internal metrics address (`ApiConfig::metrics_addr`): scrapers
/// reach it there, clients of the public address do not.
pub fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .fallback(middleware::not_found)
        .with_state(state)
        .layer(from_fn(middleware::problemize))
}
