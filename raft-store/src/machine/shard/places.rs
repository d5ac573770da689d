//! Places in a waiting room: one live place per (user, event), kept in the shard's cold store.
//!
//! A join is a `JoinQueue` batch that an api instance proposes for many users at once. For each
//! user apply answers the place they already have, or gives them the next sequence number; so a
//! second join, on any api instance, gets the first one's place back, and duplicate joins cost
//! no sequence numbers (which would be holes the admission controller counts as buyers).
//!
//! Where a place lives: on disk, not in memory. A flash sale's queue holds hundreds of thousands
//! of users per event, far more than its seats (DESIGN.md, I9), and each place is read only by
//! that user's joins. A place is a cold record, immutable like every other (see `cold.rs`):
//! `QUEUE_PLACE ++ event id ++ user ++ 0 ++ !index`, newest first, whose body is the sequence
//! number, or nothing for a place that ended. The user's place is the newest record this entry
//! sees (this entry's own writes first). Every record expires when its event starts, when the
//! queue closes for good.
//!
//! A place ends, and the next join gets a new one, when:
//! - its pass bought a hold (the hold writes an ended record: a pass is single-use);
//! - it was admitted and its pass expired unused: apply cannot tell (an early place's position
//!   comes from a shuffle keyed by the api's secret), so the api that finds it expired sends the
//!   place back in `QueueJoin::replaces`, and apply replaces it only if it is still the user's;
//! - the event starts (the records expire; joins are refused from then on).

use serde::{Deserialize, Serialize};

use super::state::{refused, ShardState};
use crate::codec;
use crate::cold::{newest_version, version_key, ColdError, ColdRead, ColdRecord, ColdWrites};
use crate::command::{Outcome, QueueJoin, QueuePlace, Refusal};
use crate::ids::{EventId, UserId};
use crate::keys::cold::QUEUE_PLACE;
use crate::limits::QUEUE_JOINS_PER_COMMAND_MAX;
use crate::machine::ctx::Ctx;

/// A place record's body: the sequence number, or `None` once the place ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PlaceRecord {
    seq: Option<u64>,
}

/// `QUEUE_PLACE ++ event id ++ user ++ 0`: every place of one user in one event. A user id has
/// no control characters, so the 0 ends it unambiguously; event ids have a fixed length.
fn user_prefix(event_id: &EventId, user: &UserId) -> Vec<u8> {
    [&[QUEUE_PLACE][..], event_id.as_str().as_bytes(), user.as_str().as_bytes(), &[0]].concat()
}

/// The user's place as the entry at `ctx.index` sees it. `None`: no place, or the last one ended.
fn current_place(cold: &dyn ColdRead, writes: &ColdWrites, ctx: Ctx, prefix: &[u8]) -> Result<Option<u64>, ColdError> {
    match newest_version(cold, writes, prefix, ctx.index, ctx.now_ms)? {
        Some((key, record)) => Ok(record.decode_body::<PlaceRecord>(&key)?.seq),
        None => Ok(None),
    }
}

fn write_place(
    writes: &mut ColdWrites,
    ctx: Ctx,
    prefix: &[u8],
    seq: Option<u64>,
    expires_ms: i64,
) -> Result<(), ColdError> {
    debug_assert!(expires_ms > ctx.now_ms, "a place is written only while its queue is open");
    let body = codec::encode(&PlaceRecord { seq }).map_err(ColdError::Encode)?;
    // A second write of this entry under the same key (a join, then a hold, of one user) replaces
    // the first in the batch: the entry's last write is its word, on every replica.
    writes.put(version_key(prefix, ctx.index), ColdRecord { index: ctx.index, expires_ms: Some(expires_ms), body });
    Ok(())
}

/// Ends the user's place, if any: its pass bought a hold. Before the event starts only (holds
/// are refused from then on).
pub(super) fn end_place(
    writes: &mut ColdWrites,
    ctx: Ctx,
    event_id: &EventId,
    user: &UserId,
    starts_at_ms: i64,
) -> Result<(), ColdError> {
    write_place(writes, ctx, &user_prefix(event_id, user), None, starts_at_ms)
}

impl ShardState {
    /// Answers each join with the user's live place, or a new sequence number (leased as a
    /// block of one, so the early group and its boundary work as with leased blocks).
    pub(super) fn join_queue(
        &mut self,
        ctx: Ctx,
        event_id: &EventId,
        joins: &[QueueJoin],
        cold: &dyn ColdRead,
        writes: &mut ColdWrites,
    ) -> Result<Outcome, ColdError> {
        let Some(event) = self.events.get_mut(event_id) else {
            return Ok(refused(Refusal::not_found(format!("event {event_id}"))));
        };
        if !event.spec.high_traffic {
            return Ok(refused(Refusal::Invalid { detail: "this event has no waiting room".into() }));
        }
        if joins.is_empty() || joins.len() > QUEUE_JOINS_PER_COMMAND_MAX {
            let detail = format!("a join batch has 1 to {QUEUE_JOINS_PER_COMMAND_MAX} joins");
            return Ok(refused(Refusal::Invalid { detail }));
        }
        let (on_sale_at_ms, starts_at_ms) = (event.spec.on_sale_at_ms, event.spec.starts_at_ms);
        if ctx.now_ms >= starts_at_ms {
            return Ok(refused(Refusal::NotOnSale { on_sale_at_ms, starts_at_ms }));
        }
        let on_sale = ctx.now_ms >= on_sale_at_ms;
        let mut places = Vec::with_capacity(joins.len());
        for join in joins {
            let prefix = user_prefix(event_id, &join.user);
            let current = current_place(cold, writes, ctx, &prefix)?;
            if let Some(seq) = current.filter(|seq| join.replaces != Some(*seq)) {
                places.push(QueuePlace { seq, new: false });
                continue;
            }
            let seq = event.queue.take(on_sale);
            write_place(writes, ctx, &prefix, Some(seq), starts_at_ms)?;
            places.push(QueuePlace { seq, new: true });
        }
        Ok(Outcome::QueuePlaces(places))
    }
}
