//! The seat map of an event and its live stream (server-sent events).
//!
//! The map is served from the read cache (see `cache.rs`) with an ETag and `Cache-Control`.
//!
//! The stream starts with a `snapshot` (the seat map, at a log index), then sends the records
//! of this event that follow that index in the shard's change feed as `change` events whose
//! `id` is the log index. A client that reconnects with `Last-Event-ID` continues after it when
//! this instance still has the changes since; otherwise, and whenever the stream falls too far
//! behind or the feed is compacted, it gets a fresh snapshot. Streams start from the read
//! cache's map and share one follower of the feed per shard (`seat_feed.rs`); they are capped
//! per client address, per user and per instance (`streams.rs`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::stream;
use raft_store::{Answer, EventId, GroupId, Query, SeatMap};
use tokio::sync::broadcast::error::RecvError;

use crate::cache::{Doc, Rendered};
use crate::config::STREAM_KEEP_ALIVE;
use crate::dto::{ProblemJson, SeatMapJson};
use crate::error::ApiError;
use crate::extract::{Client, IdPath};
use crate::seat_feed::{Behind, FeedMsg, Joined};
use crate::sse;
use crate::state::ApiState;
use crate::streams::StreamPermit;
use seams::{Cluster, Consistency};

/// Fresher maps a stream reads when the one it has is behind the feed: first the read cache
/// again after dropping its copy, then a linearizable read, which is never behind.
const STREAM_FRESHER_READS_MAX: u32 = 2;

