//! Tickets after their order is confirmed: admission at the door (once) and transfer to another
//! user (a new code version; the old code stops working).
//!
//! A ticket's state past issue lives in the shard's cold store, not in the order's record: most
//! tickets are never transferred, and are admitted once, at the door, when the sale is long over.
//! Keys (`keys::cold`):
//! - `TICKET_MARK ++ event id ++ order seq ++ n ++ !index`: the ticket's [`TicketMark`], kept as
//!   versions (newest first); no mark means as issued (the buyer holds version 0, not admitted);
//! - `TICKET_RECEIVED ++ user ++ 0 ++ !created ++ !event id ++ !seq`: orders a user was given a
//!   ticket of, so that their ticket listing finds them (laid out as the archive's user index);
//! - `TICKETS_RECEIVED_COUNT ++ event id ++ user ++ 0 ++ !index`: how many of the event's tickets
//!   the user holds by transfer, for the event's per-user limit (their own purchases are in
//!   `EventState::per_user`, which transfers leave alone: a buyer who gives tickets away does not
//!   get to buy more).
//!
//! The api verifies a code's signature before it proposes `CheckIn`; apply decides whether the
//! code is the ticket's current one and whether the ticket was admitted already.

use serde::{Deserialize, Serialize};

use super::archive::user_order_key;
use super::state::{refused, ShardState};
use crate::codec;
use crate::cold::{newest_version, version_key, ColdError, ColdRead, ColdRecord, ColdWrites, WithPending};
use crate::command::{ChangeKind, Outcome, Refusal};
use crate::ids::{EventId, OrderId, TicketId, UserId};
use crate::keys::cold::{TICKETS_RECEIVED_COUNT, TICKET_MARK, TICKET_RECEIVED};
use crate::limits::TRANSFERS_PER_TICKET_MAX;
use crate::machine::ctx::Ctx;
use crate::model::{OrderStatus, OrderView, TicketCard, TicketStatus, TicketView};

/// A ticket's state after issue: who holds it, its code's version, and its admission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TicketMark {
    holder: UserId,
    version: u32,
    admitted_at_ms: Option<i64>,
}

/// A count kept as versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Count {
    n: u32,
}

fn order_marks_prefix(order_id: &OrderId) -> Vec<u8> {
    [&[TICKET_MARK][..], order_id.event_id.as_str().as_bytes(), &order_id.seq.to_be_bytes()].concat()
}

fn mark_prefix(ticket_id: &TicketId) -> Vec<u8> {
    [order_marks_prefix(&ticket_id.order), ticket_id.n.to_be_bytes().to_vec()].concat()
}

/// A user id has no control characters, so the 0 after it ends it unambiguously.
fn received_count_prefix(event_id: &EventId, user: &UserId) -> Vec<u8> {
    [&[TICKETS_RECEIVED_COUNT][..], event_id.as_str().as_bytes(), user.as_str().as_bytes(), &[0]].concat()
}

fn record(ctx: Ctx, body: &impl Serialize) -> Result<ColdRecord, ColdError> {
    Ok(ColdRecord { index: ctx.index, expires_ms: None, body: codec::encode(body).map_err(ColdError::Encode)? })
}

/// Where a read or a command stands: the entry's index (records of earlier entries count), its
/// time, and what this entry wrote so far.
struct At<'a> {
    cold: &'a dyn ColdRead,
    writes: &'a ColdWrites,
    index: u64,
    now_ms: i64,
}

impl At<'_> {
    fn newest<T: serde::de::DeserializeOwned>(&self, prefix: &[u8]) -> Result<Option<T>, ColdError> {
        match newest_version(self.cold, self.writes, prefix, self.index, self.now_ms)? {
            Some((key, record)) => record.decode_body(&key).map(Some),
            None => Ok(None),
        }
    }

    /// The ticket's mark; as issued when it has none.
    fn mark(&self, ticket: &TicketView, buyer: &UserId) -> Result<TicketMark, ColdError> {
        let issued = TicketMark { holder: buyer.clone(), version: 0, admitted_at_ms: None };
        Ok(self.newest(&mark_prefix(&ticket.ticket_id))?.unwrap_or(issued))
    }

    fn received_count(&self, event_id: &EventId, user: &UserId) -> Result<u32, ColdError> {
        Ok(self.newest::<Count>(&received_count_prefix(event_id, user))?.map_or(0, |c| c.n))
    }
}

