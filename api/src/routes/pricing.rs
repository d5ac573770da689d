//! An event's dynamic pricing: the rules an admin sets, decided in the store (`PriceRule`).

use axum::extract::State;
use axum::Json;
use raft_store::{Answer, Command, EventId, Outcome, Query};

use crate::dto::{PricingBody, PricingJson, ProblemJson};
use crate::error::ApiError;
use crate::extract::{Admin, IdPath, Posted};
use crate::state::ApiState;
use seams::Consistency;

/// The event's pricing rules and the prices they give now.
#[utoipa::path(
    get, path = "/v1/events/{event_id}/pricing", operation_id = "get_pricing", tag = "events",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, body = PricingJson),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<ApiState>,
    Admin(_): Admin,
    IdPath(event_id): IdPath<EventId>,
) -> Result<Json<PricingJson>, ApiError> {
    let query = Query::Pricing(event_id.clone());
    match state.cluster().query(state.group_of(&event_id), query, Consistency::Linearizable).await? {
        Answer::Pricing(Some(view)) => Ok(Json(PricingJson::from(&view))),
        Answer::Pricing(None) => Err(ApiError::NotFound("no event has this id".into())),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Sets the event's pricing rules by demand, replacing any: each section's price moves with the
/// share of it held or sold and its recent sales, within its floor and ceiling. Holds lock the
/// price they are made at; every change reaches the event, its seat map, search and the feed.
/// No rules: prices stay where they are.
#[utoipa::path(
    put, path = "/v1/events/{event_id}/pricing", operation_id = "set_pricing", tag = "events",
    request_body = PricingBody,
    params(
        ("event_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry"),
    ),
    responses(
        (status = 200, body = PricingJson),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "A rule for an unknown section, or twice for one; another currency; a floor above the ceiling; steps not increasing; sales steps without a window", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn set(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    IdPath(event_id): IdPath<EventId>,
    posted: Posted<PricingBody>,
) -> Result<Json<PricingJson>, ApiError> {
    let (request_id, fingerprint) = (posted.request_id(&caller.user), posted.fingerprint());
    let rules = posted.body.into_rules()?;
    match state.submit(Command::SetPricing { event_id, rules }, request_id, fingerprint).await? {
        Outcome::Pricing(view) => Ok(Json(PricingJson::from(&view))),
        other => Err(ApiError::unexpected(other)),
    }
}
