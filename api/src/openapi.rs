//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the
//! DTOs' schemas, so it cannot drift from the code.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::*;
use crate::error::ApiError;
use crate::routes::{auth, booking, events, ops, orders, queue, search, seats, venues};

#[derive(OpenApi)]
#[openapi(
    info(title = "Boxoffice API", version = "1", description = "Ticketing: venues, events, holds, orders, tickets."),
    paths(
        auth::dev_token,
        venues::create,
        venues::get,
        events::create,
        events::update,
        events::list,
        events::get,
        seats::map,
        seats::stream,
        booking::hold,
        booking::get_hold,
        booking::release,
        booking::checkout,
        orders::get,
        orders::cancel,
        orders::mine,
        orders::my_tickets,
        search::search,
        queue::join,
        queue::status,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        document,
    ),
    components(schemas(
        MoneyJson, ProblemJson, VenueBody, VenueJson, SectionJson, RowJson, LocationJson, EventBody, EventPatchBody,
        EventJson, EventSummaryJson, SeatMapJson, HoldBody, HoldJson, CheckoutBody, OrderJson, TicketJson,
        DevTokenBody, DevTokenJson, ReadinessJson, search::SearchItemJson, search::SearchPageJson,
        queue::QueueStatusJson, queue::JoinedJson,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Development tokens"),
        (name = "venues"),
        (name = "events"),
        (name = "booking", description = "Holds, checkout, orders and tickets"),
        (name = "waiting room", description = "Queues of high-traffic events: join, wait, get an access token"),
        (name = "operations"),
    )
)]
pub(crate) struct ApiDoc;

/// Declares the `bearer` scheme the paths' `security` refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// This API's OpenAPI document, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, body = Object)))]
pub(crate) async fn document() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], text).into_response(),
        Err(e) => ApiError::Internal(format!("OpenAPI document: {e}")).into_response(),
    }
}
