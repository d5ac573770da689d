//! The archive: an event that started long ago leaves memory for the shard's cold store, with
//! its orders and tickets, and reads still find it there. Orders and tickets are business records
//! kept for good; what a sale needs now (seats, holds, live orders) stays in memory.
//!
//! The shard's leader proposes `Archive { started_before_ms }` (its clock less the node's
//! archive delay), so every replica archives the same events at the same log index. One command
//! moves at most `ARCHIVE_ORDERS_PER_COMMAND_MAX` orders; an event with more moves over several,
//! and leaves memory with its last order. An event waits while a hold of it is active or an order
//! awaits its payment (both end within hours); its ended holds leave with it (those an older state
//! keeps in memory are removed; those in the cold store are no longer found without their event,
//! and expire there).
//!
//! Cold records (keys in `keys::cold`), each stamped with the archiving entry's index:
//! - `ARCHIVED_ORDER ++ event id ++ seq`: the order's final view, tickets included;
//! - `ARCHIVED_USER_ORDER ++ user ++ 0 ++ !created ++ !event id ++ !seq`: a user's orders, newest
//!   first (empty body);
//! - `ARCHIVED_EVENT ++ event id`: the event's final view.

use serde::{Deserialize, Serialize};

use super::state::{Deadline, ShardState};
use crate::codec;
use crate::cold::{prefix_end, ColdError, ColdRead, ColdRecord, ColdWrites};
use crate::command::{ChangeKind, Outcome};
use crate::ids::{EventId, OrderId, UserId};
use crate::keys::cold::{ARCHIVED_EVENT, ARCHIVED_ORDER, ARCHIVED_USER_ORDER};
use crate::limits::ARCHIVE_ORDERS_PER_COMMAND_MAX;
use crate::machine::ctx::Ctx;
use crate::model::{EventView, OrderView};

/// An archived event as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct ArchivedEvent {
    pub view: EventView,
}

pub(super) fn event_key(event_id: &EventId) -> Vec<u8> {
    [&[ARCHIVED_EVENT][..], event_id.as_str().as_bytes()].concat()
}

pub(super) fn order_key(order_id: &OrderId) -> Vec<u8> {
    [&[ARCHIVED_ORDER][..], order_id.event_id.as_str().as_bytes(), &order_id.seq.to_be_bytes()].concat()
}

/// The prefix of `user`'s entries in an index of orders by user (`space`). A user id has no control
/// characters, so the 0 after it ends it unambiguously.
pub(super) fn user_prefix(space: u8, user: &UserId) -> Vec<u8> {
    [&[space][..], user.as_str().as_bytes(), &[0]].concat()
}

fn inverted(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| !b).collect()
}

/// A user's order in an index of orders by user (`space`: archived orders, or orders the user was
/// given tickets of): newest first, then by order id descending, as the listings of live orders go.
pub(super) fn user_order_key(space: u8, user: &UserId, created_at_ms: i64, order_id: &OrderId) -> Vec<u8> {
    let created = (created_at_ms as u64) ^ (1 << 63);
    [
        user_prefix(space, user),
        inverted(&created.to_be_bytes()),
        inverted(order_id.event_id.as_str().as_bytes()),
        inverted(&order_id.seq.to_be_bytes()),
    ]
    .concat()
}

/// The creation time and order id a user-index key encodes.
pub(super) fn parse_user_order_key(space: u8, user: &UserId, key: &[u8]) -> Option<(i64, OrderId)> {
    let rest = key.strip_prefix(user_prefix(space, user).as_slice())?;
    let event_len = EventId::from_u64(0).as_str().len();
    if rest.len() != 8 + event_len + 8 {
        return None;
    }
    let created = u64::from_be_bytes(inverted(&rest[..8]).try_into().ok()?) ^ (1 << 63);
    let event = String::from_utf8(inverted(&rest[8..8 + event_len])).ok()?;
    let seq = u64::from_be_bytes(inverted(&rest[8 + event_len..]).try_into().ok()?);
    Some((created as i64, OrderId { event_id: EventId::parse(&event)?, seq }))
}

pub(super) fn user_index_end(space: u8, user: &UserId) -> Vec<u8> {
    prefix_end(&user_prefix(space, user))
}

fn record(ctx: Ctx, body: &impl Serialize) -> Result<ColdRecord, ColdError> {
    Ok(ColdRecord { index: ctx.index, expires_ms: None, body: codec::encode(body).map_err(ColdError::Encode)? })
}

impl ShardState {
    /// Whether `Archive { started_before_ms }` would move anything now.
    pub(crate) fn has_archive_work(&self, started_before_ms: i64) -> bool {
        self.by_start.iter().take_while(|(starts, _)| *starts < started_before_ms).any(|(_, id)| self.archivable(id))
    }

    /// No hold of the event is active and no order of it awaits payment.
    fn archivable(&self, event_id: &EventId) -> bool {
        !self.deadlines.iter().any(|(_, deadline)| match deadline {
            Deadline::Hold(seq) => self.holds.get(seq).is_some_and(|h| &h.event_id == event_id),
            Deadline::Payment(seq) => self.orders.get(seq).is_some_and(|o| &o.event_id == event_id),
        })
    }

