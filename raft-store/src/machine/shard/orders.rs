//! Orders: checking out an active hold, the payment's result (confirm or fail), and cancelling a
//! confirmed order. A checked-out hold keeps its seats held until the payment's result; an order
//! whose payment does not arrive by its deadline fails like a declined one.
//!
//! An order carries what it took (`OrderRec::taken`): its hold's record leaves memory at checkout
//! (for the cold store, an hour), and the order goes on without it. Until its payment's result,
//! the order is found by its hold (`ShardState::pending_by_hold`), in whose name its seats are
//! held.

use super::holds::retire_hold;
use super::inventory::{sell, taken_change, tickets_for, uncount_user, unhold_user, unsell, vacate};
use super::state::{refused, ColdAt, Deadline, OrderRec, ShardState, Slot};
use crate::cold::{ColdError, ColdRead, ColdWrites, WithPending};
use crate::command::{Actor, ChangeKind, Outcome, Refusal};
use crate::ids::{HoldId, OrderId, UserId};
use crate::limits::PAYMENT_TIMEOUT_MS;
use crate::machine::ctx::Ctx;
use crate::model::{HoldStatus, OrderStatus, SeatStatus, TicketStatus};

impl ShardState {
    pub(super) fn checkout(
        &mut self,
        ctx: Ctx,
        hold_id: &HoldId,
        user: &UserId,
        cold: &dyn ColdRead,
        writes: &mut ColdWrites,
    ) -> Result<Outcome, ColdError> {
        let at = ColdAt::apply(cold, writes, ctx.index, ctx.now_ms);
        let Some(hold) = self.own_hold(hold_id, user, &at)? else {
            return Ok(refused(Refusal::not_found(format!("hold {hold_id}"))));
        };
        match hold.status {
            HoldStatus::CheckedOut => {
                let order = hold.order.expect("a checked-out hold has an order");
                return self.order_of_checkout(
                    ctx,
                    OrderId { event_id: hold_id.event_id.clone(), seq: order },
                    cold,
                    writes,
                );
            }
            HoldStatus::Released => return Ok(refused(Refusal::HoldNotActive { status: HoldStatus::Released })),
            // Due holds were expired before this command, so an active hold is within its time.
            HoldStatus::Expired => return Ok(refused(Refusal::HoldExpired)),
            HoldStatus::Active => assert!(hold.expires_at_ms > ctx.now_ms),
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut hold = self.holds.remove(&hold_id.seq).expect("checked above");
        hold.status = HoldStatus::CheckedOut;
        hold.ended_at_ms = Some(ctx.now_ms);
        hold.order = Some(seq);
        let payment_deadline_ms = ctx.now_ms + PAYMENT_TIMEOUT_MS;
        let order = OrderRec {
            event_id: hold.event_id.clone(),
            user: hold.user.clone(),
            hold: hold_id.seq,
            taken: hold.taken.clone(),
            status: OrderStatus::PendingPayment,
            total: hold.total,
            created_at_ms: ctx.now_ms,
            updated_at_ms: ctx.now_ms,
            payment_deadline_ms,
            payment_reference: None,
            refunded: false,
            tickets: Vec::new(),
        };
        self.deadlines.remove(&(hold.expires_at_ms, Deadline::Hold(hold_id.seq)));
        self.deadlines.insert((payment_deadline_ms, Deadline::Payment(seq)));
        retire_hold(ctx, hold_id.seq, &hold, writes)?;
        self.pending_by_hold.insert(hold_id.seq, seq);
        self.user_orders.insert((order.user.clone(), seq));
        let event = self.events.get_mut(&order.event_id).expect("a hold's event exists");
        event.orders.insert(seq);
        // The order keeps the seats held until its payment, but the hold is no longer active:
        // its seats leave the user's held count (the per-user limit still counts them).
        unhold_user(event, &order.user, order.taken.count());
        self.orders.insert(seq, order);
        Ok(Outcome::Order(self.order_view(seq, ctx.now_ms)))
    }

    /// The order a checked-out hold was made into, for a repeated checkout: in memory, or (its
    /// event on its way to the archive) archived.
    fn order_of_checkout(
        &self,
        ctx: Ctx,
        order_id: OrderId,
        cold: &dyn ColdRead,
        writes: &ColdWrites,
    ) -> Result<Outcome, ColdError> {
        if self.orders.contains_key(&order_id.seq) {
            return Ok(Outcome::Order(self.order_view(order_id.seq, ctx.now_ms)));
        }
        Ok(match Self::archived_order(&WithPending { store: cold, pending: writes }, &order_id, ctx.index)? {
            Some(view) => Outcome::Order(view),
            None => refused(Refusal::not_found(format!("order {order_id}"))),
        })
    }

    pub(super) fn payment_result(
        &mut self,
        ctx: Ctx,
        order_id: &OrderId,
        approved: bool,
        reference: &str,
        cold: &dyn ColdRead,
    ) -> Result<Outcome, ColdError> {
        let Some(order) = self.orders.get(&order_id.seq).filter(|o| o.event_id == order_id.event_id) else {
            // An archived order was settled long ago: a result now changes nothing.
            return Ok(match Self::archived_order(cold, order_id, ctx.index)? {
                Some(view) => Outcome::Order(view),
                None => refused(Refusal::not_found(format!("order {order_id}"))),
            });
        };
        if order.status == OrderStatus::PaymentFailed && approved && !order.refunded {
            // The money arrived after the order lapsed (its deadline passed, or an earlier
            // failure was recorded first): the seats are gone, so the order records that the
            // payment is to be given back, and the caller refunds it (by the order's id, so a
            // refund asked for twice is made once).
            let order = self.orders.get_mut(&order_id.seq).expect("found above");
            order.refunded = true;
            order.payment_reference = Some(reference.to_owned());
            order.updated_at_ms = ctx.now_ms;
            self.record_order(ctx, order_id.seq);
            return Ok(Outcome::Order(self.order_view(order_id.seq, ctx.now_ms)));
        }
        if order.status != OrderStatus::PendingPayment {
            // A repeated or reordered result changes nothing.
            return Ok(Outcome::Order(self.order_view(order_id.seq, ctx.now_ms)));
        }
        let deadline = (order.payment_deadline_ms, Deadline::Payment(order_id.seq));
        self.deadlines.remove(&deadline);
        if approved {
            self.confirm(ctx, order_id.seq, reference);
        } else {
            self.fail_payment(ctx, order_id.seq, Some(reference));
        }
        Ok(Outcome::Order(self.order_view(order_id.seq, ctx.now_ms)))
    }

    fn confirm(&mut self, ctx: Ctx, seq: u64, reference: &str) {
        let order = self.orders.get_mut(&seq).expect("caller checked");
        self.pending_by_hold.remove(&order.hold);
        let event = self.events.get_mut(&order.event_id).expect("an order's event exists");
        sell(event, &order.taken, order.hold, seq);
        order.tickets = tickets_for(&order.taken);
        order.status = OrderStatus::Confirmed;
        order.payment_reference = Some(reference.to_owned());
        order.updated_at_ms = ctx.now_ms;
        let change = taken_change(event, &order.taken, SeatStatus::Sold);
        let event_id = order.event_id.clone();
        self.record(ctx, &event_id, change);
        self.record_order(ctx, seq);
    }

    /// Records the order's settlement for the feed's order webhooks.
    fn record_order(&mut self, ctx: Ctx, seq: u64) {
        let order = &self.orders[&seq];
        let kind = ChangeKind::Order {
            order_id: OrderId { event_id: order.event_id.clone(), seq },
            user: order.user.clone(),
            status: order.status,
            refunded: order.refunded,
        };
        let event_id = order.event_id.clone();
        self.record(ctx, &event_id, kind);
    }

    /// Fails an order awaiting payment (declined, or past its deadline): its seats are free again.
    pub(super) fn fail_payment(&mut self, ctx: Ctx, seq: u64, reference: Option<&str>) {
        let order = self.orders.get_mut(&seq).expect("caller checked");
        assert_eq!(order.status, OrderStatus::PendingPayment);
        self.pending_by_hold.remove(&order.hold);
        let event = self.events.get_mut(&order.event_id).expect("an order's event exists");
        vacate(event, &order.taken, Slot::Held(order.hold));
        uncount_user(event, &order.user, order.taken.count());
        order.status = OrderStatus::PaymentFailed;
        order.payment_reference = reference.map(str::to_owned);
        order.updated_at_ms = ctx.now_ms;
        let change = taken_change(event, &order.taken, SeatStatus::Available);
        let event_id = order.event_id.clone();
        self.record(ctx, &event_id, change);
        self.record_order(ctx, seq);
    }

    pub(super) fn cancel(
        &mut self,
        ctx: Ctx,
        order_id: &OrderId,
        actor: &Actor,
        cold: &dyn ColdRead,
        writes: &ColdWrites,
    ) -> Result<Outcome, ColdError> {
        let order = match self.orders.get(&order_id.seq) {
            Some(o) if o.event_id == order_id.event_id && (actor.admin || o.user == actor.user) => o,
            Some(_) => return Ok(refused(Refusal::not_found(format!("order {order_id}")))),
            None => return Self::cancel_archived(ctx, order_id, actor, &WithPending { store: cold, pending: writes }),
        };
        match order.status {
            OrderStatus::Cancelled => return Ok(Outcome::Order(self.order_view(order_id.seq, ctx.now_ms))),
            OrderStatus::PendingPayment | OrderStatus::PaymentFailed => {
                let reason = "only a confirmed order can be cancelled".to_owned();
                return Ok(refused(Refusal::OrderNotCancellable { status: order.status, reason }));
            }
            OrderStatus::Confirmed => {}
        }
        let event = &self.events[&order.event_id];
        if !actor.admin && ctx.now_ms >= event.spec.starts_at_ms {
            let reason = "the event has started".to_owned();
            return Ok(refused(Refusal::OrderNotCancellable { status: order.status, reason }));
        }
        // A ticket given to someone else, or used, is not the buyer's to give back.
        if Self::tickets_moved(&self.order_view(order_id.seq, ctx.now_ms), cold, writes, ctx)? {
            let reason = "a ticket of the order was transferred or checked in".to_owned();
            return Ok(refused(Refusal::OrderNotCancellable { status: OrderStatus::Confirmed, reason }));
        }
        let order = self.orders.get_mut(&order_id.seq).expect("checked above");
        let event = self.events.get_mut(&order.event_id).expect("an order's event exists");
        unsell(event, &order.taken, order_id.seq);
        uncount_user(event, &order.user, order.taken.count());
        for t in &mut order.tickets {
            t.status = TicketStatus::Cancelled;
        }
        order.status = OrderStatus::Cancelled;
        order.refunded = true;
        order.updated_at_ms = ctx.now_ms;
        let change = taken_change(event, &order.taken, SeatStatus::Available);
        self.record(ctx, &order_id.event_id, change);
        self.record_order(ctx, order_id.seq);
        Ok(Outcome::Order(self.order_view(order_id.seq, ctx.now_ms)))
    }

    /// An archived order is final: cancelled already, or refused as its event has ended.
    fn cancel_archived(ctx: Ctx, order_id: &OrderId, actor: &Actor, cold: &dyn ColdRead) -> Result<Outcome, ColdError> {
        Ok(match Self::archived_order(cold, order_id, ctx.index)? {
            Some(view) if actor.admin || view.user_id == actor.user => match view.status {
                OrderStatus::Cancelled => Outcome::Order(view),
                status => {
                    let reason = "the event has ended and its orders are archived".to_owned();
                    refused(Refusal::OrderNotCancellable { status, reason })
                }
            },
            _ => refused(Refusal::not_found(format!("order {order_id}"))),
        })
    }
}
