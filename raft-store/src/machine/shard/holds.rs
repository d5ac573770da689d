//! Holds: judging whether a hold may take its seats, taking them, releasing them, and ending a
//! hold (released or expired). A hold takes all its seats or nothing, and a refusal names the
//! seats that were unavailable. An ended hold leaves memory for the cold store in the apply that
//! ends it (`retire_hold`).

use super::inventory::{occupy, price_of, resolve_selection, seat_id, taken_change, uncount_user, unhold_user, vacate};
use super::places::end_place;
use super::state::{
    ended_hold_key, ended_hold_record, refused, ColdAt, Deadline, EventState, HoldRec, SeatRef, ShardState, Slot, Taken,
};
use crate::cold::{ColdError, ColdRead, ColdWrites};
use crate::command::{AccessPass, Command, Outcome, Refusal, Selection};
use crate::ids::{EventId, HoldId, UserId};
use crate::limits::{HOLD_TTL_MS_MAX, HOLD_TTL_MS_MIN};
use crate::machine::ctx::Ctx;
use crate::model::{EventSpec, HoldStatus, SeatStatus};

/// A hold as apply sees it, for the checks it must pass.
#[derive(Clone, Copy)]
pub(crate) struct HoldAsk<'a> {
    pub event_id: &'a EventId,
    pub user: &'a UserId,
    pub selection: &'a Selection,
    pub ttl_ms: i64,
    pub access: Option<&'a AccessPass>,
    /// The cap on the user's seats in active holds of the event; `None`: none.
    pub held_seats_max: Option<u32>,
}

impl<'a> HoldAsk<'a> {
    /// The hold a command asks for, if it is one: a format-2 hold has no cap.
    pub(crate) fn of(command: &'a Command) -> Option<HoldAsk<'a>> {
        match command {
            Command::Hold { event_id, user, selection, ttl_ms, access, held_seats_max } => Some(HoldAsk {
                event_id,
                user,
                selection,
                ttl_ms: *ttl_ms,
                access: access.as_ref(),
                held_seats_max: *held_seats_max,
            }),
            Command::HoldUncapped { event_id, user, selection, ttl_ms, access } => Some(HoldAsk {
                event_id,
                user,
                selection,
                ttl_ms: *ttl_ms,
                access: access.as_ref(),
                held_seats_max: None,
            }),
            _ => None,
        }
    }
}

/// Whether what is due at the time of a check has been expired already.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// In apply: every command first expires what is due.
    Done,
    /// Outside apply: holds and orders past their time still occupy their slots.
    Pending,
}

impl ShardState {
    /// Takes the seats of a hold that passes every rule. A waiting-room pass it redeems ends
    /// its holder's place in the queue (a record in `writes`).
    pub(super) fn hold(&mut self, ctx: Ctx, hold: &HoldAsk<'_>, writes: &mut ColdWrites) -> Result<Outcome, ColdError> {
        // Apply has expired everything due at `ctx.now_ms` already.
        let taken = match self.judge_hold(ctx.now_ms, hold, Expiry::Done) {
            Ok(taken) => taken,
            Err(refusal) => return Ok(refused(refusal)),
        };
        let HoldAsk { event_id, user, ttl_ms, access, .. } = *hold;
        let spec = &self.events[event_id].spec;
        let requested = taken.count();
        let total = price_of(spec, &taken);
        let seq = self.next_seq;
        self.next_seq += 1;
        let event = self.events.get_mut(event_id).expect("checked above");
        occupy(event, &taken, Slot::Held(seq));
        *event.per_user.entry(user.clone()).or_insert(0) += requested;
        *event.held_by_user.entry(user.clone()).or_insert(0) += requested;
        if let (true, Some(pass)) = (event.spec.high_traffic, access) {
            event.queue.redeem(pass, ctx.now_ms);
            end_place(writes, ctx, event_id, user, event.spec.starts_at_ms)?;
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
        Ok(Outcome::Hold(self.hold_view(seq, &self.holds[&seq], ctx.now_ms)))
    }

    /// The refusal apply would give this hold if it were the next command at `now_ms`, judged
    /// without changing anything; `None` when it would succeed or when only apply can tell. Holds
    /// and unpaid orders past their time count as free here, as apply would expire them first; a
    /// per-user limit is left to apply, whose counts drop when it expires them. The held-seat cap
    /// is judged exactly: its count leaves out the user's holds that apply would expire first.
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
        let HoldAsk { event_id, user, selection, ttl_ms, access, held_seats_max } = *hold;
        check_ttl(ttl_ms)?;
        let Some(event) = self.events.get(event_id) else {
            return Err(Refusal::not_found(format!("event {event_id}")));
        };
        let taken = resolve_selection(&event.spec, selection)?;
        check_on_sale(&event.spec, now_ms)?;
        check_access(event, access, now_ms)?;
        check_user_limit(event, user, taken.count())?;
        if let Some(limit) = held_seats_max {
            self.check_held_seats(event_id, event, user, taken.count(), limit, now_ms, expiry)?;
        }
        if availability_checked() {
            self.check_available(event_id, event, &taken, now_ms, expiry)?;
        }
        Ok(taken)
    }

