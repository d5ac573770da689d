//! The waiting room inside one api instance: joins sent in batches, and the queue views it
//! watches for its clients.
//!
//! Nothing here is needed for correctness across instances: the store holds the queue's truth
//! (places, watermark, redemptions) and the tokens carry the rest, so an instance that restarts
//! or is added starts from nothing and honours every token. What an instance keeps is soft:
//!
//! - **Joins.** Each user has one place per event, decided in apply (`JoinQueue`): a second join,
//!   on this instance or another, gets the first one's place back. Joins stay cheap because
//!   they travel in batches: one command per room carries every join that arrived since the last
//!   one, sent at most every [`JOIN_BATCH_INTERVAL`] (at once when the room was quiet), at most
//!   `QUEUE_JOINS_PER_COMMAND_MAX` each. The log gets a few entries a second per room and api
//!   instance, however many arrive.
//! - **Views.** Each room is read every [`VIEW_POLL`] by one task, however many clients poll or
//!   stream; every GET and SSE stream of the room is answered from that view. A room nobody has
//!   asked about for [`ROOM_IDLE`] is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use raft_store::{
    Answer, Command, EventId, GroupId, Outcome, Query, QueueJoin, QueuePlace, QueueView, Refusal, RequestId, UserId,
    QUEUE_JOINS_PER_COMMAND_MAX,
};
use seams::{Cluster, ClusterError, Consistency, Submit};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::dto::now_ms;
use crate::error::ApiError;
use crate::queue::QueueKeys;

/// A room's join batches leave one instance at most this often: the log's cost of a flood of
/// joins is a few entries a second, and a join waits at most this long for its batch to leave.
const JOIN_BATCH_INTERVAL: Duration = Duration::from_millis(50);
/// Joins waiting for a batch in one room of one instance at most; beyond, a join answers 503.
const JOINS_PENDING_MAX: usize = 50_000;
/// How long a join waits for its batch's answer.
const JOIN_WAIT_MAX: Duration = Duration::from_secs(10);
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
    joins: Mutex<Joins>,
    seen: watch::Sender<Option<Arc<Seen>>>,
    last_used_ms: AtomicI64,
}

/// The joins of a room waiting for their batch.
#[derive(Default)]
struct Joins {
    pending: Vec<PendingJoin>,
    /// A task is sending batches; it stops once nothing is pending.
    sending: bool,
    /// When the last batch left.
    last_sent: Option<Instant>,
}

struct PendingJoin {
    join: QueueJoin,
    reply: oneshot::Sender<Result<QueuePlace, JoinFailure>>,
}

/// Why a batch got no places: the same answer for each of its joins.
#[derive(Clone, Debug)]
enum JoinFailure {
    Refused(Refusal),
    Cluster(ClusterError),
    Unexpected(String),
}

impl From<JoinFailure> for ApiError {
    fn from(failure: JoinFailure) -> Self {
        match failure {
            JoinFailure::Refused(refusal) => ApiError::Refused(refusal),
            JoinFailure::Cluster(error) => error.into(),
            JoinFailure::Unexpected(detail) => ApiError::Internal(detail),
        }
    }
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
                    joins: Mutex::new(Joins::default()),
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

    /// The user's place in the room: the live one they have (joined on any instance), or a new
    /// one. `replaces`: a place the caller found ended (admitted, pass expired), to be replaced
    /// if it is still the user's. Waits for the join's batch.
    pub(crate) async fn join(
        &self,
        room: &Arc<Room>,
        user: &UserId,
        replaces: Option<u64>,
    ) -> Result<QueuePlace, ApiError> {
        let (reply, answer) = oneshot::channel();
        let start_sending = {
            let mut joins = room.joins();
            if joins.pending.len() >= JOINS_PENDING_MAX {
                return Err(ApiError::Overloaded("too many joins are waiting for this waiting room".into()));
            }
            joins.pending.push(PendingJoin { join: QueueJoin { user: user.clone(), replaces }, reply });
            !std::mem::replace(&mut joins.sending, true)
        };
        if start_sending {
            tokio::spawn(send_joins(self.inner.clone(), room.clone()));
        }
        match tokio::time::timeout(JOIN_WAIT_MAX, answer).await {
            Ok(Ok(place)) => Ok(place?),
            Ok(Err(_)) => Err(ApiError::Unavailable("the join was dropped before it was sent".into())),
            Err(_) => Err(ApiError::Unavailable("the waiting room did not answer the join in time".into())),
        }
    }
}

/// Sends a room's pending joins in batches, one at a time and at most every
/// [`JOIN_BATCH_INTERVAL`], until none are left.
async fn send_joins(rooms: Arc<Rooms>, room: Arc<Room>) {
    loop {
        let next = room.joins().last_sent.map(|at| at + JOIN_BATCH_INTERVAL);
        if let Some(at) = next {
            tokio::time::sleep_until(at).await;
        }
        let batch: Vec<PendingJoin> = {
            let mut joins = room.joins();
            if joins.pending.is_empty() {
                joins.sending = false;
                return;
            }
            joins.last_sent = Some(Instant::now());
            let n = joins.pending.len().min(QUEUE_JOINS_PER_COMMAND_MAX);
            joins.pending.drain(..n).collect()
        };
        let joins: Vec<QueueJoin> = batch.iter().map(|p| p.join.clone()).collect();
        match submit_joins(rooms.cluster.as_ref(), &room.event_id, joins).await {
            Ok(places) => {
                for (pending, place) in batch.into_iter().zip(places) {
                    let _ = pending.reply.send(Ok(place));
                }
            }
            Err(failure) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(failure.clone()));
                }
            }
        }
    }
}

/// One `JoinQueue` command: the places of `joins`, in order.
async fn submit_joins(
    cluster: &dyn Cluster,
    event_id: &EventId,
    joins: Vec<QueueJoin>,
) -> Result<Vec<QueuePlace>, JoinFailure> {
    let asked = joins.len();
    let command = Command::JoinQueue { event_id: event_id.clone(), joins };
    // A router's retries of the batch reuse this id, so a retried batch is applied once.
    let submit = Submit { command, request_id: RequestId(rand::random()), fingerprint: 0, keyed: false };
    metrics::counter!("api_queue_join_batches_total").increment(1);
    match cluster.submit(submit).await.map_err(JoinFailure::Cluster)? {
        Outcome::QueuePlaces(places) if places.len() == asked => Ok(places),
        Outcome::Refused(refusal) => Err(JoinFailure::Refused(refusal)),
        other => Err(JoinFailure::Unexpected(format!("a join batch was answered {other:?}"))),
    }
}

impl Room {
    fn joins(&self) -> MutexGuard<'_, Joins> {
        // The lock guards plain vectors, left consistent by every holder.
        self.joins.lock().unwrap_or_else(|e| e.into_inner())
    }

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