/// The seat map, from the read cache; `If-None-Match` with the current `ETag` answers 304.
#[utoipa::path(
    get, path = "/v1/events/{event_id}/seats", operation_id = "get_seat_map", tag = "events",
    params(
        ("event_id" = String, Path),
        ("If-None-Match" = Option<String>, Header, description = "An ETag of an earlier answer"),
    ),
    responses(
        (status = 200, body = SeatMapJson, headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified: the tag in `If-None-Match` is current"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn map(
    State(state): State<ApiState>,
    IdPath(event_id): IdPath<EventId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (rendered, source) = cached_seat_map(&state, &event_id).await?;
    Ok(rendered.respond(Doc::Seats, source, &headers, state.read_cache().cache_control()))
}

/// The rendered map from the read cache (one read for any number of concurrent requests).
async fn cached_seat_map(
    state: &ApiState,
    event_id: &EventId,
) -> Result<(Arc<Rendered>, crate::cache::Source), ApiError> {
    let group = state.group_of(event_id);
    let load =
        || async { render_seat_map(&read_seat_map(state.cluster(), group, event_id, Consistency::Stale).await?) };
    state.read_cache().get(Doc::Seats, event_id, load).await
}

/// The map's JSON; its tag covers the event id, seats and general sections, not the read
/// position (`as_of`, `as_of_index`): see `cache.rs`. The read position is the document's last
/// two fields, so the tag covers every byte before them.
fn render_seat_map(map: &SeatMap) -> Result<Rendered, ApiError> {
    let render_error = |e: &dyn std::fmt::Display| ApiError::Internal(format!("rendering a seat map: {e}"));
    let json = SeatMapJson::from(map);
    let body = serde_json::to_vec(&json).map_err(|e| render_error(&e))?;
    let as_of = serde_json::to_string(&json.as_of).map_err(|e| render_error(&e))?;
    let trailer = format!(",\"as_of\":{as_of},\"as_of_index\":{}}}", json.as_of_index);
    let tagged = body
        .len()
        .checked_sub(trailer.len())
        .filter(|&end| body[end..] == *trailer.as_bytes())
        .ok_or_else(|| render_error(&"the read position is not the document's end"))?;
    Ok(Rendered::new(body, 0..tagged).at_index(map.as_of_index))
}

async fn read_seat_map(
    cluster: &dyn Cluster,
    group: GroupId,
    event_id: &EventId,
    consistency: Consistency,
) -> Result<SeatMap, ApiError> {
    match cluster.query(group, Query::Seats(event_id.clone()), consistency).await? {
        Answer::Seats(Some(map)) => Ok(map),
        Answer::Seats(None) => Err(ApiError::NotFound("no event has this id".into())),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Server-sent events: `snapshot` (the seat map), then `change` events
/// (`{"index", "seats": [{"id", "status"}]}`, `{"index", "general": {...}}` or
/// `{"index", "event": "updated"}`), with keep-alive comments. A client over its own stream cap
/// (per address, per user) gets 429; an instance at its cap answers 503.
#[utoipa::path(
    get, path = "/v1/events/{event_id}/seats/stream", operation_id = "stream_seats", tag = "events",
    params(
        ("event_id" = String, Path),
        ("Last-Event-ID" = Option<String>, Header, description = "Continue after this log index"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", description = "snapshot, then change events"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited: too many streams from this address or user", body = ProblemJson, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: this instance serves as many streams as it can", body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn stream(
    State(state): State<ApiState>,
    IdPath(event_id): IdPath<EventId>,
    client: Client,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let permit = state.stream_slots().acquire(client.address, client.user.as_ref())?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let opened = open(&state, &event_id, resume).await?;
    let stream = SeatStream { state, event_id, opened, ended: false, _permit: permit };
    let frames =
        stream::unfold(stream, |mut s| async move { s.next_frame().await.map(|f| (Ok::<_, Infallible>(f), s)) });
    Ok(sse::response(frames))
}

/// A stream's start: the frames to send first, and its place in the feed.
struct Opened {
    rx: tokio::sync::broadcast::Receiver<FeedMsg>,
    frames: VecDeque<Bytes>,
    /// The last log index whose changes the client has (or will have, once `frames` are sent).
    last_index: u64,
}

impl Opened {
    fn new(joined: Joined, snapshot: Option<&Rendered>, after: u64) -> Opened {
        let mut frames: VecDeque<Bytes> = snapshot.map(Rendered::sse_snapshot).into_iter().collect();
        let mut last_index = after;
        for (index, change) in joined.replay {
            last_index = last_index.max(index);
            frames.push_back(change);
        }
        Opened { rx: joined.rx, frames, last_index }
    }
}

/// Joins the event's feed: after `resume` if this instance can continue from there, else after
/// a snapshot, from the read cache when it is recent enough for the feed. An unknown event is
/// 404 either way.
async fn open(state: &ApiState, event_id: &EventId, resume: Option<u64>) -> Result<Opened, ApiError> {
    let shard = state.shard_of(event_id);
    let feeds = state.seat_feeds();
    let (mut snapshot, _) = cached_seat_map(state, event_id).await?;
    if let Some(after) = resume {
        if let Ok(joined) = feeds.join(shard, event_id, after, false) {
            return Ok(Opened::new(joined, None, after));
        }
    }
    for fresher in 0..=STREAM_FRESHER_READS_MAX {
        match feeds.join(shard, event_id, snapshot.index, true) {
            Ok(joined) => return Ok(Opened::new(joined, Some(&snapshot), snapshot.index)),
            Err(Behind) if fresher < STREAM_FRESHER_READS_MAX => {
                metrics::counter!("api_seat_stream_fresher_reads_total").increment(1);
                snapshot = fresher_seat_map(state, event_id, fresher).await?;
            }
            Err(Behind) => break,
        }
    }
    Err(ApiError::Unavailable(format!("the seat map of {event_id} stays behind the change feed")))
}

/// A map fresher than the cache's: the cache's again after dropping its copy (coalesced with
/// every other stream that needs one), then a linearizable read.
async fn fresher_seat_map(state: &ApiState, event_id: &EventId, attempt: u32) -> Result<Arc<Rendered>, ApiError> {
    if attempt == 0 {
        state.read_cache().invalidate(event_id, "stream").await;
        return Ok(cached_seat_map(state, event_id).await?.0);
    }
    let map = read_seat_map(state.cluster(), state.group_of(event_id), event_id, Consistency::Linearizable).await?;
    Ok(Arc::new(render_seat_map(&map)?))
}

/// One client's stream: its frames, its feed, and its place under the stream caps.
struct SeatStream {
    state: ApiState,
    event_id: EventId,
    opened: Opened,
    ended: bool,
    _permit: StreamPermit,
}

impl SeatStream {
    /// The next frame to send; waits for one, sending keep-alives meanwhile. `None` ends it.
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.opened.frames.pop_front() {
                return Some(frame);
            }
            if self.ended {
                return None;
            }
            let received = match tokio::time::timeout(STREAM_KEEP_ALIVE, self.opened.rx.recv()).await {
                Ok(received) => received,
                Err(_) => return Some(Bytes::from_static(sse::KEEP_ALIVE_FRAME)),
            };
            match received {
                Ok(FeedMsg::Change { index, frames }) if index > self.opened.last_index => {
                    self.opened.last_index = index;
                    return Some(frames);
                }
                Ok(FeedMsg::Change { .. }) => {} // in the snapshot or the replay already
                Ok(FeedMsg::Resync) | Err(RecvError::Lagged(_)) => self.resync().await,
                // The feed went away (the api is stopping): the client reconnects elsewhere.
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Starts again from a fresh snapshot; if none can be read, sends an `error` event and ends
    /// (the client reconnects with `Last-Event-ID`).
    async fn resync(&mut self) {
        metrics::counter!("api_seat_stream_resyncs_total").increment(1);
        match open(&self.state, &self.event_id, None).await {
            Ok(opened) => self.opened = opened,
            Err(e) => {
                tracing::warn!(event_id = %self.event_id, error = %e, "seat stream ends");
                let frame = sse::frame("error", None, None, e.problem().text().as_bytes());
                self.opened.frames.push_back(Bytes::from(frame));
                self.ended = true;
            }
        }
    }
}
