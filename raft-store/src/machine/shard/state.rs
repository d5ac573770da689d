//! The shard's records: what it stores for events, seats, holds and orders, and the lookups every
//! command shares. Every other module of the shard builds on these; this one uses none of them.
//!
//! A hold lives in memory while it is active. The apply that ends it (released, expired, checked
//! out) moves it to the shard's cold store (`keys::cold::ENDED_HOLD`), where it expires
//! [`HOLD_RETENTION_MS`] after it ended; [`ShardState::own_hold`] finds it in either place. A state
//! from before that (a snapshot of format 2 or 3 written by an older node) keeps its ended holds in
//! memory until `dropping` removes them; no new ended hold joins them.
//!
//! Snapshots serialize [`ShardState`] with bincode, which encodes fields in declaration order:
//! reordering fields here changes the snapshot format.
//!
//! Every collection is a persistent one from `imbl` (`OrdMap` and `OrdSet` in the order a
//! `BTreeMap` and `BTreeSet` would keep, `Vector` for sequences), and the event's spec sits behind
//! an `Arc`: cloning a shard, as a snapshot does under the apply lock, is O(1), and the first write
//! after the clone copies only the nodes on the path it touches (DESIGN.md, I9). They encode
//! exactly as the std collections they replace (a length, then the items in order), so equal
//! states still give equal snapshot bytes.

use std::borrow::Cow;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet, Vector};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec;
use crate::cold::{ColdError, ColdRead, ColdRecord, ColdWrites};
use crate::command::{Change, Outcome, Refusal};
use crate::ids::{EventId, HoldId, UserId};
use crate::keys::cold::ENDED_HOLD;
use crate::limits::HOLD_RETENTION_MS;
use crate::machine::queue::QueueState;
use crate::model::{EventSpec, HoldStatus, Money, OrderStatus, TicketStatus};

/// A seat: section, row and number (from 1) within the event's venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) struct SeatRef {
    pub(super) section: u16,
    pub(super) row: u16,
    pub(super) number: u16,
}

/// What a hold (and the order made from it) occupies. An order keeps its own copy, so it never
/// needs its hold's record, which leaves memory when the hold ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum Taken {
    Seats(Vec<SeatRef>),
    General { section: u16, quantity: u32 },
}