/// The ticket as its mark leaves it: held by the mark's holder, admitted if it was.
fn card(mut view: TicketView, mark: TicketMark) -> TicketCard {
    view.user_id = mark.holder;
    if mark.admitted_at_ms.is_some() && view.status == TicketStatus::Valid {
        view.status = TicketStatus::CheckedIn;
    }
    TicketCard { view, version: mark.version, admitted_at_ms: mark.admitted_at_ms }
}

impl ShardState {
    /// The order's tickets as they stand now (holders, admissions), as of `last_index`.
    pub(super) fn ticket_cards(
        order: &OrderView,
        cold: &dyn ColdRead,
        last_index: u64,
        now_ms: i64,
    ) -> Result<Vec<TicketCard>, ColdError> {
        let at = At { cold, writes: &ColdWrites::default(), index: last_index + 1, now_ms };
        order.tickets.iter().map(|t| Ok(card(t.clone(), at.mark(t, &order.user_id)?))).collect()
    }

    /// `order` with each ticket's holder and admission as they stand now.
    pub(super) fn with_marks(
        mut order: OrderView,
        cold: &dyn ColdRead,
        last_index: u64,
        now_ms: i64,
    ) -> Result<OrderView, ColdError> {
        order.tickets = Self::ticket_cards(&order, cold, last_index, now_ms)?.into_iter().map(|c| c.view).collect();
        Ok(order)
    }

