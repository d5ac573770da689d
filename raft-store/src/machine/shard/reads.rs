//! Queries: one answer per [`Query`], and the listings that page through events, a user's orders
//! and a user's tickets. Each listing is bounded by [`LIST_LIMIT_MAX`] whatever the caller asks.

use std::ops::Bound;

use super::archive;
use super::state::{ColdAt, ShardState};
use crate::cold::{ColdError, ColdRead};
use crate::command::{Answer, Query};
use crate::ids::{EventId, OrderId, UserId};
use crate::keys::cold::{ARCHIVED_EVENT, ARCHIVED_USER_ORDER, TICKET_RECEIVED};
use crate::limits::LIST_LIMIT_MAX;
use crate::model::{EventSummary, EventView, OrderView, TicketCard};

impl ShardState {
    /// Answers `query`. Records in the cold store (`cold`, as of `last_index`) answer for what
    /// left memory: archived events, orders and tickets, and ended holds (until their retention
    /// passes at `now_ms`).
    pub(crate) fn query(
        &self,
        query: &Query,
        now_ms: i64,
        last_index: u64,
        cold: &dyn ColdRead,
    ) -> Result<Answer, ColdError> {
        Ok(match query {
            Query::Event(id) => match self.event_view(id, now_ms) {
                Some(view) => Answer::Event(Some(Box::new(view))),
                None => Answer::Event(Self::archived_event(cold, id, last_index)?.map(Box::new)),
            },
            Query::Seats(id) => Answer::Seats(self.seat_map(id, now_ms, last_index)),
            Query::Events { from_ms, to_ms, after, limit } => {
                Answer::Events(self.list_events(*from_ms, *to_ms, after.as_ref(), *limit, now_ms))
            }
            Query::Hold { hold_id, user } => {
                let at = ColdAt::read(cold, last_index, now_ms);
                Answer::Hold(self.own_hold(hold_id, user, &at)?.map(|h| self.hold_view(hold_id.seq, &h, now_ms)))
            }
            Query::Order { order_id, actor } => {
                let owned = |o: &OrderView| actor.admin || o.user_id == actor.user;
                match self.any_order(order_id, now_ms, cold, last_index)?.filter(owned) {
                    Some(order) => Answer::Order(Some(Self::with_marks(order, cold, last_index, now_ms)?)),
                    None => Answer::Order(None),
                }
            }
            Query::UserOrders { user, before, limit } => {
                let limit = (*limit).min(LIST_LIMIT_MAX);
                let keys =
                    self.user_order_keys(user, before.as_ref(), limit, &[ARCHIVED_USER_ORDER], cold, last_index)?;
                let mut orders = Vec::with_capacity(keys.len());
                for (_, id) in keys {
                    if let Some(order) = self.any_order(&id, now_ms, cold, last_index)? {
                        orders.push(Self::with_marks(order, cold, last_index, now_ms)?);
                    }
                }
                Answer::Orders(orders)
            }
            Query::UserTickets { user, before, limit } => {
                Answer::Tickets(self.user_tickets(user, before.as_ref(), *limit, now_ms, cold, last_index)?)
            }
            Query::Changes { after_index, limit } => {
                Answer::Changes(self.changes_after(*after_index, *limit, last_index))
            }
            Query::AllEvents { after, limit } => Answer::AllEvents {
                events: self.all_events(after.as_ref(), *limit, now_ms, cold, last_index)?,
                last_index,
            },
            Query::Queue(id) => Answer::Queue(self.queue_view(id, now_ms)),
            Query::Queues => Answer::Queues(
                self.events
                    .iter()
                    .filter(|(_, e)| e.spec.high_traffic && e.spec.starts_at_ms > now_ms)
                    .filter_map(|(id, _)| self.queue_view(id, now_ms))
                    .collect(),
            ),
            Query::QueueAdmission { event_id, position } => {
                Answer::Admission(self.events.get(event_id).and_then(|e| e.queue.admitted_at(*position)))
            }
            Query::Venue(_) | Query::Layout => Answer::WrongGroup,
            // The machine keeps the pricing rules and answers it (`machine/pricing.rs`).
            Query::Pricing(_) => Answer::WrongGroup,
            Query::Webhooks => Answer::WrongGroup,
        })
    }

    /// An order in memory or in the archive.
    fn any_order(
        &self,
        id: &OrderId,
        now_ms: i64,
        cold: &dyn ColdRead,
        last_index: u64,
    ) -> Result<Option<OrderView>, ColdError> {
        match self.orders.get(&id.seq) {
            Some(o) if o.event_id == id.event_id => Ok(Some(self.order_view(id.seq, now_ms))),
            _ => Self::archived_order(cold, id, last_index),
        }
    }