impl Taken {
    pub(super) fn count(&self) -> u32 {
        match self {
            Taken::Seats(seats) => seats.len() as u32,
            Taken::General { quantity, .. } => *quantity,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Slot {
    Free,
    /// Held by a hold (active, or checked out with its order awaiting payment).
    Held(u64),
    /// Sold to a confirmed order.
    Sold(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct SectionInv {
    /// Seat slots by row; empty for a general-admission section. Persistent vectors: a hold after
    /// a snapshot copies one chunk of one row, not the section.
    #[serde(deserialize_with = "crate::cautious::vector_of_vectors")]
    pub(super) rows: Vector<Vector<Slot>>,
    pub(super) capacity: u32,
    pub(super) held: u32,
    pub(super) sold: u32,
}

impl SectionInv {
    pub(super) fn available(&self) -> u32 {
        self.capacity - self.held - self.sold
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct EventState {
    /// Replaced whole by an update, never changed in place: shared by every copy of the state.
    pub(super) spec: Arc<EventSpec>,
    pub(super) created_at_ms: i64,
    pub(super) updated_at_ms: i64,
    #[serde(deserialize_with = "crate::cautious::vector")]
    pub(super) sections: Vector<SectionInv>,
    /// Admissions each user has in active holds and live orders, for `per_user_limit`.
    #[serde(deserialize_with = "crate::cautious::ord_map")]
    pub(super) per_user: OrdMap<UserId, u32>,
    /// Seats and general admissions each user has in active holds (not orders), for the cap a
    /// hold carries. Derived from the holds, so not encoded: snapshots keep format 2's shape and
    /// decoding rebuilds it (see `ShardState`'s `Deserialize`).
    #[serde(skip)]
    pub(super) held_by_user: OrdMap<UserId, u32>,
    /// The waiting room (high-traffic events).
    pub(super) queue: QueueState,
    /// The event's orders still in memory (the archive moves them out in steps).
    #[serde(deserialize_with = "crate::cautious::ord_set")]
    pub(super) orders: OrdSet<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) enum Deadline {
    Hold(u64),
    Payment(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct HoldRec {
    pub(super) event_id: EventId,
    pub(super) user: UserId,
    pub(super) taken: Taken,
    pub(super) total: Money,
    pub(super) status: HoldStatus,
    pub(super) created_at_ms: i64,
    pub(super) expires_at_ms: i64,
    pub(super) ended_at_ms: Option<i64>,
    pub(super) order: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct TicketRec {
    pub(super) n: u32,
    pub(super) seat: Option<SeatRef>,
    pub(super) section: u16,
    pub(super) status: TicketStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct OrderRec {
    pub(super) event_id: EventId,
    pub(super) user: UserId,
    pub(super) hold: u64,
    /// The seats or quantity of the hold it was made from.
    pub(super) taken: Taken,
    pub(super) status: OrderStatus,
    pub(super) total: Money,
    pub(super) created_at_ms: i64,
    pub(super) updated_at_ms: i64,
    pub(super) payment_deadline_ms: i64,
    pub(super) payment_reference: Option<String>,
    pub(super) refunded: bool,
    pub(super) tickets: Vec<TicketRec>,
}

/// `remote = "Self"` makes the derives plain functions, which the trait impls below wrap: decoding
/// rebuilds what is derived and not encoded (`EventState::held_by_user`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct ShardState {
    #[serde(deserialize_with = "crate::cautious::ord_map")]
    pub(super) events: OrdMap<EventId, EventState>,
    /// Events by `(starts_at, id)` for listing soonest first.
    #[serde(deserialize_with = "crate::cautious::ord_set")]
    pub(super) by_start: OrdSet<(i64, EventId)>,
    /// Active holds. A state written before ended holds went to the cold store also keeps ended
    /// ones (released, expired, checked out) here until they leave by `dropping`.
    #[serde(deserialize_with = "crate::cautious::ord_map")]
    pub(super) holds: OrdMap<u64, HoldRec>,
    #[serde(deserialize_with = "crate::cautious::ord_map")]
    pub(super) orders: OrdMap<u64, OrderRec>,
    #[serde(deserialize_with = "crate::cautious::ord_set")]
    pub(super) user_orders: OrdSet<(UserId, u64)>,
    /// Active holds by expiry and pending orders by payment deadline.
    #[serde(deserialize_with = "crate::cautious::ord_set")]
    pub(super) deadlines: OrdSet<(i64, Deadline)>,
    /// The ended holds in `holds` by the time they leave it: `HOLD_RETENTION_MS` after they
    /// ended. Only a state from before ended holds went to the cold store has any; it drains.
    #[serde(deserialize_with = "crate::cautious::ord_set")]
    pub(super) dropping: OrdSet<(i64, u64)>,
    /// Sequence for hold and order ids; shared so ids never collide within the shard.
    pub(super) next_seq: u64,
    #[serde(deserialize_with = "crate::cautious::vector")]
    pub(super) changes: Vector<Change>,
    /// The highest index whose records were dropped from `changes` (0: none dropped).
    pub(super) changes_dropped_through: u64,
    /// Orders awaiting payment by the hold they were made from: their seats are held in the
    /// hold's name (`Slot::Held`), and the hold itself has left memory. Derived from `orders`, so
    /// not encoded (snapshots keep their shape); decoding rebuilds it.
    #[serde(skip)]
    pub(super) pending_by_hold: OrdMap<u64, u64>,
}

impl Serialize for ShardState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ShardState::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for ShardState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut state = ShardState::deserialize(deserializer)?;
        state.rebuild_held_by_user().map_err(D::Error::custom)?;
        state.rebuild_pending_by_hold();
        Ok(state)
    }
}

pub(super) fn refused(r: Refusal) -> Outcome {
    Outcome::Refused(r)
}

impl ShardState {
    /// Counts every event's `held_by_user` (empty when decoded) from the active holds. A hold of
    /// an event the state does not have is a corrupt state: an error, never a panic.
    fn rebuild_held_by_user(&mut self) -> Result<(), String> {
        for (seq, hold) in self.holds.iter().filter(|(_, h)| h.status == HoldStatus::Active) {
            let event = self.events.get_mut(&hold.event_id).ok_or_else(|| format!("active hold {seq} of no event"))?;
            // Saturating: a damaged snapshot's counts are for the invariant check to find, not a panic.
            let held = event.held_by_user.entry(hold.user.clone()).or_insert(0);
            *held = held.saturating_add(hold.taken.count());
        }
        Ok(())
    }

    /// Indexes every order awaiting payment by its hold (empty when decoded).
    fn rebuild_pending_by_hold(&mut self) {
        self.pending_by_hold = self
            .orders
            .iter()
            .filter(|(_, o)| o.status == OrderStatus::PendingPayment)
            .map(|(seq, o)| (o.hold, *seq))
            .collect();
    }

    /// The hold `id` if it exists and belongs to `user` (another user's hold is "not found"):
    /// in memory, or ended and in the cold store as `at` sees it. An ended hold of an event that
    /// left memory (archived) is not found, as when ended holds lived in memory and left with
    /// their event.
    pub(super) fn own_hold(
        &self,
        id: &HoldId,
        user: &UserId,
        at: &ColdAt<'_>,
    ) -> Result<Option<Cow<'_, HoldRec>>, ColdError> {
        let hold = match self.holds.get(&id.seq) {
            Some(h) => Some(Cow::Borrowed(h)),
            None if self.events.contains_key(&id.event_id) => at.ended_hold(id)?.map(Cow::Owned),
            None => None,
        };
        Ok(hold.filter(|h| h.event_id == id.event_id && &h.user == user))
    }
}

/// The key of an ended hold's record in the cold store.
pub(super) fn ended_hold_key(event_id: &EventId, seq: u64) -> Vec<u8> {
    [&[ENDED_HOLD][..], event_id.as_str().as_bytes(), &seq.to_be_bytes()].concat()
}

/// The record of a hold that ended at `ctx` (its `ended_at_ms` set), expiring `HOLD_RETENTION_MS`
/// after it ended; `None` if that is past already (a hold that expired an hour before any command
/// noticed it), which reads would not find.
pub(super) fn ended_hold_record(index: u64, now_ms: i64, hold: &HoldRec) -> Result<Option<ColdRecord>, ColdError> {
    let ended_at_ms = hold.ended_at_ms.expect("an ended hold knows when it ended");
    assert_ne!(hold.status, HoldStatus::Active, "only ended holds go to the cold store");
    let expires_ms = ended_at_ms + HOLD_RETENTION_MS;
    if expires_ms <= now_ms {
        return Ok(None);
    }
    let body = codec::encode(hold).map_err(ColdError::Encode)?;
    Ok(Some(ColdRecord { index, expires_ms: Some(expires_ms), body }))
}

/// Where a lookup in the cold store stands (`cold.rs`'s rule): the records that the entry at
/// `index` sees at `now_ms` — this entry's own `writes` first, then those earlier entries wrote
/// that have not expired. A read stands just past the last applied entry, at the read's time.
pub(super) struct ColdAt<'a> {
    cold: &'a dyn ColdRead,
    writes: Option<&'a ColdWrites>,
    index: u64,
    now_ms: i64,
}

impl<'a> ColdAt<'a> {
    /// For apply of the entry at `index` (time `now_ms`), which wrote `writes` so far.
    pub(super) fn apply(cold: &'a dyn ColdRead, writes: &'a ColdWrites, index: u64, now_ms: i64) -> ColdAt<'a> {
        ColdAt { cold, writes: Some(writes), index, now_ms }
    }

    /// For a read of the state applied through `last_index`, at `now_ms`.
    pub(super) fn read(cold: &'a dyn ColdRead, last_index: u64, now_ms: i64) -> ColdAt<'a> {
        ColdAt { cold, writes: None, index: last_index + 1, now_ms }
    }

    fn get(&self, key: &[u8]) -> Result<Option<ColdRecord>, ColdError> {
        let unexpired = |r: &ColdRecord| r.expires_ms.is_none_or(|t| t > self.now_ms);
        if let Some(record) = self.writes.and_then(|w| w.get(key)) {
            return Ok(Some(record.clone()).filter(unexpired));
        }
        Ok(self.cold.get(key)?.filter(|r| r.visible_to(self.index, self.now_ms)))
    }

    /// The ended hold `id`, if the cold store holds it and it has not expired.
    fn ended_hold(&self, id: &HoldId) -> Result<Option<HoldRec>, ColdError> {
        let key = ended_hold_key(&id.event_id, id.seq);
        match self.get(&key)? {
            Some(record) => record.decode_body(&key).map(Some),
            None => Ok(None),
        }
    }
}
