//! The shard's invariants, recounted from scratch: every event's counters, seat slots, per-user
//! counts and held seats per user must agree with what its active holds and live orders say; orders and the holds they
//! were made from agree while both are in memory; every pending order is found by its hold; every
//! ended hold still in memory (a state from before ended holds went to the cold store) is due to
//! leave at the end of its retention, and every active hold and pending order has its deadline. Quadratic in
//! the holds and orders of an event: for tests and simulations between commands, never for apply.

use std::collections::BTreeMap;

use super::inventory::seat_id;
use super::state::{Deadline, EventState, HoldRec, OrderRec, ShardState, Slot, Taken};
use crate::ids::{EventId, UserId};
use crate::limits::HOLD_RETENTION_MS;
use crate::model::{HoldStatus, OrderStatus};

/// A broken invariant of a shard's bookkeeping: a bug in apply, never a business refusal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    #[error("hold {hold_seq} is active past its expiry")]
    ActiveHoldPastExpiry { hold_seq: u64 },
    #[error("checked-out hold {hold_seq} without order")]
    CheckedOutHoldWithoutOrder { hold_seq: u64 },
    /// The order and the retained hold it was made from disagree (event, user, seats, or links).
    #[error("order {order_seq} and its hold {hold_seq} disagree")]
    OrderHoldMismatch { order_seq: u64, hold_seq: u64 },
    /// A pending order's seats are held in its hold's name, so the hold must lead to it
    /// (`pending_by_hold`), and only a pending order's hold may.
    #[error("order {order_seq} and hold {hold_seq}: not indexed as a pending order and its hold")]
    PendingOrderWithoutHold { order_seq: u64, hold_seq: u64 },
    /// An ended hold not due to leave at the end of its retention, or an active one that is.
    #[error("hold {hold_seq} is not scheduled to leave the state as its status says")]
    RetentionMismatch { hold_seq: u64 },
    /// An active hold or pending order without its deadline, or a deadline of neither.
    #[error("deadline {deadline} does not match the holds and orders")]
    DeadlineMismatch { deadline: String },
    /// `actual` and `expected` are the seat's slots as `Debug` shows them (the slot type is
    /// private to the shard).
    #[error("seat {seat} is {actual}, expected {expected}")]
    SeatSlotMismatch { seat: String, actual: String, expected: String },
    #[error("section {section} of {event_id}: {taken_slots} seats taken, {counted} counted")]
    TakenSeatsMismatch { event_id: EventId, section: usize, taken_slots: u32, counted: u32 },
    #[error(
        "section {section} of {event_id}: counters held {held} sold {sold}, recount {held_recount} {sold_recount}"
    )]
    CountersMismatch { event_id: EventId, section: usize, held: u32, sold: u32, held_recount: u32, sold_recount: u32 },
    #[error("section {section} of {event_id} is over capacity")]
    OverCapacity { event_id: EventId, section: usize },
    /// Users whose count is zero are left out of `counted`.
    #[error("per-user counts of {event_id} are {counted:?}, recount {recount:?}")]
    PerUserMismatch { event_id: EventId, counted: BTreeMap<UserId, u32>, recount: BTreeMap<UserId, u32> },
    /// The seats each user has in active holds, as stored and as the holds say.
    #[error("held seats per user of {event_id} are {counted:?}, recount {recount:?}")]
    HeldByUserMismatch { event_id: EventId, counted: BTreeMap<UserId, u32>, recount: BTreeMap<UserId, u32> },
}

/// What one event's live holds and orders say its inventory is.
struct Recount<'a> {
    /// Admissions held, by section.
    held: Vec<u32>,
    /// Admissions sold, by section.
    sold: Vec<u32>,
    per_user: BTreeMap<&'a UserId, u32>,
    /// Seats in active holds, by user.
    held_by_user: BTreeMap<&'a UserId, u32>,
}

impl ShardState {
    /// Recounts the inventory from the seat slots, holds and orders, and compares.
    pub(crate) fn check_invariants(&self, now_ms: i64) -> Result<(), InvariantViolation> {
        for (event_id, event) in &self.events {
            let recount = self.recount(event_id, event, now_ms)?;
            check_sections(event_id, event, &recount)?;
            check_per_user(event_id, event, &recount.per_user)?;
            check_held_by_user(event_id, event, &recount.held_by_user)?;
        }
        self.check_retention()?;
        self.check_pending_index()?;
        self.check_deadlines()
    }

    /// `pending_by_hold` names no order that is not pending (each pending one is checked by
    /// `recount`, and is there).
    fn check_pending_index(&self) -> Result<(), InvariantViolation> {
        for (hold_seq, order_seq) in &self.pending_by_hold {
            let pending = |o: &OrderRec| o.status == OrderStatus::PendingPayment && o.hold == *hold_seq;
            if !self.orders.get(order_seq).is_some_and(pending) {
                let (order_seq, hold_seq) = (*order_seq, *hold_seq);
                return Err(InvariantViolation::PendingOrderWithoutHold { order_seq, hold_seq });
            }
        }
        Ok(())
    }

