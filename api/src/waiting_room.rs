//! The waiting room inside one api instance: sequence numbers from leased blocks, and the queue
//! views it watches for its clients.
//!
//! Nothing here is needed for correctness across instances: the store holds the queue's truth
//! (leases, watermark, redemptions) and the tokens carry the rest, so an instance that restarts
//! or is added starts from nothing and honours every token. What an instance keeps is soft:
//!
//! - **Leases.** Joining costs no Raft write: each instance takes blocks of sequence numbers and
//!   hands them out one by one. Concurrent joins wait for the one lease in progress instead of
//!   each proposing its own. A block is sized to last about [`BLOCK_LIFE_TARGET`] at the recent
//!   arrival rate and is dropped after [`BLOCK_AGE_MAX`] (or once admission has reached it, or
//!   when the sale opens under an early block), so later arrivals keep their order within about
//!   a second; the unused tail becomes positions nobody holds, which admission passes over.
//! - **Views.** Each room is read every [`VIEW_POLL`] by one task, however many clients poll or
//!   stream; every GET and SSE stream of the room is answered from that view. A room nobody has
//!   asked about for [`ROOM_IDLE`] is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use raft_store::{Answer, Command, EventId, GroupId, Outcome, Query, QueueView, RequestId, QUEUE_BLOCK_MAX};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::dto::now_ms;
use crate::error::ApiError;
use crate::queue::QueueKeys;
use seams::{Cluster, Consistency, Submit};

/// A block should last about this long at the current arrival rate.
const BLOCK_LIFE_TARGET: Duration = Duration::from_millis(500);
/// A block is not handed out from after this long: later arrivals would jump ahead of the
/// blocks other instances leased since.
const BLOCK_AGE_MAX: Duration = Duration::from_secs(1);
/// The first block of a room.
const BLOCK_SIZE_START: u64 = 8;
/// How often a room's view is read while anyone is interested.
pub(crate) const VIEW_POLL: Duration = Duration::from_millis(500);
/// A room without clients for this long stops being watched.
const ROOM_IDLE: Duration = Duration::from_secs(60);
/// The admission rate is measured over this window.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// How long a request waits for the first view of a room.
const FIRST_VIEW_WAIT: Duration = Duration::from_secs(3);

/// A room's view as its watcher last read it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Seen {
    pub view: QueueView,
    /// Admissions per second over the last few seconds; 0 before any.
    pub rate_per_s: f64,
}

pub(crate) struct WaitingRoom {
    inner: Arc<Rooms>,
}

struct Rooms {
    cluster: Arc<dyn Cluster>,
    shard_count: u32,
    keys: QueueKeys,
    rooms: Mutex<HashMap<EventId, Arc<Room>>>,
}

pub(crate) struct Room {
    event_id: EventId,
    group: GroupId,
    leasing: tokio::sync::Mutex<Leasing>,
    seen: watch::Sender<Option<Arc<Seen>>>,
    last_used_ms: AtomicI64,
}

#[derive(Debug)]
struct Leasing {
    block: Option<Block>,
    size: u64,
}

#[derive(Debug)]
struct Block {
    start: u64,
    next: u64,
    end: u64,
    early: bool,
    leased_at: Instant,
}

