//! The waiting room of high-traffic events: join, then poll or stream the position until admitted.
//!
//! One place per user and event: a second join returns the first one's place (see
//! `waiting_room.rs` and, for when a place ends, `raft-store`'s `shard/places.rs`).
//!
//! Answers carry, beyond API.md's `position`, `admitted` and `access_token`: `status` (`before_sale`,
//! `waiting`, `admitted`, `expired`, `sold_out`, `closed`), `estimated_wait_s` and, once admitted,
//! `access_expires_at`. `position` is how many places from admission the buyer is (1 = next)
//! while waiting, 0 once admitted, and before the sale opens the number of buyers in the early
//! group so far (their order is drawn at the opening).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use raft_store::{EventId, Refusal, UserId, PASS_TTL_MS};
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::STREAM_KEEP_ALIVE;
use crate::dto::{now_ms, time_json, ProblemJson};
use crate::error::ApiError;
use crate::extract::{Caller, ClientAddress, IdPath};
use crate::queue::QueueClaims;
use crate::state::ApiState;
use crate::streams::StreamPermit;
use crate::waiting_room::{admitted_at, Room, Seen};

/// Header that carries the queue token on `GET /v1/events/{id}/queue`.
pub(crate) const QUEUE_TOKEN_HEADER: &str = "x-queue-token";
/// Header that carries the access token on holds of high-traffic events.
pub(crate) const QUEUE_ACCESS_HEADER: &str = "x-queue-access";
/// The admission rate assumed for estimates before one is measured, per second.
const RATE_GUESS_PER_S: f64 = 100.0;
/// How soon a disconnected stream should reconnect.
const STREAM_RETRY: Duration = Duration::from_secs(2);

/// Where a buyer stands.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct QueueStatusJson {
    /// `before_sale`, `waiting`, `admitted`, `expired` (admitted, but the access token's time
    /// ran out: join again), `sold_out` or `closed` (the event has started).
    pub status: &'static str,
    pub position: u64,
    pub admitted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<String>,
    pub estimated_wait_s: u64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct JoinedJson {
    pub queue_token: String,
    #[serde(flatten)]
    pub status: QueueStatusJson,
}