    /// The user's orders older than `before` (newest first), at most `limit`: those in memory
    /// merged with those of the cold indexes of orders by user in `spaces` (archived orders,
    /// orders the user was given tickets of).
    fn user_order_keys(
        &self,
        user: &UserId,
        before: Option<&(i64, OrderId)>,
        limit: usize,
        spaces: &[u8],
        cold: &dyn ColdRead,
        last_index: u64,
    ) -> Result<Vec<(i64, OrderId)>, ColdError> {
        let mut keys: Vec<(i64, OrderId)> = self
            .user_orders_sorted(user)
            .into_iter()
            .filter(|key| before.is_none_or(|b| key < b))
            .take(limit)
            .collect();
        for &space in spaces {
            let from = match before {
                // Keys sort newest first: older than the cursor is after its key.
                Some((created, id)) => [archive::user_order_key(space, user, *created, id), vec![0]].concat(),
                None => archive::user_prefix(space, user),
            };
            for (key, record) in cold.scan(&from, &archive::user_index_end(space, user), limit)? {
                if record.index > last_index {
                    continue;
                }
                let parsed = archive::parse_user_order_key(space, user, &key);
                let parsed = parsed.ok_or_else(|| ColdError::Corrupt {
                    key: key.clone(),
                    source: crate::codec::CodecError::Decode("an unreadable key in an index of orders by user".into()),
                })?;
                // The same order in memory and archived (a record written by an entry this
                // replica is applying again after a restart), or bought and given back.
                if !keys.contains(&parsed) {
                    keys.push(parsed);
                }
            }
        }
        keys.sort_by(|a, b| b.cmp(a));
        keys.truncate(limit);
        Ok(keys)
    }

    /// Every event by id, strictly after the cursor: in memory and archived.
    fn all_events(
        &self,
        after: Option<&EventId>,
        limit: usize,
        now_ms: i64,
        cold: &dyn ColdRead,
        last_index: u64,
    ) -> Result<Vec<EventView>, ColdError> {
        let limit = limit.min(LIST_LIMIT_MAX);
        let start = match after {
            Some(id) => Bound::Excluded(id.clone()),
            None => Bound::Unbounded,
        };
        let mut events: Vec<EventView> = self
            .events
            .range((start, Bound::Unbounded))
            .take(limit)
            .filter_map(|(id, _)| self.event_view(id, now_ms))
            .collect();
        let from = match after {
            Some(id) => [archive::event_key(id), vec![0]].concat(),
            None => vec![ARCHIVED_EVENT],
        };
        for (key, record) in cold.scan(&from, &[ARCHIVED_EVENT + 1], limit)? {
            let archived: archive::ArchivedEvent = record.decode_body(&key)?;
            let id = &archived.view.spec.event_id;
            if record.index <= last_index && !self.events.contains_key(id) {
                events.push(archived.view);
            }
        }
        events.sort_by(|a, b| a.spec.event_id.cmp(&b.spec.event_id));
        events.truncate(limit);
        Ok(events)
    }

    fn list_events(
        &self,
        from_ms: i64,
        to_ms: i64,
        after: Option<&(i64, EventId)>,
        limit: usize,
        now_ms: i64,
    ) -> Vec<EventSummary> {
        let limit = limit.min(LIST_LIMIT_MAX);
        let start = (from_ms, EventId::from_u64(0));
        self.by_start
            .range(start..)
            .filter(|key| after.is_none_or(|a| *key > a))
            .take_while(|(starts, _)| *starts < to_ms)
            .take(limit)
            .filter_map(|(_, id)| self.summary(id, now_ms))
            .collect()
    }

    /// The user's orders on this shard, newest first.
    fn user_orders_sorted(&self, user: &UserId) -> Vec<(i64, OrderId)> {
        let from = (user.clone(), 0);
        let mut keys: Vec<(i64, OrderId)> = self
            .user_orders
            .range(from..)
            .take_while(|(u, _)| u == user)
            .map(|(_, seq)| {
                let o = &self.orders[seq];
                (o.created_at_ms, OrderId { event_id: o.event_id.clone(), seq: *seq })
            })
            .collect();
        keys.sort_by(|a, b| b.cmp(a));
        keys
    }

    /// The user's tickets older than `before` (by order, newest first; within an order by
    /// descending number), at most `limit`.
    fn user_tickets(
        &self,
        user: &UserId,
        before: Option<&(i64, OrderId, u32)>,
        limit: usize,
        now_ms: i64,
        cold: &dyn ColdRead,
        last_index: u64,
    ) -> Result<Vec<(i64, TicketCard)>, ColdError> {
        let limit = limit.min(LIST_LIMIT_MAX);
        // The cursor's own order may still have tickets to give: start from it, inclusive.
        let mut cursor =
            before.map(|(created, id, _)| (*created, OrderId { event_id: id.event_id.clone(), seq: id.seq + 1 }));
        let mut out = Vec::new();
        let spaces = [ARCHIVED_USER_ORDER, TICKET_RECEIVED];
        loop {
            let keys = self.user_order_keys(user, cursor.as_ref(), LIST_LIMIT_MAX, &spaces, cold, last_index)?;
            let Some(last) = keys.last().cloned() else { break };
            for (created, id) in keys {
                let Some(view) = self.any_order(&id, now_ms, cold, last_index)? else { continue };
                // The tickets the user holds now: bought and kept, or given to them.
                for card in Self::ticket_cards(&view, cold, last_index, now_ms)? {
                    let key = (created, id.clone(), card.view.ticket_id.n);
                    if &card.view.user_id == user && before.is_none_or(|b| key < *b) {
                        out.push((created, card));
                    }
                }
            }
            if out.len() >= limit {
                break;
            }
            cursor = Some(last);
        }
        // Within one order, tickets go by descending number to match the cursor's order.
        out.sort_by(|(ca, a), (cb, b)| {
            (cb, &b.view.order_id, b.view.ticket_id.n).cmp(&(ca, &a.view.order_id, a.view.ticket_id.n))
        });
        out.truncate(limit);
        Ok(out)
    }
}