    /// Counts the admissions of the event's active holds and live orders, checking on the way
    /// that each of their seats is in the slot they imply. A checked-out hold's admissions are
    /// its order's, counted from the order, which outlives it.
    fn recount<'a>(
        &'a self,
        event_id: &EventId,
        event: &EventState,
        now_ms: i64,
    ) -> Result<Recount<'a>, InvariantViolation> {
        let sections = event.sections.len();
        let mut recount = Recount {
            held: vec![0u32; sections],
            sold: vec![0u32; sections],
            per_user: BTreeMap::new(),
            held_by_user: BTreeMap::new(),
        };
        for (seq, hold) in self.holds.iter().filter(|(_, h)| &h.event_id == event_id) {
            match hold.status {
                HoldStatus::Active if hold.expires_at_ms <= now_ms => {
                    return Err(InvariantViolation::ActiveHoldPastExpiry { hold_seq: *seq });
                }
                HoldStatus::Active => {
                    *recount.held_by_user.entry(&hold.user).or_insert(0) += hold.taken.count();
                    recount.add(event, &hold.user, &hold.taken, Slot::Held(*seq))?
                }
                HoldStatus::CheckedOut => self.check_checked_out(*seq, hold)?,
                HoldStatus::Released | HoldStatus::Expired => {}
            }
        }
        for (seq, order) in self.orders.iter().filter(|(_, o)| &o.event_id == event_id) {
            let slot = match order.status {
                OrderStatus::PendingPayment => {
                    if self.pending_by_hold.get(&order.hold) != Some(seq) {
                        let (order_seq, hold_seq) = (*seq, order.hold);
                        return Err(InvariantViolation::PendingOrderWithoutHold { order_seq, hold_seq });
                    }
                    Slot::Held(order.hold)
                }
                OrderStatus::Confirmed => Slot::Sold(*seq),
                OrderStatus::PaymentFailed | OrderStatus::Cancelled => continue,
            };
            recount.add(event, &order.user, &order.taken, slot)?;
        }
        Ok(recount)
    }

    /// A retained checked-out hold names its order, and the order names it back and took the
    /// same admissions for the same user.
    fn check_checked_out(&self, seq: u64, hold: &HoldRec) -> Result<(), InvariantViolation> {
        let order_seq = hold.order.ok_or(InvariantViolation::CheckedOutHoldWithoutOrder { hold_seq: seq })?;
        let agrees =
            |o: &OrderRec| o.hold == seq && o.event_id == hold.event_id && o.user == hold.user && o.taken == hold.taken;
        if !self.orders.get(&order_seq).is_some_and(agrees) {
            return Err(InvariantViolation::OrderHoldMismatch { order_seq, hold_seq: seq });
        }
        Ok(())
    }

    /// Every ended hold in memory is due to leave it exactly `HOLD_RETENTION_MS` after it ended,
    /// and nothing else is.
    fn check_retention(&self) -> Result<(), InvariantViolation> {
        let mut ended = 0;
        for (seq, hold) in &self.holds {
            let scheduled = match (hold.status, hold.ended_at_ms) {
                (HoldStatus::Active, None) => true,
                (HoldStatus::Active, Some(_)) | (_, None) => false,
                (_, Some(at)) => {
                    ended += 1;
                    self.dropping.contains(&(at + HOLD_RETENTION_MS, *seq))
                }
            };
            if !scheduled {
                return Err(InvariantViolation::RetentionMismatch { hold_seq: *seq });
            }
        }
        if ended != self.dropping.len() {
            // Each ended hold's entry is there, so another entry is one of no ended hold.
            let due = |seq: &u64| {
                let hold = self.holds.get(seq).filter(|h| h.status != HoldStatus::Active)?;
                hold.ended_at_ms.map(|at| at + HOLD_RETENTION_MS)
            };
            let stray = self.dropping.iter().find(|(at, seq)| due(seq) != Some(*at));
            let (_, hold_seq) = stray.expect("more scheduled than ended holds");
            return Err(InvariantViolation::RetentionMismatch { hold_seq: *hold_seq });
        }
        Ok(())
    }

    /// Every active hold has its expiry and every pending order its payment deadline, and each
    /// deadline belongs to one of them.
    fn check_deadlines(&self) -> Result<(), InvariantViolation> {
        let mismatch =
            |deadline: &(i64, Deadline)| InvariantViolation::DeadlineMismatch { deadline: format!("{deadline:?}") };
        let mut live = 0;
        for (seq, hold) in self.holds.iter().filter(|(_, h)| h.status == HoldStatus::Active) {
            let deadline = (hold.expires_at_ms, Deadline::Hold(*seq));
            if !self.deadlines.contains(&deadline) {
                return Err(mismatch(&deadline));
            }
            live += 1;
        }
        for (seq, order) in self.orders.iter().filter(|(_, o)| o.status == OrderStatus::PendingPayment) {
            let deadline = (order.payment_deadline_ms, Deadline::Payment(*seq));
            if !self.deadlines.contains(&deadline) {
                return Err(mismatch(&deadline));
            }
            live += 1;
        }
        if live != self.deadlines.len() {
            let stray = self.deadlines.iter().find(|(t, d)| match d {
                Deadline::Hold(seq) => {
                    self.holds.get(seq).is_none_or(|h| (h.status, h.expires_at_ms) != (HoldStatus::Active, *t))
                }
                Deadline::Payment(seq) => self
                    .orders
                    .get(seq)
                    .is_none_or(|o| (o.status, o.payment_deadline_ms) != (OrderStatus::PendingPayment, *t)),
            });
            return Err(mismatch(stray.expect("more deadlines than live holds and orders")));
        }
        Ok(())
    }
}