/// Joins the waiting room of a high-traffic event. A user has one place per event: joining
/// again, on any api instance, answers the same place (with a fresh token for it) until it ends
/// — its pass bought a hold, or it was admitted and its pass expired — and then a new one.
#[utoipa::path(
    post, path = "/v1/events/{event_id}/queue", operation_id = "join_queue", tag = "waiting room",
    params(("event_id" = String, Path)),
    responses(
        (status = 201, body = JoinedJson),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, description = "not_on_sale: the event has started", body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, description = "Unknown event, or one without a waiting room", body = ProblemJson, content_type = "application/problem+json"),
        (status = 409, description = "sold_out", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn join(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(event_id): IdPath<EventId>,
) -> Result<(StatusCode, Json<JoinedJson>), ApiError> {
    let rooms = state.waiting_room();
    let room = rooms.room(&event_id).await?;
    let seen = room.current().await?;
    let view = &seen.view;
    if view.sold_out {
        return Err(ApiError::SoldOut("every ticket of this event is sold: the waiting room is closed".into()));
    }
    if now_ms() >= view.starts_at_ms {
        return Err(Refusal::NotOnSale { on_sale_at_ms: view.on_sale_at_ms, starts_at_ms: view.starts_at_ms }.into());
    }
    let mut place = rooms.join(&room, &caller.user, None).await?;
    let mut status = status_of(&state, &room, &caller.user, place.seq, &seen).await?;
    if !place.new && status.status == "expired" {
        // The place the user had was admitted and its pass ran out unused: it has ended. Apply
        // replaces it only if it is still theirs, so concurrent joins get one new place.
        let ended = place.seq;
        place = rooms.join(&room, &caller.user, Some(ended)).await?;
        status = status_of(&state, &room, &caller.user, place.seq, &seen).await?;
    }
    let claims = QueueClaims {
        sub: caller.user.as_str().to_owned(),
        evt: event_id.as_str().to_owned(),
        seq: place.seq,
        exp: u64::try_from(view.starts_at_ms.div_euclid(1_000)).unwrap_or(0),
    };
    metrics::counter!("api_queue_joins_total").increment(1);
    if !place.new {
        metrics::counter!("api_queue_rejoins_total").increment(1);
    }
    Ok((StatusCode::CREATED, Json(JoinedJson { queue_token: rooms.keys().queue_token(&claims), status })))
}

/// The caller's place in the queue; with `Accept: text/event-stream`, a stream of `queue` events
/// (the same JSON) that ends once admitted, sold out, expired or closed.
#[utoipa::path(
    get, path = "/v1/events/{event_id}/queue", operation_id = "queue_status", tag = "waiting room",
    params(
        ("event_id" = String, Path),
        ("X-Queue-Token" = String, Header, description = "The token from joining"),
    ),
    responses(
        (status = 200, body = QueueStatusJson, description = "JSON, or text/event-stream of `queue` events"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, description = "queue_required: missing or invalid queue token", body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited: too many streams from this address or user", body = ProblemJson, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: this instance serves as many streams as it can", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn status(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(event_id): IdPath<EventId>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = headers
        .get(QUEUE_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::QueueRequired("this request needs the `X-Queue-Token` header from joining".into()))?;
    let claims = state.waiting_room().keys().verify_queue(token.trim(), &caller.user, &event_id)?;
    let room = state.waiting_room().room(&event_id).await?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    if wants_stream {
        let permit = state.stream_slots().acquire(address, Some(&caller.user))?;
        return Ok(stream(state, room, caller.user, claims.seq, permit).into_response());
    }
    let seen = room.current().await?;
    Ok(Json(status_of(&state, &room, &caller.user, claims.seq, &seen).await?).into_response())
}

fn stream(
    state: ApiState,
    room: Arc<Room>,
    user: UserId,
    seq: u64,
    permit: StreamPermit,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct Follow {
        /// Held while the stream lasts.
        _permit: StreamPermit,
        state: ApiState,
        room: Arc<Room>,
        rx: tokio::sync::watch::Receiver<Option<Arc<Seen>>>,
        user: UserId,
        seq: u64,
        last: Option<QueueStatusJson>,
        ended: bool,
    }
    let rx = room.subscribe();
    let follow = Follow { _permit: permit, state, room, rx, user, seq, last: None, ended: false };
    let events = stream::unfold(follow, |mut f| async move {
        loop {
            if f.ended {
                return None;
            }
            let seen = f.rx.borrow_and_update().clone();
            if let Some(seen) = seen {
                let status = match status_of(&f.state, &f.room, &f.user, f.seq, &seen).await {
                    Ok(status) => status,
                    Err(e) => {
                        f.ended = true;
                        let event = Event::default().event("error").data(e.problem().text());
                        return Some((Ok(event), f));
                    }
                };
                if f.last.as_ref() != Some(&status) {
                    f.ended = matches!(status.status, "admitted" | "sold_out" | "expired" | "closed");
                    let data = serde_json::to_string(&status).unwrap_or_default();
                    f.last = Some(status);
                    return Some((Ok(Event::default().event("queue").retry(STREAM_RETRY).data(data)), f));
                }
            }
            if f.rx.changed().await.is_err() {
                return None;
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(STREAM_KEEP_ALIVE))
}

/// Where sequence `seq` stands in the room as last seen; mints the access token once admitted.
async fn status_of(
    state: &ApiState,
    room: &Room,
    user: &UserId,
    seq: u64,
    seen: &Seen,
) -> Result<QueueStatusJson, ApiError> {
    let view = &seen.view;
    let now = now_ms();
    let rate = if seen.rate_per_s > 0.0 { seen.rate_per_s } else { RATE_GUESS_PER_S };
    let wait_for = |ahead: u64| (ahead as f64 / rate).ceil() as u64;
    let plain = |status, position, estimated_wait_s| QueueStatusJson {
        status,
        position,
        admitted: false,
        access_token: None,
        access_expires_at: None,
        estimated_wait_s,
    };
    if view.sold_out {
        return Ok(plain("sold_out", 0, 0));
    }
    if now >= view.starts_at_ms {
        return Ok(plain("closed", 0, 0));
    }
    let keys = state.waiting_room().keys();
    let Some(position) = keys.position(room.event_id(), seq, view.queue.early_bound) else {
        let early = view.queue.next_seq;
        let to_opening = u64::try_from((view.on_sale_at_ms - now).max(0) / 1_000).unwrap_or(0);
        return Ok(plain("before_sale", early, to_opening + wait_for(early / 2)));
    };
    if position >= view.queue.watermark {
        let ahead = position - view.queue.watermark;
        return Ok(plain("waiting", ahead + 1, wait_for(ahead)));
    }
    // Admitted in the view; the replica asked may not have applied the admission yet.
    let Some(at) = admitted_at(state.cluster(), room.group(), room.event_id(), position).await? else {
        return Ok(plain("waiting", 1, 0));
    };
    if at + PASS_TTL_MS <= now {
        return Ok(plain("expired", 0, 0));
    }
    Ok(QueueStatusJson {
        status: "admitted",
        position: 0,
        admitted: true,
        access_token: Some(keys.access_token(user, room.event_id(), position, at)),
        access_expires_at: Some(time_json(at + PASS_TTL_MS)),
        estimated_wait_s: 0,
    })
}

/// The store's pass from a hold's `X-Queue-Access` header, if it has one: 403 `queue_required`
/// for a token that is not valid for this user and event.
pub(crate) fn access_pass(
    state: &ApiState,
    headers: &HeaderMap,
    user: &UserId,
    event_id: &EventId,
) -> Result<Option<raft_store::AccessPass>, ApiError> {
    let Some(value) = headers.get(QUEUE_ACCESS_HEADER) else { return Ok(None) };
    let token = value.to_str().map_err(|_| ApiError::QueueRequired("the X-Queue-Access header is malformed".into()))?;
    state.waiting_room().keys().verify_access(token.trim(), user, event_id).map(Some)
}
