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
//! - `tickets`: admission at the door and transfers, kept in the cold store;
//! - `reads`: queries and listings;
//! - `events`: creating and updating events, and their waiting rooms;
//! - `places`: each user's one place in a waiting room, kept in the cold store;
//! - `prices`: what dynamic pricing reads of the shard, and how it sets a price;
//! - `holds`: judging, taking, releasing and ending holds;
//! - `orders`: checkout, payment results and cancellation;
//! - `invariants`: the recount that tests and simulations run between commands.
//!
//! This file ties them together: the command dispatch and the expiry that precedes every command,
//! which also drops the ended holds an older state keeps in memory once their retention has passed
//! (ended holds now go to the cold store as they end: `state`, `holds`).

mod archive;
mod changes;
mod events;
mod holds;
mod invariants;
mod inventory;
mod orders;
mod places;
mod prices;
mod reads;
mod state;
mod tickets;
mod views;

pub(crate) use holds::HoldAsk;
pub use invariants::InvariantViolation;
pub use state::ShardState;
use state::{refused, Deadline};

use crate::cold::{ColdError, ColdRead, ColdWrites, WithPending};
use crate::command::{Command, Outcome, Refusal};
use crate::limits::{HOLD_DROPS_PER_COMMAND_MAX, HOLD_DROPS_PER_EXPIRE_MAX};
use crate::machine::ctx::Ctx;
use crate::machine::MachineRecords;
use crate::model::{HoldStatus, OrderStatus};

impl ShardState {
    /// Applies a command; the caller has already expired what is due at `ctx.now_ms`. `cold` is
    /// the shard's cold store as the entries before this one left it, and `writes` what this
    /// entry wrote so far, which this command adds to (a hold that redeems a waiting-room pass,
    /// a join). (`Archive` goes to [`ShardState::archive`].)
    pub(crate) fn apply(
        &mut self,
        ctx: Ctx,
        command: &Command,
        cold: &dyn ColdRead,
        writes: &mut ColdWrites,
    ) -> Result<Outcome, ColdError> {
        Ok(match command {
            Command::CreateEvent(spec) => self.create_event(ctx, spec),
            Command::UpdateEvent { event_id, patch } => self.update_event(ctx, event_id, patch),
            Command::Hold { .. } | Command::HoldUncapped { .. } => match HoldAsk::of(command) {
                Some(hold) => self.hold(ctx, &hold, writes)?,
                // Both variants are holds; a command that is not cannot get here.
                None => refused(Refusal::Invalid { detail: "not a hold".into() }),
            },
            Command::JoinQueue { event_id, joins } => self.join_queue(ctx, event_id, joins, cold, writes)?,
            Command::ReleaseHold { hold_id, user } => self.release(ctx, hold_id, user, cold, writes)?,
            Command::Checkout { hold_id, user } => self.checkout(ctx, hold_id, user, cold, writes)?,
            Command::PaymentResult { order_id, approved, reference } => {
                self.payment_result(ctx, order_id, *approved, reference, &WithPending { store: cold, pending: writes })?
            }
            Command::CancelOrder { order_id, actor } => self.cancel(ctx, order_id, actor, cold, writes)?,
            Command::Expire => Outcome::Expired { holds: 0, orders: 0 },
            Command::Archive { .. } => Outcome::Archived { orders: 0, events: 0 },
            Command::LeaseQueueBlock { event_id, size, unused } => {
                self.lease_queue_block(ctx, event_id, *size, *unused)
            }
            Command::AdvanceQueue { event_id, to } => self.advance_queue(ctx, event_id, *to),
            Command::CheckIn { ticket_id, version, holder } => {
                self.check_in(ctx, ticket_id, *version, holder, cold, writes)?
            }
            Command::TransferTicket { ticket_id, from, to } => self.transfer(ctx, ticket_id, from, to, cold, writes)?,
            // Priced by the machine, which keeps the rules (`machine/pricing.rs`).
            Command::SetPricing { .. } => refused(Refusal::WrongGroup),
            // The meta group keeps the webhook endpoints (`machine/webhooks.rs`).
            Command::RegisterWebhook { .. } | Command::DeleteWebhook { .. } => refused(Refusal::WrongGroup),
            Command::CreateVenue(_)
            | Command::InitLayout { .. }
            | Command::AddNode { .. }
            | Command::DrainNode { .. }
            | Command::SetPlacement { .. }
            | Command::ForgetNode { .. } => refused(Refusal::WrongGroup),
        })
    }

    /// The earliest time something is due: a hold's expiry, an order's payment deadline, or an
    /// ended hold's leaving memory (a state from before ended holds went to the cold store).
    pub(crate) fn next_deadline_ms(&self) -> Option<i64> {
        let expiry = self.deadlines.get_min().map(|(t, _)| *t);
        let drop = self.dropping.get_min().map(|(t, _)| *t);
        expiry.into_iter().chain(drop).min()
    }