impl<'a> Recount<'a> {
    /// Counts a live hold's or order's admissions as `slot` says (held or sold), checking each of
    /// its seats is in `slot`.
    fn add(
        &mut self,
        event: &EventState,
        user: &'a UserId,
        taken: &Taken,
        slot: Slot,
    ) -> Result<(), InvariantViolation> {
        *self.per_user.entry(user).or_insert(0) += taken.count();
        let counts = if matches!(slot, Slot::Held(_)) { &mut self.held } else { &mut self.sold };
        match taken {
            Taken::Seats(seats) => {
                for s in seats {
                    let actual = event.sections[s.section as usize].rows[s.row as usize][s.number as usize - 1];
                    if actual != slot {
                        return Err(InvariantViolation::SeatSlotMismatch {
                            seat: seat_id(&event.spec, *s),
                            actual: format!("{actual:?}"),
                            expected: format!("{slot:?}"),
                        });
                    }
                    counts[s.section as usize] += 1;
                }
            }
            Taken::General { section, quantity } => counts[*section as usize] += quantity,
        }
        Ok(())
    }
}

/// Each section's counters match the recount (a seated section's taken slots too) and stay
/// within its capacity.
fn check_sections(event_id: &EventId, event: &EventState, recount: &Recount<'_>) -> Result<(), InvariantViolation> {
    for (i, inv) in event.sections.iter().enumerate() {
        let (held, sold) = (recount.held[i], recount.sold[i]);
        let taken_slots = inv.rows.iter().flatten().filter(|s| **s != Slot::Free).count() as u32;
        if !inv.rows.is_empty() && taken_slots != held + sold {
            let counted = held + sold;
            return Err(InvariantViolation::TakenSeatsMismatch {
                event_id: event_id.clone(),
                section: i,
                taken_slots,
                counted,
            });
        }
        if inv.held != held || inv.sold != sold {
            return Err(InvariantViolation::CountersMismatch {
                event_id: event_id.clone(),
                section: i,
                held: inv.held,
                sold: inv.sold,
                held_recount: held,
                sold_recount: sold,
            });
        }
        if inv.held + inv.sold > inv.capacity {
            return Err(InvariantViolation::OverCapacity { event_id: event_id.clone(), section: i });
        }
    }
    Ok(())
}

/// The event's per-user counts (users at zero aside) match the recount.
fn check_per_user(
    event_id: &EventId,
    event: &EventState,
    recount: &BTreeMap<&UserId, u32>,
) -> Result<(), InvariantViolation> {
    let counted: BTreeMap<&UserId, u32> =
        event.per_user.iter().filter(|(_, n)| **n > 0).map(|(u, n)| (u, *n)).collect();
    if counted != *recount {
        let owned = |m: &BTreeMap<&UserId, u32>| m.iter().map(|(u, n)| ((*u).clone(), *n)).collect();
        return Err(InvariantViolation::PerUserMismatch {
            event_id: event_id.clone(),
            counted: owned(&counted),
            recount: owned(recount),
        });
    }
    Ok(())
}

/// The event's held seats per user (users at zero aside) match the active holds.
fn check_held_by_user(
    event_id: &EventId,
    event: &EventState,
    recount: &BTreeMap<&UserId, u32>,
) -> Result<(), InvariantViolation> {
    let counted: BTreeMap<&UserId, u32> =
        event.held_by_user.iter().filter(|(_, n)| **n > 0).map(|(u, n)| (u, *n)).collect();
    if counted != *recount {
        let owned = |m: &BTreeMap<&UserId, u32>| m.iter().map(|(u, n)| ((*u).clone(), *n)).collect();
        return Err(InvariantViolation::HeldByUserMismatch {
            event_id: event_id.clone(),
            counted: owned(&counted),
            recount: owned(recount),
        });
    }
    Ok(())
}