    /// Whether any ticket of the order was transferred or admitted (as of the entry at `ctx`).
    pub(super) fn tickets_moved(
        order: &OrderView,
        cold: &dyn ColdRead,
        writes: &ColdWrites,
        ctx: Ctx,
    ) -> Result<bool, ColdError> {
        let at = At { cold, writes, index: ctx.index, now_ms: ctx.now_ms };
        for t in &order.tickets {
            if at.newest::<TicketMark>(&mark_prefix(&t.ticket_id))?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The order a ticket belongs to (in memory or archived) and the ticket in it as issued.
    fn issued_ticket(
        &self,
        ticket_id: &TicketId,
        cold: &dyn ColdRead,
        ctx: Ctx,
    ) -> Result<Option<(OrderView, TicketView)>, ColdError> {
        let order_id = &ticket_id.order;
        let order = match self.orders.get(&order_id.seq) {
            Some(o) if o.event_id == order_id.event_id => Some(self.order_view(order_id.seq, ctx.now_ms)),
            Some(_) => None,
            None => Self::archived_order(cold, order_id, ctx.index.saturating_sub(1))?,
        };
        Ok(order.and_then(|o| {
            let ticket = o.tickets.iter().find(|t| t.ticket_id == *ticket_id)?.clone();
            Some((o, ticket))
        }))
    }

    /// Admits the ticket if `version` and `holder` are its current code's and it was not admitted.
    pub(super) fn check_in(
        &mut self,
        ctx: Ctx,
        ticket_id: &TicketId,
        version: u32,
        holder: &UserId,
        cold: &dyn ColdRead,
        writes: &mut ColdWrites,
    ) -> Result<Outcome, ColdError> {
        let invalid = |reason: &str| Ok(refused(Refusal::InvalidTicketCode { reason: reason.to_owned() }));
        let Some((order, ticket)) =
            self.issued_ticket(ticket_id, &WithPending { store: cold, pending: writes }, ctx)?
        else {
            return invalid("no ticket has this code's id");
        };
        if order.status != OrderStatus::Confirmed || ticket.status == TicketStatus::Cancelled {
            return invalid("the ticket was cancelled");
        }
        let at = At { cold, writes, index: ctx.index, now_ms: ctx.now_ms };
        let mark = at.mark(&ticket, &order.user_id)?;
        if mark.version != version || &mark.holder != holder {
            return invalid("the ticket was transferred: this code was replaced by a newer one");
        }
        if let Some(admitted_at_ms) = mark.admitted_at_ms.filter(|_| admissions_checked()) {
            return Ok(refused(Refusal::AlreadyCheckedIn { admitted_at_ms }));
        }
        let admitted = TicketMark { admitted_at_ms: Some(ctx.now_ms), ..mark };
        writes.put(version_key(&mark_prefix(ticket_id), ctx.index), record(ctx, &admitted)?);
        self.record_ticket(ctx, ticket_id, &admitted);
        Ok(Outcome::Ticket(card(ticket, admitted)))
    }

    /// Reissues the ticket `from` holds to `to`, within the event's per-user limit for `to`.
    pub(super) fn transfer(
        &mut self,
        ctx: Ctx,
        ticket_id: &TicketId,
        from: &UserId,
        to: &UserId,
        cold: &dyn ColdRead,
        writes: &mut ColdWrites,
    ) -> Result<Outcome, ColdError> {
        let not_found = || Ok(refused(Refusal::not_found(format!("ticket {ticket_id}"))));
        let not_transferable = |reason: &str| Ok(refused(Refusal::TicketNotTransferable { reason: reason.to_owned() }));
        let Some((order, ticket)) =
            self.issued_ticket(ticket_id, &WithPending { store: cold, pending: writes }, ctx)?
        else {
            return not_found();
        };
        let at = At { cold, writes, index: ctx.index, now_ms: ctx.now_ms };
        let mark = at.mark(&ticket, &order.user_id)?;
        if &mark.holder != from {
            // Another user's ticket is "not found", as their orders are.
            return not_found();
        }
        if mark.admitted_at_ms.is_some() {
            return Ok(refused(Refusal::TicketCheckedIn));
        }
        if order.status != OrderStatus::Confirmed || ticket.status == TicketStatus::Cancelled {
            return not_transferable("the ticket was cancelled");
        }
        let Some(event) = self.events.get(&order.event_id) else {
            return not_transferable("the event has ended and its orders are archived");
        };
        if ctx.now_ms >= event.spec.starts_at_ms {
            return not_transferable("the event has started");
        }
        if mark.version >= TRANSFERS_PER_TICKET_MAX {
            return not_transferable(&format!("a ticket is transferred at most {TRANSFERS_PER_TICKET_MAX} times"));
        }
        if to == from {
            return Ok(refused(Refusal::Invalid { detail: "a ticket is transferred to another user".into() }));
        }
        // The buyer's own purchases are counted in `per_user`; a ticket going back to its buyer
        // is counted there already.
        let buyer = &order.user_id;
        let to_count = at.received_count(&order.event_id, to)?;
        if to != buyer {
            if let Some(limit) = event.spec.per_user_limit {
                let current = event.per_user.get(to).copied().unwrap_or(0) + to_count;
                if current + 1 > limit {
                    return Ok(refused(Refusal::LimitExceeded { limit, current, requested: 1 }));
                }
            }
        }
        let from_count = at.received_count(&order.event_id, from)?;
        let reissued = TicketMark { holder: to.clone(), version: mark.version + 1, admitted_at_ms: None };
        writes.put(version_key(&mark_prefix(ticket_id), ctx.index), record(ctx, &reissued)?);
        if from != buyer {
            let count = Count { n: from_count.saturating_sub(1) };
            writes.put(version_key(&received_count_prefix(&order.event_id, from), ctx.index), record(ctx, &count)?);
        }
        if to != buyer {
            let count = Count { n: to_count + 1 };
            writes.put(version_key(&received_count_prefix(&order.event_id, to), ctx.index), record(ctx, &count)?);
            // The receiver's listing finds the order by this key; written once per (user, order).
            let key = user_order_key(TICKET_RECEIVED, to, order.created_at_ms, &order.order_id);
            let known =
                writes.get(&key).is_some() || cold.get(&key)?.is_some_and(|r| r.visible_to(ctx.index, ctx.now_ms));
            if !known {
                writes.put(key, record(ctx, &())?);
            }
        }
        self.record_ticket(ctx, ticket_id, &reissued);
        Ok(Outcome::Ticket(card(ticket, reissued)))
    }

    /// Records the ticket's new state for the feed's ticket webhooks.
    fn record_ticket(&mut self, ctx: Ctx, ticket_id: &TicketId, mark: &TicketMark) {
        let kind = ChangeKind::Ticket {
            ticket_id: ticket_id.clone(),
            holder: mark.holder.clone(),
            version: mark.version,
            admitted_at_ms: mark.admitted_at_ms,
        };
        self.record(ctx, &ticket_id.order.event_id, kind);
    }
}

/// Whether check-in refuses a ticket admitted already: the simulation can plant a bug that skips
/// it, to show that its checks catch a double admission.
#[cfg(madsim)]
fn admissions_checked() -> bool {
    !crate::planted::is_planted(crate::planted::Bug::CheckInTwice)
}

#[cfg(not(madsim))]
fn admissions_checked() -> bool {
    true
}