    /// How many ended holds past their retention the commands of one entry may drop: each command
    /// a few, the leader's periodic `Expire` many (it runs when nothing else does).
    pub(crate) fn drops_allowed<'a>(commands: impl Iterator<Item = &'a Command>) -> usize {
        commands
            .map(|c| match c {
                Command::Expire => HOLD_DROPS_PER_EXPIRE_MAX,
                _ => HOLD_DROPS_PER_COMMAND_MAX,
            })
            .sum()
    }

    /// Expires every hold and unpaid order due at `ctx.now_ms` (an expired hold goes to the cold
    /// store, in `writes`), then drops at most `drops_max` ended holds still in memory whose
    /// retention has passed. Returns how many holds and orders expired.
    ///
    /// Expiry is not bounded: what is due must be free before the command is judged. Dropping is:
    /// nothing waits on it, so a backlog (a flash sale's holds, an hour on) drains a bounded step
    /// per command instead of stalling one. It drains: every hold is made by one command, each
    /// command may drop `HOLD_DROPS_PER_COMMAND_MAX` (more than one), and while drops are due the
    /// leader proposes `Expire` (see `next_deadline_ms`), which drops `HOLD_DROPS_PER_EXPIRE_MAX`.
    pub(crate) fn expire_due(
        &mut self,
        ctx: Ctx,
        drops_max: usize,
        writes: &mut ColdWrites,
    ) -> Result<(u32, u32), ColdError> {
        let expired = self.expire_deadlines(ctx, writes)?;
        self.drop_ended_holds(ctx.now_ms, drops_max);
        Ok(expired)
    }

    fn expire_deadlines(&mut self, ctx: Ctx, writes: &mut ColdWrites) -> Result<(u32, u32), ColdError> {
        let (mut holds, mut orders) = (0, 0);
        while let Some(&(due, deadline)) = self.deadlines.get_min() {
            if due > ctx.now_ms {
                break;
            }
            match deadline {
                Deadline::Hold(seq) => {
                    self.end_hold(ctx, seq, HoldStatus::Expired, writes)?;
                    holds += 1;
                }
                Deadline::Payment(seq) => {
                    self.deadlines.remove(&(due, deadline));
                    self.fail_payment(ctx, seq, None);
                    orders += 1;
                }
            }
        }
        Ok((holds, orders))
    }

    /// Drops at most `max` ended holds still in memory whose retention has passed at `now_ms`,
    /// oldest first: those of a state from before ended holds went to the cold store (none end
    /// here now). A dropped hold reads as unknown; no slot and no order needs it.
    fn drop_ended_holds(&mut self, now_ms: i64, max: usize) {
        for _ in 0..max {
            let Some(&(due, seq)) = self.dropping.get_min() else { break };
            if due > now_ms {
                break;
            }
            self.dropping.remove(&(due, seq));
            let hold = self.holds.remove(&seq).expect("a hold waiting to be dropped exists");
            assert_ne!(hold.status, HoldStatus::Active, "only ended holds are dropped");
            // A pending order's seats are held in its hold's name, so its hold must stay. It
            // does: retention outlasts the payment timeout, and expiry runs before dropping.
            if let Some(order) = hold.order {
                assert_ne!(self.orders[&order].status, OrderStatus::PendingPayment, "hold {seq} dropped too soon");
            }
        }
    }

    /// The records kept in memory, by kind: sizes the collections keep, no scan. Every ended hold
    /// in memory waits in `dropping` (an invariant), so the rest of `holds` are the active ones.
    pub(crate) fn records(&self) -> MachineRecords {
        let ended = self.dropping.len();
        MachineRecords {
            holds_active: self.holds.len().saturating_sub(ended) as u64,
            holds_ended: ended as u64,
            orders: self.orders.len() as u64,
            changes: self.changes.len() as u64,
        }
    }

    /// Puts ended holds read from the cold store (`ENDED_HOLD` records) back in memory, each
    /// waiting in `dropping` for the end of its retention: the state an older node left, for
    /// tests that it still reads and drains.
    #[cfg(test)]
    pub(crate) fn keep_ended_holds_in_memory(&mut self, records: &[(Vec<u8>, crate::cold::ColdRecord)]) {
        for (key, record) in records {
            let seq = u64::from_be_bytes(key[key.len() - 8..].try_into().expect("a seq ends the key"));
            let hold: state::HoldRec = record.decode_body(key).expect("an ended hold");
            let ended_at_ms = hold.ended_at_ms.expect("ended");
            self.dropping.insert((ended_at_ms + crate::limits::HOLD_RETENTION_MS, seq));
            self.holds.insert(seq, hold);
        }
    }

    /// Holds in the state, active and ended, for tests of retention.
    #[cfg(test)]
    pub(crate) fn holds_retained(&self) -> usize {
        self.holds.len()
    }
}
