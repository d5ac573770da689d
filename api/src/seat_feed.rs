//! One follower of a shard's change feed per api instance, shared by every seat stream of that
//! shard's events.
//!
//! Before, each stream read the whole seat map from the store and long-polled the feed on its
//! own: N streams cost N map reads and N feed polls. Now:
//!
//! - A stream starts from the read cache's rendered map (`cache.rs`), shared by every stream and
//!   every `GET /seats`; its `snapshot` frame is built once per rendered map.
//! - One follower per shard, started when the shard's first stream joins and stopped when its
//!   last one leaves, long-polls the feed and publishes each change once, as a ready frame, on
//!   its event's broadcast channel. A follower serves every event of its shard: records of
//!   events nobody watches are skipped without rendering.
//! - Each event keeps its last [`EVENT_RECENT_CHANGES_MAX`] changes, so a stream can join (or
//!   resume after `Last-Event-ID`) behind the feed's position without a fresh read.
//! - A stream more than [`STREAM_LAG_CHANGES_MAX`] changes behind (a slow reader) is not
//!   buffered for: the channel drops its oldest messages, and the stream starts again from a
//!   fresh snapshot. On compaction every stream of the shard does the same.
//!
//! Joining is exact: a stream may start from a map at index `X` only if every change of its
//! event after `X` is either in the event's recent changes or yet to be published (`X` is not
//! behind `covered_after`). A map older than that (the cache kept it a little long, or a replica
//! lagged) is refused with [`Behind`], and the stream reads a fresher one.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use axum::body::Bytes;
use raft_store::{Change, ChangeKind, ChangesPage, EventId};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::config::STREAM_POLL_WAIT;
use crate::dto::SeatStatusJson;
use crate::sse;
use seams::Cluster;

/// Change records asked of the feed per read.
const FEED_BATCH_RECORDS_MAX: usize = 256;
/// Changes of one event kept for streams that join or resume behind the feed. A map a few
/// seconds old at a busy sale is within it; older, a fresh snapshot is cheaper than the replay.
const EVENT_RECENT_CHANGES_MAX: usize = 128;
/// Messages an event's channel holds for its slowest stream. A stream further behind is
/// resynchronised with a fresh snapshot instead: memory per event stays bounded however slowly
/// a client reads, and past this many changes the snapshot is the smaller message anyway.
const STREAM_LAG_CHANGES_MAX: usize = 256;
/// Backoff between failed feed reads: from the first to the last, doubling. Streams stay open
/// meanwhile (with keep-alives) and miss nothing: the follower resumes where it stopped.
const FEED_RETRY_MIN: Duration = Duration::from_millis(100);
const FEED_RETRY_MAX: Duration = Duration::from_secs(5);

/// What a stream receives from its event's channel.
#[derive(Clone, Debug)]
pub(crate) enum FeedMsg {
    /// The event's changes at one log index, as ready `change` frames.
    Change { index: u64, frames: Bytes },
    /// The feed lost its place (compaction): start again from a fresh snapshot.
    Resync,
}

/// The stream must start from a fresher map: the feed cannot continue from the one it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Behind;

/// A stream's place in its event's feed.
pub(crate) struct Joined {
    pub rx: broadcast::Receiver<FeedMsg>,
    /// Recent changes after the join position, oldest first, to send before `rx`'s messages.
    pub replay: Vec<(u64, Bytes)>,
}

pub(crate) struct SeatFeeds {
    cluster: Arc<dyn Cluster>,
    hub: Arc<Hub>,
}

struct Hub {
    shards: Mutex<HashMap<u32, ShardFeed>>,
}

/// A followed shard. Every record at or below `position` has been published.
struct ShardFeed {
    position: u64,
    events: HashMap<EventId, EventFeed>,
}

struct EventFeed {
    tx: broadcast::Sender<FeedMsg>,
    /// At most `EVENT_RECENT_CHANGES_MAX`, by index.
    recent: VecDeque<(u64, Bytes)>,
    /// Every change of the event after this index (and at or below the shard's position) is in
    /// `recent`.
    covered_after: u64,
}

