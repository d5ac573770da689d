//! `POST /v1/venues`, `GET /v1/venues/{venue_id}`: venues live in the meta group.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use raft_store::{Answer, Command, GroupId, Outcome, Query, VenueId};

use crate::dto::{ProblemJson, VenueBody, VenueJson};
use crate::error::ApiError;
use crate::extract::{Admin, IdPath, Posted};
use crate::identity::IdKind;
use crate::state::ApiState;
use seams::Consistency;

/// Creates a venue. With an `Idempotency-Key`, the venue id derives from it, so a retry finds
/// the first venue instead of creating a second.
#[utoipa::path(
    post, path = "/v1/venues", operation_id = "create_venue", tag = "venues",
    request_body = VenueBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 201, body = VenueJson),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "Section or row ids repeat, too many seats in all, or idempotency_key_reused", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    posted: Posted<VenueBody>,
) -> Result<(StatusCode, Json<VenueJson>), ApiError> {
    posted.body.check()?;
    let venue_id = VenueId::from_u64(posted.new_id_bits(IdKind::Venue, &caller.user));
    let (request_id, fingerprint) = (posted.request_id(&caller.user), posted.fingerprint());
    let venue = posted.body.into_venue(venue_id);
    // What is left after the document's rules: distinct ids, the seats of all rows together.
    venue.validate().map_err(ApiError::Unprocessable)?;
    match state.submit(Command::CreateVenue(venue), request_id, fingerprint).await? {
        Outcome::Venue(venue) => Ok((StatusCode::CREATED, Json(VenueJson::from(&venue)))),
        other => Err(ApiError::unexpected(other)),
    }
}

#[utoipa::path(
    get, path = "/v1/venues/{venue_id}", operation_id = "get_venue", tag = "venues",
    params(("venue_id" = String, Path)),
    responses(
        (status = 200, body = VenueJson),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<ApiState>,
    IdPath(venue_id): IdPath<VenueId>,
) -> Result<Json<VenueJson>, ApiError> {
    match state.cluster().query(GroupId::META, Query::Venue(venue_id), Consistency::Stale).await? {
        Answer::Venue(Some(venue)) => Ok(Json(VenueJson::from(&venue))),
        Answer::Venue(None) => Err(ApiError::NotFound("no venue has this id".into())),
        other => Err(ApiError::unexpected(other)),
    }
}