    /// The user's seats in active holds of the event, with `requested` more, stay within
    /// `limit`. With `Expiry::Pending`, the user's holds due at `now_ms` do not count: apply
    /// expires them before it judges. The stored count is an upper bound, so the holds are
    /// looked at only when it is over.
    #[allow(clippy::too_many_arguments)]
    fn check_held_seats(
        &self,
        event_id: &EventId,
        event: &EventState,
        user: &UserId,
        requested: u32,
        limit: u32,
        now_ms: i64,
        expiry: Expiry,
    ) -> Result<(), Refusal> {
        let stored = event.held_by_user.get(user).copied().unwrap_or(0);
        if stored + requested <= limit {
            return Ok(());
        }
        let current = match expiry {
            Expiry::Done => stored,
            Expiry::Pending => stored.saturating_sub(self.lapsed_held_by(event_id, user, now_ms)),
        };
        if current + requested > limit {
            return Err(Refusal::HeldSeatsExceeded { limit, current, requested });
        }
        Ok(())
    }

    /// All of `taken` is free at `now_ms`: every seat, or the whole quantity of the section.
    fn check_available(
        &self,
        event_id: &EventId,
        event: &EventState,
        taken: &Taken,
        now_ms: i64,
        expiry: Expiry,
    ) -> Result<(), Refusal> {
        match taken {
            Taken::Seats(seats) => {
                let unavailable = self.unavailable_seats(event, seats, now_ms, expiry);
                if !unavailable.is_empty() {
                    return Err(Refusal::SeatsUnavailable { seats: unavailable });
                }
            }
            Taken::General { section, quantity } => {
                let lapsed = self.lapsed_in_section(event_id, *section, now_ms, expiry);
                let available = event.sections[*section as usize].available() + lapsed;
                if available < *quantity {
                    let section = event.spec.venue.sections[*section as usize].id.clone();
                    return Err(Refusal::SoldOut { section, available });
                }
            }
        }
        Ok(())
    }

    /// The ids of the seats among `seats` that are not free at `now_ms`, in the order asked.
    fn unavailable_seats(&self, event: &EventState, seats: &[SeatRef], now_ms: i64, expiry: Expiry) -> Vec<String> {
        seats
            .iter()
            .filter(|s| {
                let slot = event.sections[s.section as usize].rows[s.row as usize][s.number as usize - 1];
                !self.is_free(slot, now_ms, expiry)
            })
            .map(|s| seat_id(&event.spec, *s))
            .collect()
    }

    /// Whether a seat's slot counts as free; before expiry, a lapsed hold's seat does.
    fn is_free(&self, slot: Slot, now_ms: i64, expiry: Expiry) -> bool {
        match (slot, expiry) {
            (Slot::Free, _) => true,
            (Slot::Held(seq), Expiry::Pending) => self.lapsed(seq, now_ms),
            _ => false,
        }
    }

    /// Admissions of `section` counted as held that apply would free before this hold: none once
    /// expiry is done.
    fn lapsed_in_section(&self, event_id: &EventId, section: u16, now_ms: i64, expiry: Expiry) -> u32 {
        match expiry {
            Expiry::Done => 0,
            Expiry::Pending => self.lapsed_by_section(event_id, now_ms).get(&(section as usize)).copied().unwrap_or(0),
        }
    }

    pub(super) fn release(
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
        Ok(match hold.status {
            HoldStatus::Active => {
                let ended = self.end_hold(ctx, hold_id.seq, HoldStatus::Released, writes)?;
                Outcome::Hold(self.hold_view(hold_id.seq, &ended, ctx.now_ms))
            }
            HoldStatus::Released | HoldStatus::Expired => Outcome::Hold(self.hold_view(hold_id.seq, &hold, ctx.now_ms)),
            HoldStatus::CheckedOut => refused(Refusal::HoldNotActive { status: HoldStatus::CheckedOut }),
        })
    }

