//! Events: create and update (admin), list upcoming over every shard, read one (through the
//! read cache, with an ETag).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use raft_store::{Answer, Command, EventId, EventSummary, EventView, GroupId, Outcome, Query, Venue, VenueId};
use serde::Deserialize;

use crate::cache::{Doc, Rendered};
use crate::dto::rules;
use crate::dto::{now_ms, parse_time, EventBody, EventJson, EventPatchBody, EventSummaryJson, Page, ProblemJson};
use crate::error::ApiError;
use crate::extract::{Admin, ApiQuery, IdPath, Posted};
use crate::identity::IdKind;
use crate::pagination::{gather, limit_schema, merge, per_shard_limit, Cursor, EventCursor, PageParams};
use crate::state::ApiState;
use seams::Consistency;

/// Creates an event at a venue: the venue is copied into the event, every section needs a price.
#[utoipa::path(
    post, path = "/v1/events", operation_id = "create_event", tag = "events",
    request_body = EventBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 201, body = EventJson),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, description = "Unknown venue", body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "`starts_at` not in the future, `on_sale_at` after it, prices that do not name each section of the venue once in one currency, or idempotency_key_reused", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    posted: Posted<EventBody>,
) -> Result<(StatusCode, Json<EventJson>), ApiError> {
    posted.body.check()?;
    let venue = read_venue(&state, &posted.body.venue_id).await?;
    let event_id = EventId::from_u64(posted.new_id_bits(IdKind::Event, &caller.user));
    let (request_id, fingerprint) = (posted.request_id(&caller.user), posted.fingerprint());
    let now = now_ms();
    let spec = posted.body.into_spec(event_id, venue, now)?;
    // What is left after the document's rules: the clock, and the event against its venue.
    if spec.starts_at_ms <= now {
        return Err(ApiError::Unprocessable("`starts_at` must be in the future".into()));
    }
    spec.validate().map_err(ApiError::Unprocessable)?;
    match state.submit(Command::CreateEvent(spec), request_id, fingerprint).await? {
        Outcome::Event(view) => Ok((StatusCode::CREATED, Json(EventJson::from(view.as_ref())))),
        other => Err(ApiError::unexpected(other)),
    }
}

/// The venue an event is created at, read from the leader so a venue just created is found.
async fn read_venue(state: &ApiState, venue_id: &str) -> Result<Venue, ApiError> {
    let not_found = || ApiError::NotFound("no venue has this `venue_id`".into());
    let venue_id = VenueId::parse(venue_id).ok_or_else(not_found)?;
    match state.cluster().query(GroupId::META, Query::Venue(venue_id), Consistency::Linearizable).await? {
        Answer::Venue(Some(venue)) => Ok(venue),
        Answer::Venue(None) => Err(not_found()),
        other => Err(ApiError::unexpected(other)),
    }
}