impl EventFeed {
    fn new(covered_after: u64) -> EventFeed {
        let (tx, _) = broadcast::channel(STREAM_LAG_CHANGES_MAX);
        EventFeed { tx, recent: VecDeque::new(), covered_after }
    }

    fn publish(&mut self, index: u64, frames: Bytes) {
        if self.recent.len() >= EVENT_RECENT_CHANGES_MAX {
            if let Some((evicted, _)) = self.recent.pop_front() {
                self.covered_after = evicted;
            }
        }
        assert!(self.recent.back().is_none_or(|(last, _)| *last < index), "changes are published in index order");
        self.recent.push_back((index, frames.clone()));
        // No receiver is not an error: the follower prunes the event after this page.
        let _ = self.tx.send(FeedMsg::Change { index, frames });
    }
}

impl SeatFeeds {
    pub(crate) fn new(cluster: Arc<dyn Cluster>) -> SeatFeeds {
        SeatFeeds { cluster, hub: Arc::new(Hub { shards: Mutex::new(HashMap::new()) }) }
    }

    /// Joins the feed of `event_id` (in `shard`) after log index `after`: a stream that has
    /// seen everything through `after` gets the rest. With `start`, a shard nobody follows is
    /// followed from `after`; pass it only for indexes read from the store, never a client's.
    pub(crate) fn join(&self, shard: u32, event_id: &EventId, after: u64, start: bool) -> Result<Joined, Behind> {
        let mut shards = self.hub.shards();
        let followed = shards.len();
        let feed = match shards.entry(shard) {
            Entry::Occupied(feed) => feed.into_mut(),
            Entry::Vacant(_) if !start => return Err(Behind),
            Entry::Vacant(vacant) => {
                tokio::spawn(follow(Arc::downgrade(&self.hub), self.cluster.clone(), shard));
                metrics::gauge!("api_seat_feed_followers").set((followed + 1) as f64);
                vacant.insert(ShardFeed { position: after, events: HashMap::new() })
            }
        };
        let position = feed.position;
        let event = feed.events.entry(event_id.clone()).or_insert_with(|| EventFeed::new(position));
        if after < event.covered_after {
            return Err(Behind);
        }
        let rx = event.tx.subscribe();
        let replay = event.recent.iter().filter(|(index, _)| *index > after).cloned().collect();
        Ok(Joined { rx, replay })
    }

    /// Ends every stream (their channels close once drained) and stops every follower: the
    /// api is shutting down, and its streams' clients reconnect elsewhere with `Last-Event-ID`.
    pub(crate) fn close(&self) {
        let mut shards = self.hub.shards();
        shards.clear();
        metrics::gauge!("api_seat_feed_followers").set(0.0);
    }

    /// Shards followed now (for tests).
    #[cfg(test)]
    pub(crate) fn followed_shards(&self) -> usize {
        self.hub.shards().len()
    }
}

impl Hub {
    fn shards(&self) -> MutexGuard<'_, HashMap<u32, ShardFeed>> {
        self.shards.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn position(&self, shard: u32) -> Option<u64> {
        self.shards().get(&shard).map(|feed| feed.position)
    }

    /// Publishes one page of the shard's feed read after `after`; then drops events nobody
    /// streams. Returns whether the shard is still followed.
    fn publish(&self, shard: u32, after: u64, page: ChangesPage) -> bool {
        let mut shards = self.shards();
        let Some(feed) = shards.get_mut(&shard) else { return false };
        match page {
            ChangesPage::Compacted { last_index, .. } => {
                tracing::info!(
                    shard,
                    after,
                    last_index,
                    "seat streams: the change feed was compacted; resynchronising"
                );
                metrics::counter!("api_seat_feed_resyncs_total").increment(1);
                for event in feed.events.values_mut() {
                    event.recent.clear();
                    event.covered_after = last_index;
                    let _ = event.tx.send(FeedMsg::Resync);
                }
                feed.position = feed.position.max(last_index);
            }
            ChangesPage::Records { changes, last_index } => {
                for (event_id, index, frames) in frames_by_event_and_index(&changes, |id| feed.events.contains_key(id))
                {
                    if let Some(event) = feed.events.get_mut(event_id) {
                        event.publish(index, frames);
                    }
                }
                // A full page may stop short of `last_index`: continue after its last record.
                let read_through = match changes.last() {
                    Some(last) if changes.len() >= FEED_BATCH_RECORDS_MAX => last.index,
                    _ => last_index,
                };
                feed.position = feed.position.max(read_through);
            }
        }
        Hub::prune(&mut shards, shard)
    }

