//! One shard's events, seat inventory, holds and orders.
//!
//! Rules (DESIGN.md, "The booking state machine"):
//! - a hold takes all its seats or nothing, and says which seats were unavailable;
//! - every command first expires the holds and unpaid orders that are due at its time, so a hold
//!   past `expires_at` is free the moment any command sees it;
//! - per-user limits, on-sale windows and sold-out checks are decided here, not in the api;
//! - every change to the inventory is recorded with its log index for the change feed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::queue::QueueState;
use super::Ctx;
use crate::command::{
    AccessPass, Actor, Answer, Change, ChangeKind, ChangesPage, Command, Outcome, Query, QueueView, Refusal, Selection,
};
use crate::ids::{EventId, HoldId, OrderId, TicketId, UserId};
use crate::limits::*;
use crate::model::*;

/// A seat: section, row and number (from 1) within the event's venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct SeatRef {
    section: u16,
    row: u16,
    number: u16,
}

/// What a hold (and the order made from it) occupies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Taken {
    Seats(Vec<SeatRef>),
    General { section: u16, quantity: u32 },
}

impl Taken {
    fn count(&self) -> u32 {
        match self {
            Taken::Seats(seats) => seats.len() as u32,
            Taken::General { quantity, .. } => *quantity,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Slot {
    Free,
    /// Held by a hold (active, or checked out with its order awaiting payment).
    Held(u64),
    /// Sold to a confirmed order.
    Sold(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SectionInv {
    /// Seat slots by row; empty for a general-admission section.
    rows: Vec<Vec<Slot>>,
    capacity: u32,
    held: u32,
    sold: u32,
}

impl SectionInv {
    fn available(&self) -> u32 {
        self.capacity - self.held - self.sold
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct EventState {
    spec: EventSpec,
    created_at_ms: i64,
    updated_at_ms: i64,
    sections: Vec<SectionInv>,
    /// Admissions each user has in active holds and live orders, for `per_user_limit`.
    per_user: BTreeMap<UserId, u32>,
    /// The waiting room (high-traffic events).
    queue: QueueState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Deadline {
    Hold(u64),
    Payment(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct HoldRec {
    event_id: EventId,
    user: UserId,
    taken: Taken,
    total: Money,
    status: HoldStatus,
    created_at_ms: i64,
    expires_at_ms: i64,
    ended_at_ms: Option<i64>,
    order: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TicketRec {
    n: u32,
    seat: Option<SeatRef>,
    section: u16,
    status: TicketStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrderRec {
    event_id: EventId,
    user: UserId,
    hold: u64,
    status: OrderStatus,
    total: Money,
    created_at_ms: i64,
    updated_at_ms: i64,
    payment_deadline_ms: i64,
    payment_reference: Option<String>,
    refunded: bool,
    tickets: Vec<TicketRec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardState {
    events: BTreeMap<EventId, EventState>,
    /// Events by `(starts_at, id)` for listing soonest first.
    by_start: BTreeSet<(i64, EventId)>,
    holds: BTreeMap<u64, HoldRec>,
    orders: BTreeMap<u64, OrderRec>,
    user_orders: BTreeSet<(UserId, u64)>,
    /// Active holds by expiry and pending orders by payment deadline.
    deadlines: BTreeSet<(i64, Deadline)>,
    /// Sequence for hold and order ids; shared so ids never collide within the shard.
    next_seq: u64,
    changes: VecDeque<Change>,
    /// The highest index whose records were dropped from `changes` (0: none dropped).
    changes_dropped_through: u64,
}

/// A hold as apply sees it, for the checks it must pass.
#[derive(Clone, Copy)]
pub(crate) struct HoldAsk<'a> {
    pub event_id: &'a EventId,
    pub user: &'a UserId,
    pub selection: &'a Selection,
    pub ttl_ms: i64,
    pub access: Option<&'a AccessPass>,
}

/// Whether what is due at the time of a check has been expired already.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// In apply: every command first expires what is due.
    Done,
    /// Outside apply: holds and orders past their time still occupy their slots.
    Pending,
}

fn refused(r: Refusal) -> Outcome {
    Outcome::Refused(r)
}

impl ShardState {
    /// Applies a command; the caller has already expired what is due at `ctx.now_ms`.
    pub(crate) fn apply(&mut self, ctx: Ctx, command: &Command) -> Outcome {
        match command {
            Command::CreateEvent(spec) => self.create_event(ctx, spec),
            Command::UpdateEvent { event_id, patch } => self.update_event(ctx, event_id, patch),
            Command::Hold { event_id, user, selection, ttl_ms, access } => {
                self.hold(ctx, event_id, user, selection, *ttl_ms, access.as_ref())
            }
            Command::ReleaseHold { hold_id, user } => self.release(ctx, hold_id, user),
            Command::Checkout { hold_id, user } => self.checkout(ctx, hold_id, user),
            Command::PaymentResult { order_id, approved, reference } => {
                self.payment_result(ctx, order_id, *approved, reference)
            }
            Command::CancelOrder { order_id, actor } => self.cancel(ctx, order_id, actor),
            Command::Expire => Outcome::Expired { holds: 0, orders: 0 },
            Command::LeaseQueueBlock { event_id, size, unused } => {
                self.lease_queue_block(ctx, event_id, *size, *unused)
            }
            Command::AdvanceQueue { event_id, to } => self.advance_queue(ctx, event_id, *to),
            Command::CreateVenue(_)
            | Command::InitLayout { .. }
            | Command::AddNode { .. }
            | Command::DrainNode { .. }
            | Command::SetPlacement { .. }
            | Command::ForgetNode { .. } => refused(Refusal::WrongGroup),
        }
    }

    pub(crate) fn next_deadline_ms(&self) -> Option<i64> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    // -----------------------------------------------------------------------------------------
    // Events

    fn create_event(&mut self, ctx: Ctx, spec: &EventSpec) -> Outcome {
        if let Err(detail) = spec.validate() {
            return refused(Refusal::Invalid { detail });
        }
        if spec.starts_at_ms <= ctx.now_ms {
            return refused(Refusal::Invalid { detail: "`starts_at` must be in the future".into() });
        }
        if self.events.contains_key(&spec.event_id) {
            return refused(Refusal::Conflict { detail: format!("event {} exists", spec.event_id) });
        }
        let sections = spec
            .venue
            .sections
            .iter()
            .map(|s| SectionInv {
                rows: match &s.kind {
                    SectionKind::Seated { rows } => rows.iter().map(|r| vec![Slot::Free; r.seats as usize]).collect(),
                    SectionKind::General { .. } => Vec::new(),
                },
                capacity: s.capacity(),
                held: 0,
                sold: 0,
            })
            .collect();
        let event = EventState {
            spec: spec.clone(),
            created_at_ms: ctx.now_ms,
            updated_at_ms: ctx.now_ms,
            sections,
            per_user: BTreeMap::new(),
            queue: QueueState::default(),
        };
        self.by_start.insert((spec.starts_at_ms, spec.event_id.clone()));
        self.events.insert(spec.event_id.clone(), event);
        self.record(ctx, &spec.event_id, ChangeKind::Event);
        Outcome::Event(Box::new(self.event_view(&spec.event_id, ctx.now_ms).expect("just inserted")))
    }

    fn update_event(&mut self, ctx: Ctx, event_id: &EventId, patch: &EventPatch) -> Outcome {
        let Some(event) = self.events.get_mut(event_id) else {
            return refused(Refusal::not_found(format!("event {event_id}")));
        };
        let next = patch.apply_to(&event.spec);
        if let Err(detail) = next.validate() {
            return refused(Refusal::Invalid { detail });
        }
        if patch.starts_at_ms.is_some() && next.starts_at_ms <= ctx.now_ms {
            return refused(Refusal::Invalid { detail: "`starts_at` must be in the future".into() });
        }
        self.by_start.remove(&(event.spec.starts_at_ms, event_id.clone()));
        self.by_start.insert((next.starts_at_ms, event_id.clone()));
        event.spec = next;
        event.updated_at_ms = ctx.now_ms;
        self.record(ctx, event_id, ChangeKind::Event);
        Outcome::Event(Box::new(self.event_view(event_id, ctx.now_ms).expect("exists")))
    }

    // -----------------------------------------------------------------------------------------
    // Holds

    fn hold(
        &mut self,
        ctx: Ctx,
        event_id: &EventId,
        user: &UserId,
        selection: &Selection,
        ttl_ms: i64,
        access: Option<&AccessPass>,
    ) -> Outcome {
        let hold = HoldAsk { event_id, user, selection, ttl_ms, access };
        // Apply has expired everything due at `ctx.now_ms` already.
        let taken = match self.judge_hold(ctx.now_ms, &hold, Expiry::Done) {
            Ok(taken) => taken,
            Err(refusal) => return refused(refusal),
        };
        let spec = &self.events[event_id].spec;
        let requested = taken.count();
        let total = price_of(spec, &taken);
        let seq = self.next_seq;
        self.next_seq += 1;
        let event = self.events.get_mut(event_id).expect("checked above");
        occupy(event, &taken, Slot::Held(seq));
        *event.per_user.entry(user.clone()).or_insert(0) += requested;
        if let (true, Some(pass)) = (event.spec.high_traffic, access) {
            event.queue.redeem(pass, ctx.now_ms);
        }
        let expires_at_ms = ctx.now_ms + ttl_ms;
        let change = taken_change(event, &taken, SeatStatus::Held);
        self.holds.insert(
            seq,
            HoldRec {
                event_id: event_id.clone(),
                user: user.clone(),
                taken,
                total,
                status: HoldStatus::Active,
                created_at_ms: ctx.now_ms,
                expires_at_ms,
                ended_at_ms: None,
                order: None,
            },
        );
        self.deadlines.insert((expires_at_ms, Deadline::Hold(seq)));
        self.record(ctx, event_id, change);
        Outcome::Hold(self.hold_view(seq, ctx.now_ms))
    }

    /// The refusal apply would give this hold if it were the next command at `now_ms`, judged
    /// without changing anything; `None` when it would succeed or when only apply can tell. Holds
    /// and unpaid orders past their time count as free here, as apply would expire them first; a
    /// per-user limit is left to apply, whose counts drop when it expires them.
    pub(crate) fn hold_refusal(&self, now_ms: i64, hold: &HoldAsk<'_>) -> Option<Refusal> {
        match self.judge_hold(now_ms, hold, Expiry::Pending) {
            Ok(_) | Err(Refusal::LimitExceeded { .. }) => None,
            Err(refusal) => Some(refusal),
        }
    }

    /// Every rule a hold must pass, in apply's order, without changing anything: the seats it
    /// would take, or why not. With `Expiry::Pending`, what is due at `now_ms` has not been
    /// expired yet and counts as free.
    fn judge_hold(&self, now_ms: i64, hold: &HoldAsk<'_>, expiry: Expiry) -> Result<Taken, Refusal> {
        let HoldAsk { event_id, user, selection, ttl_ms, access } = *hold;
        if !(HOLD_TTL_MS_MIN..=HOLD_TTL_MS_MAX).contains(&ttl_ms) {
            return Err(Refusal::Invalid {
                detail: format!("hold ttl must be {HOLD_TTL_MS_MIN}..={HOLD_TTL_MS_MAX} ms"),
            });
        }
        let Some(event) = self.events.get(event_id) else {
            return Err(Refusal::not_found(format!("event {event_id}")));
        };
        let taken = resolve_selection(&event.spec, selection)?;
        let spec = &event.spec;
        if now_ms < spec.on_sale_at_ms || now_ms >= spec.starts_at_ms {
            return Err(Refusal::NotOnSale { on_sale_at_ms: spec.on_sale_at_ms, starts_at_ms: spec.starts_at_ms });
        }
        if spec.high_traffic {
            match access {
                Some(pass) if pass.expires_at_ms > now_ms => {
                    if event.queue.is_redeemed(pass) {
                        return Err(Refusal::AccessUsed);
                    }
                }
                _ => return Err(Refusal::QueueRequired),
            }
        }
        let requested = taken.count();
        if let Some(limit) = spec.per_user_limit {
            let current = event.per_user.get(user).copied().unwrap_or(0);
            if current + requested > limit {
                return Err(Refusal::LimitExceeded { limit, current, requested });
            }
        }
        #[cfg(madsim)]
        let check = !crate::planted::is_planted(crate::planted::Bug::SkipAvailabilityCheck);
        #[cfg(not(madsim))]
        let check = true;
        let free = |slot: Slot| match (slot, expiry) {
            (Slot::Free, _) => true,
            (Slot::Held(seq), Expiry::Pending) => self.lapsed(seq, now_ms),
            _ => false,
        };
        match &taken {
            Taken::Seats(_) | Taken::General { .. } if !check => {}
            Taken::Seats(seats) => {
                let unavailable: Vec<String> = seats
                    .iter()
                    .filter(|s| !free(event.sections[s.section as usize].rows[s.row as usize][s.number as usize - 1]))
                    .map(|s| seat_id(spec, *s))
                    .collect();
                if !unavailable.is_empty() {
                    return Err(Refusal::SeatsUnavailable { seats: unavailable });
                }
            }
            Taken::General { section, quantity } => {
                let lapsed = match expiry {
                    Expiry::Done => 0,
                    Expiry::Pending => {
                        self.lapsed_by_section(event_id, now_ms).get(&(*section as usize)).copied().unwrap_or(0)
                    }
                };
                let available = event.sections[*section as usize].available() + lapsed;
                if available < *quantity {
                    let section = spec.venue.sections[*section as usize].id.clone();
                    return Err(Refusal::SoldOut { section, available });
                }
            }
        }
        Ok(taken)
    }

    /// The hold `id` if it exists and belongs to `user`; another user's hold is "not found".
    fn own_hold(&self, id: &HoldId, user: &UserId) -> Result<&HoldRec, Refusal> {
        match self.holds.get(&id.seq) {
            Some(h) if h.event_id == id.event_id && &h.user == user => Ok(h),
            _ => Err(Refusal::not_found(format!("hold {id}"))),
        }
    }

    fn release(&mut self, ctx: Ctx, hold_id: &HoldId, user: &UserId) -> Outcome {
        let hold = match self.own_hold(hold_id, user) {
            Ok(h) => h,
            Err(r) => return refused(r),
        };
        match hold.status {
            HoldStatus::Active => {
                self.end_hold(ctx, hold_id.seq, HoldStatus::Released);
                Outcome::Hold(self.hold_view(hold_id.seq, ctx.now_ms))
            }
            HoldStatus::Released | HoldStatus::Expired => Outcome::Hold(self.hold_view(hold_id.seq, ctx.now_ms)),
            HoldStatus::CheckedOut => refused(Refusal::HoldNotActive { status: HoldStatus::CheckedOut }),
        }
    }

    /// Ends an active hold (released or expired): its seats are free again.
    fn end_hold(&mut self, ctx: Ctx, seq: u64, status: HoldStatus) {
        let hold = self.holds.get_mut(&seq).expect("caller checked");
        assert_eq!(hold.status, HoldStatus::Active);
        hold.status = status;
        // An expired hold stopped owning its seats at its expiry, not when a command noticed.
        hold.ended_at_ms = Some(if status == HoldStatus::Expired { hold.expires_at_ms } else { ctx.now_ms });
        let (event_id, user, taken, expires) =
            (hold.event_id.clone(), hold.user.clone(), hold.taken.clone(), hold.expires_at_ms);
        self.deadlines.remove(&(expires, Deadline::Hold(seq)));
        let event = self.events.get_mut(&event_id).expect("a hold's event exists");
        vacate(event, &taken, Slot::Held(seq));
        uncount_user(event, &user, taken.count());
        let change = taken_change(event, &taken, SeatStatus::Available);
        self.record(ctx, &event_id, change);
    }

    // -----------------------------------------------------------------------------------------
    // Orders

    fn checkout(&mut self, ctx: Ctx, hold_id: &HoldId, user: &UserId) -> Outcome {
        let hold = match self.own_hold(hold_id, user) {
            Ok(h) => h,
            Err(r) => return refused(r),
        };
        match hold.status {
            HoldStatus::CheckedOut => {
                let order = hold.order.expect("a checked-out hold has an order");
                return Outcome::Order(self.order_view(order, ctx.now_ms));
            }
            HoldStatus::Released => return refused(Refusal::HoldNotActive { status: HoldStatus::Released }),
            // Due holds were expired before this command, so an active hold is within its time.
            HoldStatus::Expired => return refused(Refusal::HoldExpired),
            HoldStatus::Active => assert!(hold.expires_at_ms > ctx.now_ms),
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let hold = self.holds.get_mut(&hold_id.seq).expect("checked above");
        hold.status = HoldStatus::CheckedOut;
        hold.ended_at_ms = Some(ctx.now_ms);
        hold.order = Some(seq);
        let payment_deadline_ms = ctx.now_ms + PAYMENT_TIMEOUT_MS;
        let order = OrderRec {
            event_id: hold.event_id.clone(),
            user: hold.user.clone(),
            hold: hold_id.seq,
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
        self.user_orders.insert((order.user.clone(), seq));
        self.orders.insert(seq, order);
        Outcome::Order(self.order_view(seq, ctx.now_ms))
    }

    fn payment_result(&mut self, ctx: Ctx, order_id: &OrderId, approved: bool, reference: &str) -> Outcome {
        let Some(order) = self.orders.get(&order_id.seq).filter(|o| o.event_id == order_id.event_id) else {
            return refused(Refusal::not_found(format!("order {order_id}")));
        };
        if order.status != OrderStatus::PendingPayment {
            // A late or repeated result changes nothing; the caller refunds a late approval.
            return Outcome::Order(self.order_view(order_id.seq, ctx.now_ms));
        }
        let deadline = (order.payment_deadline_ms, Deadline::Payment(order_id.seq));
        self.deadlines.remove(&deadline);
        if approved {
            self.confirm(ctx, order_id.seq, reference);
        } else {
            self.fail_payment(ctx, order_id.seq, Some(reference));
        }
        Outcome::Order(self.order_view(order_id.seq, ctx.now_ms))
    }

    fn confirm(&mut self, ctx: Ctx, seq: u64, reference: &str) {
        let order = self.orders.get_mut(&seq).expect("caller checked");
        let hold = self.holds.get(&order.hold).expect("an order's hold exists");
        let event = self.events.get_mut(&order.event_id).expect("an order's event exists");
        sell(event, &hold.taken, order.hold, seq);
        order.tickets = tickets_for(&hold.taken);
        order.status = OrderStatus::Confirmed;
        order.payment_reference = Some(reference.to_owned());
        order.updated_at_ms = ctx.now_ms;
        let change = taken_change(event, &hold.taken, SeatStatus::Sold);
        let event_id = order.event_id.clone();
        self.record(ctx, &event_id, change);
    }

    fn fail_payment(&mut self, ctx: Ctx, seq: u64, reference: Option<&str>) {
        let order = self.orders.get_mut(&seq).expect("caller checked");
        assert_eq!(order.status, OrderStatus::PendingPayment);
        let hold = self.holds.get(&order.hold).expect("an order's hold exists");
        let event = self.events.get_mut(&order.event_id).expect("an order's event exists");
        vacate(event, &hold.taken, Slot::Held(order.hold));
        uncount_user(event, &order.user, hold.taken.count());
        order.status = OrderStatus::PaymentFailed;
        order.payment_reference = reference.map(str::to_owned);
        order.updated_at_ms = ctx.now_ms;
        let change = taken_change(event, &hold.taken, SeatStatus::Available);
        let event_id = order.event_id.clone();
        self.record(ctx, &event_id, change);
    }

    fn cancel(&mut self, ctx: Ctx, order_id: &OrderId, actor: &Actor) -> Outcome {
        let order = match self.orders.get(&order_id.seq) {
            Some(o) if o.event_id == order_id.event_id && (actor.admin || o.user == actor.user) => o,
            _ => return refused(Refusal::not_found(format!("order {order_id}"))),
        };
        match order.status {
            OrderStatus::Cancelled => return Outcome::Order(self.order_view(order_id.seq, ctx.now_ms)),
            OrderStatus::PendingPayment | OrderStatus::PaymentFailed => {
                let reason = "only a confirmed order can be cancelled".to_owned();
                return refused(Refusal::OrderNotCancellable { status: order.status, reason });
            }
            OrderStatus::Confirmed => {}
        }
        let event = &self.events[&order.event_id];
        if !actor.admin && ctx.now_ms >= event.spec.starts_at_ms {
            let reason = "the event has started".to_owned();
            return refused(Refusal::OrderNotCancellable { status: order.status, reason });
        }
        let order = self.orders.get_mut(&order_id.seq).expect("checked above");
        let taken = self.holds[&order.hold].taken.clone();
        let event = self.events.get_mut(&order.event_id).expect("an order's event exists");
        unsell(event, &taken, order_id.seq);
        uncount_user(event, &order.user, taken.count());
        for t in &mut order.tickets {
            t.status = TicketStatus::Cancelled;
        }
        order.status = OrderStatus::Cancelled;
        order.refunded = true;
        order.updated_at_ms = ctx.now_ms;
        let change = taken_change(event, &taken, SeatStatus::Available);
        self.record(ctx, &order_id.event_id, change);
        Outcome::Order(self.order_view(order_id.seq, ctx.now_ms))
    }

    // -----------------------------------------------------------------------------------------
    // Waiting room

    fn lease_queue_block(&mut self, ctx: Ctx, event_id: &EventId, size: u64, unused: Option<(u64, u64)>) -> Outcome {
        let Some(event) = self.events.get_mut(event_id) else {
            return refused(Refusal::not_found(format!("event {event_id}")));
        };
        if !event.spec.high_traffic {
            return refused(Refusal::Invalid { detail: "this event has no waiting room".into() });
        }
        let on_sale = ctx.now_ms >= event.spec.on_sale_at_ms;
        if let Some((start, end)) = unused {
            event.queue.forgo(start, end);
        }
        match event.queue.lease(size, on_sale) {
            Ok(block) => Outcome::QueueBlock(block),
            Err(detail) => refused(Refusal::Invalid { detail }),
        }
    }

    /// Admits queue positions below `to`; nothing is admitted before the sale opens.
    fn advance_queue(&mut self, ctx: Ctx, event_id: &EventId, to: u64) -> Outcome {
        let Some(event) = self.events.get_mut(event_id) else {
            return refused(Refusal::not_found(format!("event {event_id}")));
        };
        if !event.spec.high_traffic {
            return refused(Refusal::Invalid { detail: "this event has no waiting room".into() });
        }
        if ctx.now_ms >= event.spec.on_sale_at_ms {
            event.queue.open();
            event.queue.advance(to, ctx.now_ms);
        }
        match self.queue_view(event_id, ctx.now_ms) {
            Some(view) => Outcome::Queue(view),
            None => refused(Refusal::not_found(format!("event {event_id}"))),
        }
    }

    fn queue_view(&self, event_id: &EventId, now_ms: i64) -> Option<QueueView> {
        let event = self.events.get(event_id)?;
        let view = self.event_view(event_id, now_ms)?;
        let capacity: u32 = view.sections.iter().map(|s| s.capacity).sum();
        let sold: u32 = view.sections.iter().map(|s| s.sold).sum();
        Some(QueueView {
            event_id: event_id.clone(),
            high_traffic: event.spec.high_traffic,
            on_sale_at_ms: event.spec.on_sale_at_ms,
            starts_at_ms: event.spec.starts_at_ms,
            queue: event.queue.view(now_ms),
            available: view.sections.iter().map(|s| s.available).sum(),
            held: view.sections.iter().map(|s| s.held).sum(),
            sold_out: sold >= capacity,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Expiry

    /// Expires every hold and unpaid order due at `ctx.now_ms`. Returns how many of each.
    pub(crate) fn expire_due(&mut self, ctx: Ctx) -> (u32, u32) {
        let (mut holds, mut orders) = (0, 0);
        while let Some(&(due, deadline)) = self.deadlines.first() {
            if due > ctx.now_ms {
                break;
            }
            match deadline {
                Deadline::Hold(seq) => {
                    self.end_hold(ctx, seq, HoldStatus::Expired);
                    holds += 1;
                }
                Deadline::Payment(seq) => {
                    self.deadlines.remove(&(due, deadline));
                    self.fail_payment(ctx, seq, None);
                    orders += 1;
                }
            }
        }
        (holds, orders)
    }

    // -----------------------------------------------------------------------------------------
    // Change records

    fn record(&mut self, ctx: Ctx, event_id: &EventId, kind: ChangeKind) {
        self.changes.push_back(Change { index: ctx.index, time_ms: ctx.now_ms, event_id: event_id.clone(), kind });
        while self.changes.len() > CHANGES_RETAINED_MAX {
            let dropped = self.changes.pop_front().expect("non-empty");
            self.changes_dropped_through = dropped.index;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reads

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
                let start = match after {
                    Some(id) => std::ops::Bound::Excluded(id.clone()),
                    None => std::ops::Bound::Unbounded,
                };
                let events = self
                    .events
                    .range((start, std::ops::Bound::Unbounded))
                    .take((*limit).min(LIST_LIMIT_MAX))
                    .filter_map(|(id, _)| self.event_view(id, now_ms))
                    .collect();
                Answer::AllEvents { events, last_index }
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

    /// Whether the hold `seq` no longer holds its seats at `now_ms`, though no command has
    /// expired it yet: an active hold past its expiry, or an order past its payment deadline.
    fn lapsed(&self, hold_seq: u64, now_ms: i64) -> bool {
        let hold = &self.holds[&hold_seq];
        match hold.status {
            HoldStatus::Active => hold.expires_at_ms <= now_ms,
            HoldStatus::CheckedOut => hold.order.is_some_and(|o| {
                let order = &self.orders[&o];
                order.status == OrderStatus::PendingPayment && order.payment_deadline_ms <= now_ms
            }),
            HoldStatus::Released | HoldStatus::Expired => true,
        }
    }

    /// Per section, the admissions counted as held that have lapsed at `now_ms`.
    fn lapsed_by_section(&self, event_id: &EventId, now_ms: i64) -> BTreeMap<usize, u32> {
        let mut lapsed = BTreeMap::new();
        for (_, deadline) in self.deadlines.range(..(now_ms.saturating_add(1), Deadline::Hold(0))) {
            let hold = match deadline {
                Deadline::Hold(seq) => &self.holds[seq],
                Deadline::Payment(seq) => &self.holds[&self.orders[seq].hold],
            };
            if &hold.event_id != event_id {
                continue;
            }
            for section in section_indexes(&hold.taken) {
                *lapsed.entry(section).or_insert(0) += count_in_section(&hold.taken, section);
            }
        }
        lapsed
    }

    fn section_views(&self, event_id: &EventId, event: &EventState, now_ms: i64) -> Vec<SectionView> {
        let lapsed = self.lapsed_by_section(event_id, now_ms);
        event
            .spec
            .venue
            .sections
            .iter()
            .zip(&event.sections)
            .enumerate()
            .map(|(i, (section, inv))| {
                let held = inv.held - lapsed.get(&i).copied().unwrap_or(0);
                SectionView {
                    section: section.id.clone(),
                    name: section.name.clone(),
                    kind: match section.kind {
                        SectionKind::Seated { .. } => SectionKindTag::Seated,
                        SectionKind::General { .. } => SectionKindTag::General,
                    },
                    price: event.spec.price_of(&section.id).unwrap_or(Money::zero(event.spec.currency())),
                    capacity: inv.capacity,
                    available: inv.capacity - held - inv.sold,
                    held,
                    sold: inv.sold,
                }
            })
            .collect()
    }

    fn event_view(&self, event_id: &EventId, now_ms: i64) -> Option<EventView> {
        let event = self.events.get(event_id)?;
        let sections = self.section_views(event_id, event, now_ms);
        let available: u32 = sections.iter().map(|s| s.available).sum();
        Some(EventView {
            spec: event.spec.clone(),
            status: event_status(&event.spec, available, now_ms),
            sections,
            created_at_ms: event.created_at_ms,
            updated_at_ms: event.updated_at_ms,
        })
    }

    fn seat_map(&self, event_id: &EventId, now_ms: i64, last_index: u64) -> Option<SeatMap> {
        let event = self.events.get(event_id)?;
        let spec = &event.spec;
        let mut seats = Vec::new();
        let mut general = Vec::new();
        let views = self.section_views(event_id, event, now_ms);
        for (i, section) in spec.venue.sections.iter().enumerate() {
            let price = views[i].price;
            match &section.kind {
                SectionKind::Seated { rows } => {
                    for (r, row) in rows.iter().enumerate() {
                        for (n, slot) in event.sections[i].rows[r].iter().enumerate() {
                            let status = match slot {
                                Slot::Free => SeatStatus::Available,
                                Slot::Held(h) if self.lapsed(*h, now_ms) => SeatStatus::Available,
                                Slot::Held(_) => SeatStatus::Held,
                                Slot::Sold(_) => SeatStatus::Sold,
                            };
                            let number = n as u32 + 1;
                            seats.push(SeatView {
                                id: format!("{}-{}-{}", section.id, row.id, number),
                                section: section.id.clone(),
                                row: row.id.clone(),
                                number,
                                status,
                                price,
                            });
                        }
                    }
                }
                SectionKind::General { capacity } => general.push(GeneralView {
                    section: section.id.clone(),
                    capacity: *capacity,
                    available: views[i].available,
                    price,
                }),
            }
        }
        Some(SeatMap { event_id: event_id.clone(), as_of_ms: now_ms, as_of_index: last_index, seats, general })
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

    fn summary(&self, event_id: &EventId, now_ms: i64) -> Option<EventSummary> {
        let view = self.event_view(event_id, now_ms)?;
        let spec = &view.spec;
        let prices = spec.prices.iter().map(|p| p.price.amount);
        let currency = spec.currency();
        Some(EventSummary {
            event_id: event_id.clone(),
            name: spec.name.clone(),
            category: spec.category.clone(),
            starts_at_ms: spec.starts_at_ms,
            venue_name: spec.venue.name.clone(),
            venue_city: spec.venue.city.clone(),
            performers: spec.performers.clone(),
            price_min: Money::new(prices.clone().min().unwrap_or(0), currency),
            price_max: Money::new(prices.max().unwrap_or(0), currency),
            available: view.sections.iter().map(|s| s.available).sum(),
            status: view.status,
        })
    }

    fn hold_view(&self, seq: u64, now_ms: i64) -> HoldView {
        let hold = &self.holds[&seq];
        let spec = &self.events[&hold.event_id].spec;
        let (seats, section, quantity) = match &hold.taken {
            Taken::Seats(seats) => (seats.iter().map(|s| seat_id(spec, *s)).collect(), None, None),
            Taken::General { section, quantity } => {
                (Vec::new(), Some(spec.venue.sections[*section as usize].id.clone()), Some(*quantity))
            }
        };
        let (status, ended_at_ms) = match hold.status {
            HoldStatus::Active if hold.expires_at_ms <= now_ms => (HoldStatus::Expired, Some(hold.expires_at_ms)),
            s => (s, hold.ended_at_ms),
        };
        HoldView {
            hold_id: HoldId { event_id: hold.event_id.clone(), seq },
            event_id: hold.event_id.clone(),
            user_id: hold.user.clone(),
            seats,
            section,
            quantity,
            total: hold.total,
            status,
            created_at_ms: hold.created_at_ms,
            expires_at_ms: hold.expires_at_ms,
            ended_at_ms,
            order_id: hold.order.map(|o| OrderId { event_id: hold.event_id.clone(), seq: o }),
        }
    }

    fn order_view(&self, seq: u64, now_ms: i64) -> OrderView {
        let order = &self.orders[&seq];
        let spec = &self.events[&order.event_id].spec;
        let order_id = OrderId { event_id: order.event_id.clone(), seq };
        let status = match order.status {
            OrderStatus::PendingPayment if order.payment_deadline_ms <= now_ms => OrderStatus::PaymentFailed,
            s => s,
        };
        let tickets = order
            .tickets
            .iter()
            .map(|t| TicketView {
                ticket_id: TicketId { order: order_id.clone(), n: t.n },
                order_id: order_id.clone(),
                event_id: order.event_id.clone(),
                user_id: order.user.clone(),
                seat: t.seat.map(|s| seat_id(spec, s)),
                section: spec.venue.sections[t.section as usize].id.clone(),
                status: t.status,
            })
            .collect();
        OrderView {
            order_id: order_id.clone(),
            event_id: order.event_id.clone(),
            user_id: order.user.clone(),
            hold_id: HoldId { event_id: order.event_id.clone(), seq: order.hold },
            status,
            total: order.total,
            tickets,
            created_at_ms: order.created_at_ms,
            updated_at_ms: order.updated_at_ms,
            payment_deadline_ms: order.payment_deadline_ms,
            payment_reference: order.payment_reference.clone(),
            refunded: order.refunded,
        }
    }

    /// The user's orders on this shard, newest first, strictly after the cursor.
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

    fn changes_after(&self, after_index: u64, limit: usize, last_index: u64) -> ChangesPage {
        if after_index < self.changes_dropped_through {
            let oldest_retained_index = self.changes.front().map_or(last_index, |c| c.index);
            return ChangesPage::Compacted { oldest_retained_index, last_index };
        }
        let start = self.changes.partition_point(|c| c.index <= after_index);
        let mut changes: Vec<Change> = self.changes.range(start..).take(limit).cloned().collect();
        // Never split the records of one log index across pages.
        if let Some(last) = changes.last().map(|c| c.index) {
            if start + changes.len() < self.changes.len() && self.changes[start + changes.len()].index == last {
                changes.extend(self.changes.range(start + changes.len()..).take_while(|c| c.index == last).cloned());
            }
        }
        ChangesPage::Records { changes, last_index }
    }

    // -----------------------------------------------------------------------------------------
    // Invariants

    /// Recounts the inventory from the seat slots, holds and orders, and compares.
    pub(crate) fn check_invariants(&self, now_ms: i64) -> Result<(), String> {
        for (event_id, event) in &self.events {
            let mut per_user: BTreeMap<&UserId, u32> = BTreeMap::new();
            let mut held = vec![0u32; event.sections.len()];
            let mut sold = vec![0u32; event.sections.len()];
            for (seq, hold) in self.holds.iter().filter(|(_, h)| &h.event_id == event_id) {
                let live = match hold.status {
                    HoldStatus::Active => {
                        if hold.expires_at_ms <= now_ms {
                            return Err(format!("hold {seq} is active past its expiry"));
                        }
                        Some(Slot::Held(*seq))
                    }
                    HoldStatus::CheckedOut => {
                        let order = &self.orders[&hold.order.ok_or("checked-out hold without order")?];
                        match order.status {
                            OrderStatus::PendingPayment => Some(Slot::Held(*seq)),
                            OrderStatus::Confirmed => Some(Slot::Sold(hold.order.unwrap_or_default())),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                let Some(slot) = live else { continue };
                *per_user.entry(&hold.user).or_insert(0) += hold.taken.count();
                let counts = if matches!(slot, Slot::Held(_)) { &mut held } else { &mut sold };
                match &hold.taken {
                    Taken::Seats(seats) => {
                        for s in seats {
                            let actual = event.sections[s.section as usize].rows[s.row as usize][s.number as usize - 1];
                            if actual != slot {
                                return Err(format!(
                                    "seat {} is {actual:?}, expected {slot:?}",
                                    seat_id(&event.spec, *s)
                                ));
                            }
                            counts[s.section as usize] += 1;
                        }
                    }
                    Taken::General { section, quantity } => counts[*section as usize] += quantity,
                }
            }
            for (i, inv) in event.sections.iter().enumerate() {
                let taken_slots = inv.rows.iter().flatten().filter(|s| **s != Slot::Free).count() as u32;
                if !inv.rows.is_empty() && taken_slots != held[i] + sold[i] {
                    return Err(format!(
                        "section {i} of {event_id}: {taken_slots} seats taken, {} counted",
                        held[i] + sold[i]
                    ));
                }
                if inv.held != held[i] || inv.sold != sold[i] {
                    return Err(format!(
                        "section {i} of {event_id}: counters held {} sold {}, recount {} {}",
                        inv.held, inv.sold, held[i], sold[i]
                    ));
                }
                if inv.held + inv.sold > inv.capacity {
                    return Err(format!("section {i} of {event_id} is over capacity"));
                }
            }
            let counted: BTreeMap<&UserId, u32> =
                event.per_user.iter().filter(|(_, n)| **n > 0).map(|(u, n)| (u, *n)).collect();
            if counted != per_user {
                return Err(format!("per-user counts of {event_id} are {counted:?}, recount {per_user:?}"));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers on one event's inventory.

fn seat_id(spec: &EventSpec, seat: SeatRef) -> String {
    let section = &spec.venue.sections[seat.section as usize];
    let SectionKind::Seated { rows } = &section.kind else { unreachable!("a seat is in a seated section") };
    format!("{}-{}-{}", section.id, rows[seat.row as usize].id, seat.number)
}

fn parse_seat(spec: &EventSpec, id: &str) -> Option<SeatRef> {
    let mut parts = id.splitn(3, '-');
    let (section_id, row_id, number) = (parts.next()?, parts.next()?, parts.next()?);
    let (section, found) = spec.venue.section(section_id)?;
    let SectionKind::Seated { rows } = &found.kind else { return None };
    let row = rows.iter().position(|r| r.id == row_id)?;
    if number.is_empty() || number.len() > 4 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u16 = number.parse().ok()?;
    if number == 0 || u32::from(number) > rows[row].seats {
        return None;
    }
    Some(SeatRef { section: section as u16, row: row as u16, number })
}

fn resolve_selection(spec: &EventSpec, selection: &Selection) -> Result<Taken, Refusal> {
    match selection {
        Selection::Seats(ids) => {
            if ids.is_empty() || ids.len() > HOLD_SEATS_MAX {
                return Err(Refusal::Invalid { detail: format!("a hold has 1 to {HOLD_SEATS_MAX} seats") });
            }
            let mut seen = BTreeSet::new();
            let mut seats = Vec::with_capacity(ids.len());
            for id in ids {
                let seat = parse_seat(spec, id).ok_or_else(|| Refusal::not_found(format!("seat {id}")))?;
                if !seen.insert(seat) {
                    return Err(Refusal::Invalid { detail: format!("seat {id} is listed twice") });
                }
                seats.push(seat);
            }
            Ok(Taken::Seats(seats))
        }
        Selection::General { section, quantity } => {
            let (index, found) =
                spec.venue.section(section).ok_or_else(|| Refusal::not_found(format!("section {section}")))?;
            if !matches!(found.kind, SectionKind::General { .. }) {
                return Err(Refusal::Invalid { detail: format!("section {section} is seated: hold seats by id") });
            }
            if *quantity == 0 || *quantity > HOLD_QUANTITY_MAX {
                return Err(Refusal::Invalid { detail: format!("quantity is 1 to {HOLD_QUANTITY_MAX}") });
            }
            Ok(Taken::General { section: index as u16, quantity: *quantity })
        }
    }
}

fn price_of(spec: &EventSpec, taken: &Taken) -> Money {
    let currency = spec.currency();
    let section_price = |i: u16| spec.price_of(&spec.venue.sections[i as usize].id).unwrap_or(Money::zero(currency));
    match taken {
        Taken::Seats(seats) => seats.iter().fold(Money::zero(currency), |sum, s| sum.plus(section_price(s.section))),
        Taken::General { section, quantity } => section_price(*section).times(*quantity),
    }
}

fn section_indexes(taken: &Taken) -> BTreeSet<usize> {
    match taken {
        Taken::Seats(seats) => seats.iter().map(|s| s.section as usize).collect(),
        Taken::General { section, .. } => [*section as usize].into(),
    }
}

fn count_in_section(taken: &Taken, section: usize) -> u32 {
    match taken {
        Taken::Seats(seats) => seats.iter().filter(|s| s.section as usize == section).count() as u32,
        Taken::General { section: s, quantity } => {
            if *s as usize == section {
                *quantity
            } else {
                0
            }
        }
    }
}

// The four moves of the inventory: free → held → sold, held → free, sold → free. Each asserts the
// state it starts from, so a bookkeeping bug stops the node instead of selling a seat twice.

/// Free → held by the hold `seq`.
fn occupy(event: &mut EventState, taken: &Taken, slot: Slot) {
    match taken {
        Taken::Seats(seats) => {
            for s in seats {
                let inv = &mut event.sections[s.section as usize];
                let cell = &mut inv.rows[s.row as usize][s.number as usize - 1];
                #[cfg(madsim)]
                if crate::planted::is_planted(crate::planted::Bug::SkipAvailabilityCheck) && *cell != Slot::Free {
                    // The planted bug sells the seat again; keep going so the checks see it.
                    *cell = slot;
                    continue;
                }
                assert_eq!(*cell, Slot::Free, "a seat is taken only when free");
                *cell = slot;
                inv.held += 1;
            }
        }
        Taken::General { section, quantity } => {
            let inv = &mut event.sections[*section as usize];
            #[cfg(madsim)]
            if crate::planted::is_planted(crate::planted::Bug::SkipAvailabilityCheck) && inv.available() < *quantity {
                inv.held = inv.capacity - inv.sold;
                return;
            }
            assert!(inv.available() >= *quantity, "a quantity is taken only when available");
            inv.held += quantity;
        }
    }
}

/// Held by `slot` → free.
fn vacate(event: &mut EventState, taken: &Taken, slot: Slot) {
    match taken {
        Taken::Seats(seats) => {
            for s in seats {
                let inv = &mut event.sections[s.section as usize];
                let cell = &mut inv.rows[s.row as usize][s.number as usize - 1];
                assert_eq!(*cell, slot, "a seat is freed only by its taker");
                *cell = Slot::Free;
                inv.held -= 1;
            }
        }
        Taken::General { section, quantity } => {
            let inv = &mut event.sections[*section as usize];
            assert!(inv.held >= *quantity);
            inv.held -= quantity;
        }
    }
}

/// Held by the hold `hold_seq` → sold to the order `order_seq`.
fn sell(event: &mut EventState, taken: &Taken, hold_seq: u64, order_seq: u64) {
    match taken {
        Taken::Seats(seats) => {
            for s in seats {
                let inv = &mut event.sections[s.section as usize];
                let cell = &mut inv.rows[s.row as usize][s.number as usize - 1];
                assert_eq!(*cell, Slot::Held(hold_seq), "a seat is sold only by its hold");
                *cell = Slot::Sold(order_seq);
                inv.held -= 1;
                inv.sold += 1;
            }
        }
        Taken::General { section, quantity } => {
            let inv = &mut event.sections[*section as usize];
            assert!(inv.held >= *quantity);
            inv.held -= quantity;
            inv.sold += quantity;
        }
    }
}

/// Sold to the order `order_seq` → free.
fn unsell(event: &mut EventState, taken: &Taken, order_seq: u64) {
    match taken {
        Taken::Seats(seats) => {
            for s in seats {
                let inv = &mut event.sections[s.section as usize];
                let cell = &mut inv.rows[s.row as usize][s.number as usize - 1];
                assert_eq!(*cell, Slot::Sold(order_seq), "a seat is refunded only by its order");
                *cell = Slot::Free;
                inv.sold -= 1;
            }
        }
        Taken::General { section, quantity } => {
            let inv = &mut event.sections[*section as usize];
            assert!(inv.sold >= *quantity);
            inv.sold -= quantity;
        }
    }
}

fn uncount_user(event: &mut EventState, user: &UserId, n: u32) {
    let count = event.per_user.get_mut(user).expect("a live hold is counted");
    assert!(*count >= n);
    *count -= n;
    if *count == 0 {
        event.per_user.remove(user);
    }
}

fn tickets_for(taken: &Taken) -> Vec<TicketRec> {
    match taken {
        Taken::Seats(seats) => seats
            .iter()
            .enumerate()
            .map(|(i, s)| TicketRec {
                n: i as u32 + 1,
                seat: Some(*s),
                section: s.section,
                status: TicketStatus::Valid,
            })
            .collect(),
        Taken::General { section, quantity } => (1..=*quantity)
            .map(|n| TicketRec { n, seat: None, section: *section, status: TicketStatus::Valid })
            .collect(),
    }
}

fn taken_change(event: &EventState, taken: &Taken, status: SeatStatus) -> ChangeKind {
    match taken {
        Taken::Seats(seats) => {
            ChangeKind::Seats { seats: seats.iter().map(|s| seat_id(&event.spec, *s)).collect(), status }
        }
        Taken::General { section, .. } => {
            let inv = &event.sections[*section as usize];
            ChangeKind::General {
                section: event.spec.venue.sections[*section as usize].id.clone(),
                available: inv.available(),
                held: inv.held,
                sold: inv.sold,
            }
        }
    }
}

fn event_status(spec: &EventSpec, available: u32, now_ms: i64) -> EventStatus {
    if now_ms >= spec.starts_at_ms {
        EventStatus::Ended
    } else if now_ms < spec.on_sale_at_ms {
        EventStatus::Scheduled
    } else if available == 0 {
        EventStatus::SoldOut
    } else {
        EventStatus::OnSale
    }
}
