//! The seat map of an event and its live stream (server-sent events).
//!
//! The map is served from the read cache (see `cache.rs`) with an ETag and `Cache-Control`; the
//! stream reads the store directly, since it must start exactly where its changes continue.
//!
//! The stream starts with a `snapshot` (the seat map, at a log index), then follows the shard's
//! change feed after that index and sends the records of this event as `change` events whose
//! `id` is the log index. A client that reconnects with `Last-Event-ID` continues after it; a
//! client behind the feed's retention gets a fresh snapshot.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use futures_util::stream::{self, Stream, StreamExt};
use raft_store::{Answer, Change, ChangeKind, ChangesPage, EventId, GroupId, Query, SeatMap};
use serde_json::{json, Value};

use crate::cache::{Doc, Rendered};
use crate::config::{STREAM_KEEP_ALIVE, STREAM_POLL_WAIT};
use crate::dto::{ProblemJson, SeatMapJson, SeatStatusJson};
use crate::error::ApiError;
use crate::extract::IdPath;
use crate::state::ApiState;
use seams::{Cluster, Consistency};

/// Change records asked of the feed per read.
const FEED_BATCH_RECORDS_MAX: usize = 256;
/// How soon a disconnected client should reconnect.
const STREAM_RETRY: Duration = Duration::from_secs(2);

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
    let group = state.group_of(&event_id);
    let load = || async { render_seat_map(&read_seat_map(state.cluster(), group, &event_id).await?) };
    let (rendered, source) = state.read_cache().get(Doc::Seats, &event_id, load).await?;
    Ok(rendered.respond(Doc::Seats, source, &headers, state.read_cache().cache_control()))
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
    Ok(Rendered::new(body, 0..tagged))
}

async fn read_seat_map(cluster: &dyn Cluster, group: GroupId, event_id: &EventId) -> Result<SeatMap, ApiError> {
    match cluster.query(group, Query::Seats(event_id.clone()), Consistency::Stale).await? {
        Answer::Seats(Some(map)) => Ok(map),
        Answer::Seats(None) => Err(ApiError::NotFound("no event has this id".into())),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Server-sent events: `snapshot` (the seat map), then `change` events
/// (`{"index", "seats": [{"id", "status"}]}`, `{"index", "general": {...}}` or
/// `{"index", "event": "updated"}`), with keep-alive comments.
#[utoipa::path(
    get, path = "/v1/events/{event_id}/seats/stream", operation_id = "stream_seats", tag = "events",
    params(
        ("event_id" = String, Path),
        ("Last-Event-ID" = Option<String>, Header, description = "Continue after this log index"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", description = "snapshot, then change events"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn stream(
    State(state): State<ApiState>,
    IdPath(event_id): IdPath<EventId>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let group = state.group_of(&event_id);
    // Read the map first, so an unknown event answers 404 rather than an empty stream.
    let map = read_seat_map(state.cluster(), group, &event_id).await?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let feed = Feed {
        cluster: state.cluster_arc(),
        shard: state.shard_of(&event_id),
        group,
        after_index: resume.unwrap_or(map.as_of_index),
        snapshot: if resume.is_some() { None } else { Some(map) },
        event_id,
        ended: false,
    };
    let events = stream::unfold(feed, |mut feed| async move {
        let batch = feed.next_batch().await?;
        Some((stream::iter(batch.into_iter().map(Ok)), feed))
    })
    .flatten();
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(STREAM_KEEP_ALIVE)))
}

/// One client's position in the change feed of its event's shard.
struct Feed {
    cluster: Arc<dyn Cluster>,
    shard: u32,
    group: GroupId,
    event_id: EventId,
    /// The last log index whose records this client has been sent (or does not need).
    after_index: u64,
    /// A seat map to send before anything else.
    snapshot: Option<SeatMap>,
    ended: bool,
}

impl Feed {
    /// The next events to send; waits until there is at least one. `None` ends the stream.
    async fn next_batch(&mut self) -> Option<Vec<Event>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(map) = self.snapshot.take() {
                self.after_index = map.as_of_index;
                return Some(vec![snapshot_event(&map)]);
            }
            match self.read().await {
                Ok(events) if events.is_empty() => continue,
                Ok(events) => return Some(events),
                Err(e) => {
                    // The client reconnects with Last-Event-ID and resumes where it was.
                    tracing::warn!(event_id = %self.event_id, error = %e, "seat stream ends");
                    self.ended = true;
                    let problem = e.problem();
                    return Some(vec![Event::default().event("error").data(problem.text())]);
                }
            }
        }
    }

    /// One read of the feed: this event's changes, or a fresh snapshot after compaction.
    async fn read(&mut self) -> Result<Vec<Event>, ApiError> {
        let page = self.cluster.changes(self.shard, self.after_index, FEED_BATCH_RECORDS_MAX, STREAM_POLL_WAIT).await?;
        match page {
            ChangesPage::Compacted { .. } => {
                self.snapshot = Some(read_seat_map(self.cluster.as_ref(), self.group, &self.event_id).await?);
                Ok(Vec::new())
            }
            ChangesPage::Records { changes, last_index } => {
                // A full page may stop short of `last_index`: continue after its last record.
                let read_through = match changes.last() {
                    Some(last) if changes.len() >= FEED_BATCH_RECORDS_MAX => last.index,
                    _ => last_index,
                };
                self.after_index = self.after_index.max(read_through);
                Ok(changes.iter().filter(|c| c.event_id == self.event_id).map(change_event).collect())
            }
        }
    }
}

fn snapshot_event(map: &SeatMap) -> Event {
    let data = serde_json::to_string(&SeatMapJson::from(map)).unwrap_or_default();
    Event::default().event("snapshot").id(map.as_of_index.to_string()).retry(STREAM_RETRY).data(data)
}

fn change_event(change: &Change) -> Event {
    Event::default().event("change").id(change.index.to_string()).data(change_data(change).to_string())
}

pub(crate) fn change_data(change: &Change) -> Value {
    match &change.kind {
        ChangeKind::Seats { seats, status } => {
            let status = SeatStatusJson::from(*status);
            let seats: Vec<Value> = seats.iter().map(|id| json!({ "id": id, "status": status })).collect();
            json!({ "index": change.index, "seats": seats })
        }
        ChangeKind::General { section, available, held, sold } => json!({
            "index": change.index,
            "general": { "section": section, "available": available, "held": held, "sold": sold },
        }),
        ChangeKind::Event => json!({ "index": change.index, "event": "updated" }),
    }
}