pub(crate) async fn read_event(
    state: &ApiState,
    event_id: &EventId,
    consistency: Consistency,
) -> Result<Box<EventView>, ApiError> {
    match state.cluster().query(state.group_of(event_id), Query::Event(event_id.clone()), consistency).await? {
        Answer::Event(Some(view)) => Ok(view),
        Answer::Event(None) => Err(ApiError::NotFound("no event has this id".into())),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Changes an event's details; absent fields stay as they are. The venue cannot change.
#[utoipa::path(
    patch, path = "/v1/events/{event_id}", operation_id = "update_event", tag = "events",
    request_body = EventPatchBody,
    params(
        ("event_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry"),
    ),
    responses(
        (status = 200, body = EventJson),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "The event as patched breaks the rules of creating one", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    IdPath(event_id): IdPath<EventId>,
    posted: Posted<EventPatchBody>,
) -> Result<Json<EventJson>, ApiError> {
    posted.body.check()?;
    let (request_id, fingerprint) = (posted.request_id(&caller.user), posted.fingerprint());
    let patch = posted.body.into_patch()?;
    // Validate the patched event here so that nothing invalid is proposed; apply checks again.
    let current = read_event(&state, &event_id, Consistency::Linearizable).await?;
    patch.apply_to(&current.spec).validate().map_err(ApiError::Unprocessable)?;
    if patch.starts_at_ms.is_some_and(|t| t <= now_ms()) {
        return Err(ApiError::Unprocessable("`starts_at` must be in the future".into()));
    }
    match state.submit(Command::UpdateEvent { event_id, patch }, request_id, fingerprint).await? {
        Outcome::Event(view) => Ok(Json(EventJson::from(view.as_ref()))),
        other => Err(ApiError::unexpected(other)),
    }
}

/// `?from=&to=&limit=&cursor=` of the event list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventListParams {
    /// RFC 3339; default now (upcoming events).
    #[param(schema_with = rules::time_text)]
    pub from: Option<String>,
    /// RFC 3339, exclusive; default no bound. Not before `from` (422).
    #[param(schema_with = rules::time_text)]
    pub to: Option<String>,
    /// 1 to 100, default 20.
    #[param(schema_with = limit_schema)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = event_cursor)]
    pub cursor: Option<String>,
}

fn event_cursor() -> utoipa::openapi::schema::Object {
    EventCursor::SHAPE.schema(false)
}

/// Events whose `starts_at` is in `[from, to)`, soonest first, from every shard.
#[utoipa::path(
    get, path = "/v1/events", operation_id = "list_events", tag = "events",
    params(EventListParams),
    responses(
        (status = 200, body = Page<EventSummaryJson>),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "`from` is after `to`", body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<EventListParams>,
) -> Result<Json<Page<EventSummaryJson>>, ApiError> {
    let from_ms = params.from.as_deref().map(|t| parse_time("from", t)).transpose()?.unwrap_or_else(now_ms);
    let to_ms = params.to.as_deref().map(|t| parse_time("to", t)).transpose()?.unwrap_or(i64::MAX);
    let page = PageParams { limit: params.limit, cursor: params.cursor };
    let limit = page.limit()?;
    let after = page.cursor::<EventCursor>()?.map(|c| (c.starts_at_ms, c.event_id));
    if from_ms > to_ms {
        return Err(ApiError::Unprocessable("`from` must not be after `to`".into()));
    }
    let asked = per_shard_limit(limit);
    let query = |_| Query::Events { from_ms, to_ms, after: after.clone(), limit: asked };
    let unpack = |answer| match answer {
        Answer::Events(events) => Some(events),
        _ => None,
    };
    let pages = gather(state.cluster(), Consistency::Stale, query, unpack).await?;
    let key = |e: &EventSummary| (e.starts_at_ms, e.event_id.clone());
    let (items, more) = merge(pages, asked, limit, key);
    let next_cursor = more
        .then(|| {
            items.last().map(|e| EventCursor { starts_at_ms: e.starts_at_ms, event_id: e.event_id.clone() }.encode())
        })
        .flatten();
    Ok(Json(Page { items: items.iter().map(EventSummaryJson::from).collect(), next_cursor }))
}

/// One event, with per-section `available`, `held`, `sold` and price. Served from the read
/// cache (about a second old at most, and dropped at once by writes through this instance), with
/// an `ETag`: `If-None-Match` with the current tag answers 304 without a body.
#[utoipa::path(
    get, path = "/v1/events/{event_id}", operation_id = "get_event", tag = "events",
    params(
        ("event_id" = String, Path),
        ("If-None-Match" = Option<String>, Header, description = "An ETag of an earlier answer"),
    ),
    responses(
        (status = 200, body = EventJson, headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified: the tag in `If-None-Match` is current"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<ApiState>,
    IdPath(event_id): IdPath<EventId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let load = || async {
        let view = read_event(&state, &event_id, Consistency::Stale).await?;
        render_event(&view)
    };
    let (rendered, source) = state.read_cache().get(Doc::Event, &event_id, load).await?;
    Ok(rendered.respond(Doc::Event, source, &headers, state.read_cache().cache_control()))
}

/// The event's JSON; its tag covers the whole body (nothing in it depends on when it was read).
fn render_event(view: &EventView) -> Result<Rendered, ApiError> {
    let body = serde_json::to_vec(&EventJson::from(view))
        .map_err(|e| ApiError::Internal(format!("rendering an event: {e}")))?;
    let whole = 0..body.len();
    Ok(Rendered::new(body, whole))
}
