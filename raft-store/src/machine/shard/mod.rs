//! One shard's events, seat inventory, holds and orders.
//!
//! Rules (DESIGN.md, "The booking state machine"):
//! - a hold takes all its seats or nothing, and says which seats were unavailable;
//! - every command first expires the holds and unpaid orders that are due at its time, so a hold
//!   past `expires_at` is free the moment any command sees it;
//! - per-user limits, on-sale windows and sold-out checks are decided here, not in the api;
//! - every change to the inventory is recorded with its log index for the change feed.
//!
//! Modules, each building only on those listed before it (no cycles):
//! - `state`: the records and the lookups every command shares;
//! - `inventory`: seat ids, selections, prices and the moves of seats and quantities;
//! - `changes`: the change feed, written by commands and read in pages;
//! - `views`: the views reads and outcomes answer with, and which holds have lapsed at a read;
//! - `reads`: queries and listings;
//! - `events`: creating and updating events, and their waiting rooms;
//! - `holds`: judging, taking, releasing and ending holds;
//! - `orders`: checkout, payment results and cancellation;
//! - `invariants`: the recount that tests and simulations run between commands.
//!
//! This file ties them together: the command dispatch and the expiry that precedes every command.

mod changes;
mod events;
mod holds;
mod invariants;
mod inventory;
mod orders;
mod reads;
mod state;
mod views;

pub(crate) use holds::HoldAsk;
pub use invariants::InvariantViolation;
pub use state::ShardState;
use state::{refused, Deadline};

use crate::command::{Command, Outcome, Refusal};
use crate::machine::ctx::Ctx;
use crate::model::HoldStatus;

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
}
