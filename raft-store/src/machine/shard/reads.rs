//! Queries: one answer per [`Query`], and the listings that page through events, a user's orders
//! and a user's tickets. Each listing is bounded by [`LIST_LIMIT_MAX`] whatever the caller asks.

use std::ops::Bound;

use super::state::ShardState;
use crate::command::{Answer, Query};
use crate::ids::{EventId, OrderId, UserId};
use crate::limits::LIST_LIMIT_MAX;
use crate::model::{EventSummary, EventView, OrderView, TicketView};

impl ShardState {
    pub(crate) fn query(&self, query: &Query, now_ms: i64, last_index: u64) -> Answer {
        match query {
            Query::Event(id) => Answer::Event(self.event_view(id, now_ms).map(Box::new)),
            Query::Seats(id) => Answer::Seats(self.seat_map(id, now_ms, last_index)),
            Query::Events { from_ms, to_ms, after, limit } => {
                Answer::Events(self.list_events(*from_ms, *to_ms, after.as_ref(), *limit, now_ms))
            }
            Query::Hold { hold_id, user } => {
                Answer::Hold(self.own_hold(hold_id, user).ok().map(|_| self.hold_view(hold_id.seq, now_ms)))
            }
            Query::Order { order_id, actor } => Answer::Order(
                self.orders
                    .get(&order_id.seq)
                    .filter(|o| o.event_id == order_id.event_id && (actor.admin || o.user == actor.user))
                    .map(|_| self.order_view(order_id.seq, now_ms)),
            ),
            Query::UserOrders { user, before, limit } => {
                Answer::Orders(self.user_orders(user, before.as_ref(), *limit, now_ms))
            }
            Query::UserTickets { user, before, limit } => {
                Answer::Tickets(self.user_tickets(user, before.as_ref(), *limit, now_ms))
            }
            Query::Changes { after_index, limit } => {
                Answer::Changes(self.changes_after(*after_index, *limit, last_index))
            }
            Query::AllEvents { after, limit } => {
                Answer::AllEvents { events: self.all_events(after.as_ref(), *limit, now_ms), last_index }
            }
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
        }
    }

    /// Every event by id, strictly after the cursor.
    fn all_events(&self, after: Option<&EventId>, limit: usize, now_ms: i64) -> Vec<EventView> {
        let start = match after {
            Some(id) => Bound::Excluded(id.clone()),
            None => Bound::Unbounded,
        };
        self.events
            .range((start, Bound::Unbounded))
            .take(limit.min(LIST_LIMIT_MAX))
            .filter_map(|(id, _)| self.event_view(id, now_ms))
            .collect()
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

    fn user_orders(&self, user: &UserId, before: Option<&(i64, OrderId)>, limit: usize, now_ms: i64) -> Vec<OrderView> {
        self.user_orders_sorted(user)
            .into_iter()
            .filter(|key| before.is_none_or(|b| key < b))
            .take(limit.min(LIST_LIMIT_MAX))
            .map(|(_, id)| self.order_view(id.seq, now_ms))
            .collect()
    }

    fn user_tickets(
        &self,
        user: &UserId,
        before: Option<&(i64, OrderId, u32)>,
        limit: usize,
        now_ms: i64,
    ) -> Vec<(i64, TicketView)> {
        let mut out = Vec::new();
        for (created, id) in self.user_orders_sorted(user) {
            let view = self.order_view(id.seq, now_ms);
            for ticket in view.tickets {
                let key = (created, id.clone(), ticket.ticket_id.n);
                if before.is_none_or(|b| key < *b) {
                    out.push((created, ticket));
                }
            }
        }
        // Within one order, tickets go by descending number to match the cursor's order.
        out.sort_by(|(ca, a), (cb, b)| (cb, &b.order_id, b.ticket_id.n).cmp(&(ca, &a.order_id, a.ticket_id.n)));
        out.truncate(limit.min(LIST_LIMIT_MAX));
        out
    }
}
