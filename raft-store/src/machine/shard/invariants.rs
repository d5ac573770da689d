//! The shard's invariants, recounted from scratch: every event's counters, seat slots and per-user
//! counts must agree with what its live holds and orders say. Quadratic in the holds of an event:
//! for tests and simulations between commands, never for apply.

use std::collections::BTreeMap;

use super::inventory::seat_id;
use super::state::{EventState, HoldRec, ShardState, Slot, Taken};
use crate::ids::{EventId, UserId};
use crate::model::{HoldStatus, OrderStatus};

/// A broken invariant of a shard's bookkeeping: a bug in apply, never a business refusal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    #[error("hold {hold_seq} is active past its expiry")]
    ActiveHoldPastExpiry { hold_seq: u64 },
    #[error("checked-out hold without order")]
    CheckedOutHoldWithoutOrder { hold_seq: u64 },
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
}

/// What one event's live holds and orders say its inventory is.
struct Recount<'a> {
    /// Admissions held, by section.
    held: Vec<u32>,
    /// Admissions sold, by section.
    sold: Vec<u32>,
    per_user: BTreeMap<&'a UserId, u32>,
}

impl ShardState {
    /// Recounts the inventory from the seat slots, holds and orders, and compares.
    pub(crate) fn check_invariants(&self, now_ms: i64) -> Result<(), InvariantViolation> {
        for (event_id, event) in &self.events {
            let recount = self.recount(event_id, event, now_ms)?;
            check_sections(event_id, event, &recount)?;
            check_per_user(event_id, event, &recount.per_user)?;
        }
        Ok(())
    }

    /// Counts the admissions of the event's live holds and orders, checking on the way that each
    /// of their seats is in the slot they imply.
    fn recount<'a>(
        &'a self,
        event_id: &EventId,
        event: &EventState,
        now_ms: i64,
    ) -> Result<Recount<'a>, InvariantViolation> {
        let sections = event.sections.len();
        let mut recount = Recount { held: vec![0u32; sections], sold: vec![0u32; sections], per_user: BTreeMap::new() };
        for (seq, hold) in self.holds.iter().filter(|(_, h)| &h.event_id == event_id) {
            let Some(slot) = self.live_slot(*seq, hold, now_ms)? else { continue };
            recount.add(event, hold, slot)?;
        }
        Ok(recount)
    }

    /// The slot the hold `seq`'s seats must be in while it occupies them: held by an active hold
    /// or by an order awaiting payment, sold to a confirmed order. `None`: it occupies nothing.
    fn live_slot(&self, seq: u64, hold: &HoldRec, now_ms: i64) -> Result<Option<Slot>, InvariantViolation> {
        match hold.status {
            HoldStatus::Active => {
                if hold.expires_at_ms <= now_ms {
                    return Err(InvariantViolation::ActiveHoldPastExpiry { hold_seq: seq });
                }
                Ok(Some(Slot::Held(seq)))
            }
            HoldStatus::CheckedOut => {
                let order_seq = hold.order.ok_or(InvariantViolation::CheckedOutHoldWithoutOrder { hold_seq: seq })?;
                Ok(match self.orders[&order_seq].status {
                    OrderStatus::PendingPayment => Some(Slot::Held(seq)),
                    OrderStatus::Confirmed => Some(Slot::Sold(order_seq)),
                    _ => None,
                })
            }
            _ => Ok(None),
        }
    }
}

impl<'a> Recount<'a> {
    /// Counts a live hold's admissions as `slot` says (held or sold), checking each of its seats
    /// is in `slot`.
    fn add(&mut self, event: &EventState, hold: &'a HoldRec, slot: Slot) -> Result<(), InvariantViolation> {
        *self.per_user.entry(&hold.user).or_insert(0) += hold.taken.count();
        let counts = if matches!(slot, Slot::Held(_)) { &mut self.held } else { &mut self.sold };
        match &hold.taken {
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