impl WaitingRoom {
    pub(crate) fn new(cluster: Arc<dyn Cluster>, secret: &str) -> WaitingRoom {
        let shard_count = cluster.shard_count();
        WaitingRoom {
            inner: Arc::new(Rooms {
                cluster,
                shard_count,
                keys: QueueKeys::new(secret),
                rooms: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub(crate) fn keys(&self) -> &QueueKeys {
        &self.inner.keys
    }

    /// The room of a high-traffic event; 404 for an unknown event or one without a waiting room.
    /// Only such events get a room (and a watcher), so made-up ids cost one read each.
    pub(crate) async fn room(&self, event_id: &EventId) -> Result<Arc<Room>, ApiError> {
        if let Some(room) = self.inner.rooms.lock().ok().and_then(|rooms| rooms.get(event_id).cloned()) {
            room.touch();
            return Ok(room);
        }
        let group = GroupId::shard(raft_store::shard_of(event_id, self.inner.shard_count));
        let view = read_view(self.inner.cluster.as_ref(), group, event_id).await?;
        if !view.high_traffic {
            return Err(ApiError::NotFound("this event has no waiting room: hold seats directly".into()));
        }
        let room = {
            let Ok(mut rooms) = self.inner.rooms.lock() else {
                return Err(ApiError::Internal("the waiting room registry is poisoned".into()));
            };
            if let Some(room) = rooms.get(event_id) {
                room.clone()
            } else {
                let (seen, _) = watch::channel(Some(Arc::new(Seen { view, rate_per_s: 0.0 })));
                let room = Arc::new(Room {
                    event_id: event_id.clone(),
                    group,
                    leasing: tokio::sync::Mutex::new(Leasing { block: None, size: BLOCK_SIZE_START }),
                    seen,
                    last_used_ms: AtomicI64::new(now_ms()),
                });
                rooms.insert(event_id.clone(), room.clone());
                tokio::spawn(watch_room(Arc::downgrade(&self.inner), Arc::downgrade(&room)));
                room
            }
        };
        room.touch();
        Ok(room)
    }

    /// Takes the next sequence number of the room, leasing a block when needed.
    pub(crate) async fn take_seq(&self, room: &Room) -> Result<u64, ApiError> {
        let mut leasing = room.leasing.lock().await;
        let seen = room.current().await?;
        let now = Instant::now();
        if let Some(block) = &mut leasing.block {
            let opened = seen.view.queue.early_bound.is_some() || now_ms() >= seen.view.on_sale_at_ms;
            let usable = block.next < block.end
                && now.duration_since(block.leased_at) < BLOCK_AGE_MAX
                && !(block.early && opened)
                && block.next >= seen.view.queue.watermark;
            if usable {
                block.next += 1;
                return Ok(block.next - 1);
            }
        }
        let size = match &leasing.block {
            Some(last) => next_block_size(last, leasing.size, now),
            None => leasing.size,
        };
        // Hand the dropped block's tail back, so admission does not wait for buyers it never had.
        let unused = leasing.block.as_ref().filter(|b| b.next < b.end).map(|b| (b.next, b.end));
        let command = Command::LeaseQueueBlock { event_id: room.event_id.clone(), size, unused };
        let submit = Submit { command, request_id: RequestId(rand::random()), fingerprint: 0, keyed: true };
        let block = match self.inner.cluster.submit(submit).await? {
            Outcome::QueueBlock(block) => block,
            Outcome::Refused(refusal) => return Err(refusal.into()),
            other => return Err(ApiError::unexpected(other)),
        };
        metrics::counter!("api_queue_leases_total").increment(1);
        leasing.size = size;
        leasing.block = Some(Block {
            start: block.start,
            next: block.start + 1,
            end: block.end,
            early: block.early,
            leased_at: now,
        });
        Ok(block.start)
    }
}

/// The size of the next block: enough for [`BLOCK_LIFE_TARGET`] at the rate the last one was
/// taken, doubling at most per lease.
fn next_block_size(last: &Block, size: u64, now: Instant) -> u64 {
    let used = last.next - last.start;
    let life = now.duration_since(last.leased_at).max(Duration::from_millis(10));
    let per_s = used as f64 / life.as_secs_f64();
    let wanted = (per_s * BLOCK_LIFE_TARGET.as_secs_f64()).ceil() as u64;
    wanted.clamp(1, size.saturating_mul(2).max(1)).min(QUEUE_BLOCK_MAX)
}

impl Room {
    fn touch(&self) {
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The latest view of the room.
    pub(crate) async fn current(&self) -> Result<Arc<Seen>, ApiError> {
        let mut rx = self.seen.subscribe();
        let wait = tokio::time::timeout(FIRST_VIEW_WAIT, rx.wait_for(Option::is_some)).await;
        match wait {
            Ok(Ok(seen)) => seen.clone().ok_or_else(|| ApiError::Internal("a waiting room view vanished".into())),
            _ => Err(ApiError::Unavailable("the waiting room's state could not be read in time".into())),
        }
    }

    pub(crate) fn group(&self) -> GroupId {
        self.group
    }

    pub(crate) fn event_id(&self) -> &EventId {
        &self.event_id
    }

    /// Follows the room's view: the receiver sees each new one.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Arc<Seen>>> {
        self.touch();
        self.seen.subscribe()
    }
}

pub(crate) async fn read_view(
    cluster: &dyn Cluster,
    group: GroupId,
    event_id: &EventId,
) -> Result<QueueView, ApiError> {
    match cluster.query(group, Query::Queue(event_id.clone()), Consistency::Stale).await? {
        Answer::Queue(Some(view)) => Ok(view),
        Answer::Queue(None) => Err(ApiError::NotFound("no event has this id".into())),
        other => Err(ApiError::unexpected(other)),
    }
}

/// When `position` was admitted, from any replica that has applied the admission.
pub(crate) async fn admitted_at(
    cluster: &dyn Cluster,
    group: GroupId,
    event_id: &EventId,
    position: u64,
) -> Result<Option<i64>, ApiError> {
    let query = Query::QueueAdmission { event_id: event_id.clone(), position };
    match cluster.query(group, query, Consistency::Stale).await? {
        Answer::Admission(at) => Ok(at),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Reads a room's view every [`VIEW_POLL`] until the room is idle, measuring the admission rate.
async fn watch_room(rooms: Weak<Rooms>, room: Weak<Room>) {
    let mut marks: VecDeque<(Instant, u64)> = VecDeque::new();
    loop {
        tokio::time::sleep(VIEW_POLL).await;
        let (Some(rooms), Some(room)) = (rooms.upgrade(), room.upgrade()) else { return };
        let idle_ms = now_ms() - room.last_used_ms.load(Ordering::Relaxed);
        if room.seen.receiver_count() == 0 && idle_ms > ROOM_IDLE.as_millis() as i64 {
            if let Ok(mut all) = rooms.rooms.lock() {
                all.remove(&room.event_id);
            }
            return;
        }
        let view = match read_view(rooms.cluster.as_ref(), room.group, &room.event_id).await {
            Ok(view) => view,
            Err(e) => {
                tracing::debug!(event_id = %room.event_id, error = %e, "waiting room view not read");
                continue;
            }
        };
        let now = Instant::now();
        marks.push_back((now, view.queue.watermark));
        while marks.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW) {
            marks.pop_front();
        }
        let rate_per_s = match (marks.front(), marks.back()) {
            (Some((t0, w0)), Some((t1, w1))) if t1 > t0 => {
                (w1 - w0.min(w1)) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let seen = Seen { view, rate_per_s };
        room.seen.send_if_modified(|current| {
            // Reads may land on replicas at different points of the log: never step back.
            let older = current.as_deref().is_some_and(|c| {
                c.view.queue.watermark > seen.view.queue.watermark || c.view.queue.next_seq > seen.view.queue.next_seq
            });
            if older || current.as_deref() == Some(&seen) {
                return false;
            }
            *current = Some(Arc::new(seen));
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(used: u64, size: u64, age: Duration, now: Instant) -> Block {
        Block { start: 100, next: 100 + used, end: 100 + size, early: false, leased_at: now - age }
    }

    #[test]
    fn blocks_grow_with_the_arrival_rate_and_shrink_when_it_drops() {
        let now = Instant::now() + Duration::from_secs(10);
        // 8 taken in 50 ms: 160/s wants 80, but a block at most doubles.
        assert_eq!(next_block_size(&block(8, 8, Duration::from_millis(50), now), 8, now), 16);
        // 64 taken in 100 ms: 640/s wants 320.
        assert_eq!(next_block_size(&block(64, 64, Duration::from_millis(100), now), 256, now), 320);
        // 3 taken before the block aged out: 3/s wants 2.
        assert_eq!(next_block_size(&block(3, 64, Duration::from_secs(1), now), 64, now), 2);
        assert_eq!(next_block_size(&block(0, 64, Duration::from_secs(1), now), 64, now), 1);
        assert_eq!(
            next_block_size(&block(10_000, 10_000, Duration::from_millis(10), now), 10_000, now),
            QUEUE_BLOCK_MAX
        );
    }
}