    /// Moves a bounded step of the events that started before `started_before_ms` to the cold
    /// store. Returns how many orders and events it moved.
    pub(crate) fn archive(
        &mut self,
        ctx: Ctx,
        started_before_ms: i64,
        writes: &mut ColdWrites,
    ) -> Result<Outcome, ColdError> {
        let due: Vec<EventId> = self
            .by_start
            .iter()
            .take_while(|(starts, _)| *starts < started_before_ms)
            .map(|(_, id)| id.clone())
            .filter(|id| self.archivable(id))
            .collect();
        let (mut orders, mut events) = (0usize, 0u32);
        for event_id in due {
            let moved = self.archive_orders(ctx, &event_id, ARCHIVE_ORDERS_PER_COMMAND_MAX - orders, writes)?;
            orders += moved;
            if orders >= ARCHIVE_ORDERS_PER_COMMAND_MAX {
                break;
            }
            self.archive_event(ctx, &event_id, writes)?;
            events += 1;
        }
        Ok(Outcome::Archived { orders: orders as u32, events })
    }

    /// Moves up to `max` orders of the event; returns how many it moved.
    fn archive_orders(
        &mut self,
        ctx: Ctx,
        event_id: &EventId,
        max: usize,
        writes: &mut ColdWrites,
    ) -> Result<usize, ColdError> {
        let Some(event) = self.events.get(event_id) else { return Ok(0) };
        let seqs: Vec<u64> = event.orders.iter().take(max).copied().collect();
        for &seq in &seqs {
            let view = self.order_view(seq, ctx.now_ms);
            writes.put(
                user_order_key(ARCHIVED_USER_ORDER, &view.user_id, view.created_at_ms, &view.order_id),
                record(ctx, &())?,
            );
            writes.put(order_key(&view.order_id), record(ctx, &view)?);
            let order = self.orders.remove(&seq).expect("an event's order exists");
            self.user_orders.remove(&(order.user, seq));
        }
        if let Some(event) = self.events.get_mut(event_id) {
            for seq in &seqs {
                event.orders.remove(seq);
            }
        }
        Ok(seqs.len())
    }

    /// Moves the event itself, once its orders are gone, with the ended holds an older state
    /// keeps in memory.
    fn archive_event(&mut self, ctx: Ctx, event_id: &EventId, writes: &mut ColdWrites) -> Result<(), ColdError> {
        let Some(view) = self.event_view(event_id, ctx.now_ms) else { return Ok(()) };
        writes.put(event_key(event_id), record(ctx, &ArchivedEvent { view })?);
        let ended: Vec<(i64, u64)> = self
            .dropping
            .iter()
            .filter(|(_, seq)| self.holds.get(seq).is_some_and(|h| &h.event_id == event_id))
            .copied()
            .collect();
        for (at, seq) in ended {
            self.dropping.remove(&(at, seq));
            self.holds.remove(&seq);
        }
        let event = self.events.remove(event_id).expect("viewed above");
        self.by_start.remove(&(event.spec.starts_at_ms, event_id.clone()));
        self.record(ctx, event_id, ChangeKind::Event);
        Ok(())
    }

    /// An archived order, if the cold store holds one as of `last_index`.
    pub(super) fn archived_order(
        cold: &dyn ColdRead,
        order_id: &OrderId,
        last_index: u64,
    ) -> Result<Option<OrderView>, ColdError> {
        let key = order_key(order_id);
        match cold.get(&key)? {
            Some(record) if record.index <= last_index => record.decode_body(&key).map(Some),
            _ => Ok(None),
        }
    }

    /// An archived event, if the cold store holds one as of `last_index`.
    pub(super) fn archived_event(
        cold: &dyn ColdRead,
        event_id: &EventId,
        last_index: u64,
    ) -> Result<Option<EventView>, ColdError> {
        let key = event_key(event_id);
        match cold.get(&key)? {
            Some(record) if record.index <= last_index => {
                record.decode_body::<ArchivedEvent>(&key).map(|a| Some(a.view))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_index_keys_sort_newest_first_and_parse_back() {
        let user = UserId::parse("alice").unwrap();
        let order = |created: i64, seq: u64| (created, OrderId { event_id: EventId::from_u64(9), seq });
        let mut orders = vec![order(100, 1), order(300, 2), order(300, 3), order(-5, 4)];
        let mut keys: Vec<Vec<u8>> =
            orders.iter().map(|(c, id)| user_order_key(ARCHIVED_USER_ORDER, &user, *c, id)).collect();
        keys.sort();
        orders.sort_by(|a, b| b.cmp(a));
        let parsed: Vec<(i64, OrderId)> =
            keys.iter().map(|k| parse_user_order_key(ARCHIVED_USER_ORDER, &user, k).unwrap()).collect();
        assert_eq!(parsed, orders, "ascending keys are the orders newest first");
        assert!(keys.iter().all(|k| k.as_slice() < user_index_end(ARCHIVED_USER_ORDER, &user).as_slice()));
        let other = UserId::parse("alice2").unwrap();
        assert!(parse_user_order_key(ARCHIVED_USER_ORDER, &other, &keys[0]).is_none());
    }
}