    /// Drops the shard's events without streams, and the shard once it has none; whether the
    /// shard is still followed.
    fn prune(shards: &mut HashMap<u32, ShardFeed>, shard: u32) -> bool {
        let Some(feed) = shards.get_mut(&shard) else { return false };
        feed.events.retain(|_, event| event.tx.receiver_count() > 0);
        if feed.events.is_empty() {
            shards.remove(&shard);
            metrics::gauge!("api_seat_feed_followers").set(shards.len() as f64);
            return false;
        }
        true
    }
}

/// Follows one shard's feed while it has streams. Holds the hub weakly: when the api's state
/// goes, so does the follower.
async fn follow(hub: Weak<Hub>, cluster: Arc<dyn Cluster>, shard: u32) {
    let mut backoff = FEED_RETRY_MIN;
    let mut failing = false;
    loop {
        let Some(after) = hub.upgrade().and_then(|hub| hub.position(shard)) else { return };
        let read = cluster.changes(shard, after, FEED_BATCH_RECORDS_MAX, STREAM_POLL_WAIT).await;
        metrics::counter!("api_seat_feed_reads_total").increment(1);
        let Some(hub) = hub.upgrade() else { return };
        match read {
            Ok(page) => {
                if failing {
                    tracing::info!(shard, "seat streams: the change feed answers again");
                    failing = false;
                }
                backoff = FEED_RETRY_MIN;
                if !hub.publish(shard, after, page) {
                    return;
                }
            }
            Err(e) => {
                metrics::counter!("api_seat_feed_errors_total").increment(1);
                if !failing {
                    tracing::warn!(shard, error = %e, "seat streams: the change feed is unavailable; retrying");
                    failing = true;
                }
                if !Hub::prune(&mut hub.shards(), shard) {
                    return;
                }
                drop(hub);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(FEED_RETRY_MAX);
            }
        }
    }
}

/// The `change` frames of a page for the events `wanted`, one message per event and log index
/// (a log entry may carry several changes of one event), in index order.
fn frames_by_event_and_index(changes: &[Change], wanted: impl Fn(&EventId) -> bool) -> Vec<(&EventId, u64, Bytes)> {
    let mut open: HashMap<&EventId, (u64, Vec<u8>)> = HashMap::new();
    let mut out = Vec::new();
    for change in changes.iter().filter(|c| wanted(&c.event_id)) {
        let Some(data) = change_data(change) else { continue };
        let frame = sse::frame("change", Some(change.index), None, data.to_string().as_bytes());
        match open.get_mut(&change.event_id) {
            Some((index, frames)) if *index == change.index => frames.extend_from_slice(&frame),
            _ => {
                if let Some((index, frames)) = open.insert(&change.event_id, (change.index, frame)) {
                    out.push((&change.event_id, index, Bytes::from(frames)));
                }
            }
        }
    }
    out.extend(open.into_iter().map(|(event_id, (index, frames))| (event_id, index, Bytes::from(frames))));
    out
}

/// A change as the stream's JSON: `{"index", "seats": [{"id", "status"}]}`,
/// `{"index", "general": {...}}` or `{"index", "event": "updated"}`; `None` for a buyer's order
/// or ticket, which a public stream never shows.
fn change_data(change: &Change) -> Option<Value> {
    Some(match &change.kind {
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
        ChangeKind::Order { .. } | ChangeKind::Ticket { .. } => return None,
    })
}