    /// Ends an active hold (released or expired): its seats are free again, and it leaves memory
    /// for the cold store. Returns the hold as it ended.
    pub(super) fn end_hold(
        &mut self,
        ctx: Ctx,
        seq: u64,
        status: HoldStatus,
        writes: &mut ColdWrites,
    ) -> Result<HoldRec, ColdError> {
        let mut hold = self.holds.remove(&seq).expect("caller checked");
        assert_eq!(hold.status, HoldStatus::Active);
        hold.status = status;
        // An expired hold stopped owning its seats at its expiry, not when a command noticed.
        let ended_at_ms = if status == HoldStatus::Expired { hold.expires_at_ms } else { ctx.now_ms };
        hold.ended_at_ms = Some(ended_at_ms);
        self.deadlines.remove(&(hold.expires_at_ms, Deadline::Hold(seq)));
        let event = self.events.get_mut(&hold.event_id).expect("a hold's event exists");
        vacate(event, &hold.taken, Slot::Held(seq));
        uncount_user(event, &hold.user, hold.taken.count());
        unhold_user(event, &hold.user, hold.taken.count());
        let change = taken_change(event, &hold.taken, SeatStatus::Available);
        self.record(ctx, &hold.event_id, change);
        retire_hold(ctx, seq, &hold, writes)?;
        Ok(hold)
    }
}

/// Writes a hold that ended at `ctx` (out of memory already) to the cold store, where it answers
/// reads and repeated releases and checkouts with its final status until `HOLD_RETENTION_MS`
/// after it ended; then it reads as unknown.
pub(super) fn retire_hold(ctx: Ctx, seq: u64, hold: &HoldRec, writes: &mut ColdWrites) -> Result<(), ColdError> {
    if let Some(record) = ended_hold_record(ctx.index, ctx.now_ms, hold)? {
        writes.put(ended_hold_key(&hold.event_id, seq), record);
    }
    Ok(())
}

fn check_ttl(ttl_ms: i64) -> Result<(), Refusal> {
    if !(HOLD_TTL_MS_MIN..=HOLD_TTL_MS_MAX).contains(&ttl_ms) {
        return Err(Refusal::Invalid { detail: format!("hold ttl must be {HOLD_TTL_MS_MIN}..={HOLD_TTL_MS_MAX} ms") });
    }
    Ok(())
}

/// From the sale's opening until the event starts.
fn check_on_sale(spec: &EventSpec, now_ms: i64) -> Result<(), Refusal> {
    if now_ms < spec.on_sale_at_ms || now_ms >= spec.starts_at_ms {
        return Err(Refusal::NotOnSale { on_sale_at_ms: spec.on_sale_at_ms, starts_at_ms: spec.starts_at_ms });
    }
    Ok(())
}

/// A high-traffic event is held only with an unexpired waiting-room pass not used before.
fn check_access(event: &EventState, access: Option<&AccessPass>, now_ms: i64) -> Result<(), Refusal> {
    if !event.spec.high_traffic {
        return Ok(());
    }
    match access {
        Some(pass) if pass.expires_at_ms > now_ms => {
            if event.queue.is_redeemed(pass) {
                return Err(Refusal::AccessUsed);
            }
            Ok(())
        }
        _ => Err(Refusal::QueueRequired),
    }
}

/// The user's admissions in active holds and live orders stay within the event's limit.
fn check_user_limit(event: &EventState, user: &UserId, requested: u32) -> Result<(), Refusal> {
    let Some(limit) = event.spec.per_user_limit else { return Ok(()) };
    let current = event.per_user.get(user).copied().unwrap_or(0);
    if current + requested > limit {
        return Err(Refusal::LimitExceeded { limit, current, requested });
    }
    Ok(())
}

/// Whether holds check that their seats are free: the simulation can plant a bug that skips it,
/// to show that its checks catch a double sale.
#[cfg(madsim)]
fn availability_checked() -> bool {
    !crate::planted::is_planted(crate::planted::Bug::SkipAvailabilityCheck)
}

#[cfg(not(madsim))]
fn availability_checked() -> bool {
    true
}
