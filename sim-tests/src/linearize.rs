//! A per-seat linearizability check: do the acknowledged operations on one seat fit one sequential
//! order that respects real time? Seats are independent registers, so each is checked alone,
//! which keeps the search small.
//!
//! Each operation has a window `[invoked, returned]` (true time) and takes effect at one point in
//! it. The search (in the manner of Wing and Gong) picks, among the operations not yet placed,
//! one that could come next — invoked before every remaining required operation returned — and
//! applies it to a model of the seat; it backtracks when the model refuses.
//!
//! The model's seat is free, held by a hold, or sold to an order. Two subtleties:
//! - Expiry: a held seat may go free at any point after its expiry (leader time, so earlier by up
//!   to the clock skew), and must have gone free by its expiry plus three times the skew (reads
//!   allow for the offset between two clocks, twice the skew, and the reader's own skew).
//! - Unknown outcomes (timeouts): such an operation may or may not have taken effect, and is
//!   optional in the search. A later retry that got an answer resolves it.
//! - Payment: a checked-out hold's seats stay held until the provider's result sells or frees
//!   them, or until the order's payment deadline passes (leader time, so the same allowance as a
//!   hold's expiry). The provider's results are operations of their own, sent at any time after the
//!   checkout, each retry of a result another operation.

use std::collections::{BTreeMap, HashSet};

use raft_store::{HoldView, OrderStatus, OrderView, Refusal, SeatStatus, PAYMENT_TIMEOUT_MS};

use crate::cluster::MAX_SKEW_MS;
use crate::history::{Op, OpKind, OpResult};
use crate::workload::HOLD_TTL_MS;

/// Search steps per seat before the check gives up (reported, not failed).
const SEARCH_STEPS_MAX: usize = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Owner {
    /// A hold the history knows (its sequence), or one whose request got no answer (its op).
    Hold(u64),
    Unknown(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Seat {
    Free,
    /// Held until somewhere in `[expires_min, expires_max]` (true time); for a hold whose order
    /// awaits payment, until its payment deadline.
    Held {
        by: Owner,
        expires_min: i64,
        expires_max: i64,
    },
    Sold {
        order: Option<u64>,
    },
}

#[derive(Clone, Debug)]
enum Effect {
    /// A hold took the seat.
    Take {
        by: Owner,
        expires_at_ms: Option<i64>,
    },
    /// A refusal named the seat unavailable.
    Taken,
    /// A refusal did not name the seat: all-or-nothing means it was free.
    Free,
    /// Released (if still held by this hold).
    Release {
        hold: u64,
    },
    /// Checked out: from here the hold awaits its payment, until the order's payment deadline
    /// (leader time). An answer showing the order paid or declined implies this point came
    /// first, perhaps well before the operation.
    CheckedOut {
        hold: u64,
        deadline_ms: i64,
    },
    /// Paid: the order is confirmed.
    Sell {
        hold: u64,
        order: u64,
    },
    /// Payment declined, or its deadline passed: the seat goes back.
    Decline {
        hold: u64,
    },
    /// Checked out with no answer: paid, declined or awaiting payment.
    CheckoutUnknown {
        hold: u64,
    },
    /// Cancelled (if still sold to this order).
    Unsell {
        order: u64,
    },
    Observe(SeatStatus),
}

#[derive(Clone, Debug)]
struct SeatOp {
    invoked_ms: i64,
    /// `i64::MAX` for an operation without an answer.
    returned_ms: i64,
    optional: bool,
    effect: Effect,
    /// Index in the history, for reports.
    index: usize,
}

/// Builds each seat's operations from the history. A retry's answer stands in for an unanswered
/// first attempt (same window start, the retry's end).
fn seat_ops(ops: &[Op], seats: &[String]) -> BTreeMap<String, Vec<SeatOp>> {
    let answered_by_retry = answers_by_retry(ops);
    let mut by_seat: BTreeMap<String, Vec<SeatOp>> = seats.iter().map(|s| (s.clone(), Vec::new())).collect();
    for (index, op) in ops.iter().enumerate() {
        let (returned_ms, result) = settled(op, answered_by_retry.get(&index));
        let returned_ms = if matches!(result, OpResult::Unknown(_)) { i64::MAX } else { returned_ms };
        for SeatEffect { seat, effect, optional } in op_effects(ops, index, &op.kind, result) {
            if let Some(list) = by_seat.get_mut(&seat) {
                list.push(SeatOp { invoked_ms: op.invoked_ms, returned_ms, optional, effect, index });
            }
        }
    }
    for list in by_seat.values_mut() {
        list.sort_by_key(|o| (o.invoked_ms, o.index));
    }
    by_seat
}

/// For each unanswered operation a retry got an answer for: the first such retry's return time
/// and answer.
fn answers_by_retry(ops: &[Op]) -> BTreeMap<usize, (i64, OpResult)> {
    let mut answered_by_retry: BTreeMap<usize, (i64, OpResult)> = BTreeMap::new();
    for op in ops {
        if let OpKind::Retry { of } = op.kind {
            let unanswered = matches!(ops.get(of).map(|o| &o.result), Some(OpResult::Unknown(_)));
            if unanswered && !matches!(op.result, OpResult::Unknown(_)) {
                answered_by_retry.entry(of).or_insert((op.returned_ms, op.result.clone()));
            }
        }
    }
    answered_by_retry
}

/// An operation's return time and answer, a retry's standing in for an unanswered operation's.
fn settled<'a>(op: &'a Op, retry: Option<&'a (i64, OpResult)>) -> (i64, &'a OpResult) {
    match (&op.result, retry) {
        (OpResult::Unknown(_), Some((ret, r))) => (*ret, r),
        (r, _) => (op.returned_ms, r),
    }
}

/// What an operation did to one seat; `optional` when it may not have happened at all.
struct SeatEffect {
    seat: String,
    effect: Effect,
    optional: bool,
}

/// The same effect on each of `seats`.
fn each(seats: &[String], effect: Effect, optional: bool) -> Vec<SeatEffect> {
    seats.iter().map(|seat| SeatEffect { seat: seat.clone(), effect: effect.clone(), optional }).collect()
}

/// What the operation `index` (`kind`, answered `result`) did to each seat it concerns, in the
/// order the search is to consider them.
fn op_effects(ops: &[Op], index: usize, kind: &OpKind, result: &OpResult) -> Vec<SeatEffect> {
    match (kind, result) {
        (OpKind::HoldSeats { seats }, _) => hold_effects(seats, index, result),
        (OpKind::Release { hold }, OpResult::Hold(h)) => each(&h.seats, Effect::Release { hold: hold.seq }, false),
        // A release whose answer was lost may have happened: its seats may be free since.
        (OpKind::Release { hold }, OpResult::Unknown(_)) => {
            each(&hold_seats(ops, hold.seq), Effect::Release { hold: hold.seq }, true)
        }
        (OpKind::Checkout { hold, .. }, OpResult::Order(o)) => checkout_effects(ops, hold.seq, o),
        (OpKind::Checkout { hold, .. }, OpResult::Unknown(_)) => {
            each(&hold_seats(ops, hold.seq), Effect::CheckoutUnknown { hold: hold.seq }, true)
        }
        // The provider's result, answered with the order as it is now.
        (OpKind::Payment { hold, .. }, OpResult::Order(o)) => checkout_effects(ops, hold.seq, o),
        // A result whose answer was lost may have paid or declined the order.
        (OpKind::Payment { hold, order, approved, .. }, OpResult::Unknown(_)) => {
            let effect = if *approved {
                Effect::Sell { hold: hold.seq, order: order.seq }
            } else {
                Effect::Decline { hold: hold.seq }
            };
            each(&hold_seats(ops, hold.seq), effect, true)
        }
        // A cancel whose answer was lost may have happened: its seats may be on sale again.
        (OpKind::Cancel { order }, OpResult::Unknown(_)) => {
            each(&order_seats(ops, order.seq), Effect::Unsell { order: order.seq }, true)
        }
        (OpKind::Cancel { order }, OpResult::Order(o)) if o.status == OrderStatus::Cancelled => {
            let seats: Vec<String> = o.tickets.iter().filter_map(|t| t.seat.clone()).collect();
            each(&seats, Effect::Unsell { order: order.seq }, false)
        }
        (OpKind::ReadSeats, OpResult::Seats(map)) => map
            .seats
            .iter()
            .map(|s| SeatEffect { seat: s.id.clone(), effect: Effect::Observe(s.status), optional: false })
            .collect(),
        _ => Vec::new(),
    }
}

/// A hold of `seats`: taken all, or refused naming the unavailable ones (all-or-nothing: the
/// others were free), or unanswered and perhaps taken.
fn hold_effects(seats: &[String], index: usize, result: &OpResult) -> Vec<SeatEffect> {
    match result {
        OpResult::Hold(h) => {
            each(seats, Effect::Take { by: Owner::Hold(h.hold_id.seq), expires_at_ms: Some(h.expires_at_ms) }, false)
        }
        OpResult::Refused(Refusal::SeatsUnavailable { seats: taken }) => seats
            .iter()
            .map(|s| {
                let effect = if taken.contains(s) { Effect::Taken } else { Effect::Free };
                SeatEffect { seat: s.clone(), effect, optional: false }
            })
            .collect(),
        OpResult::Unknown(_) => each(seats, Effect::Take { by: Owner::Unknown(index), expires_at_ms: None }, true),
        _ => Vec::new(),
    }
}

/// A checkout of the hold `hold`, or a payment result for its order, answered with the order as
/// it is now. A sale or a decline is preceded, on each seat, by the point of checking out.
fn checkout_effects(ops: &[Op], hold: u64, order: &OrderView) -> Vec<SeatEffect> {
    let checked_out = Effect::CheckedOut { hold, deadline_ms: order.payment_deadline_ms };
    let effect = match order.status {
        OrderStatus::Confirmed => Some(Effect::Sell { hold, order: order.order_id.seq }),
        // Answered with the order as it is now: cancelled since, it says nothing about the seat.
        OrderStatus::Cancelled => return Vec::new(),
        OrderStatus::PaymentFailed => Some(Effect::Decline { hold }),
        OrderStatus::PendingPayment => None,
    };
    let mut seats: Vec<String> = order.tickets.iter().filter_map(|t| t.seat.clone()).collect();
    if order.tickets.is_empty() {
        // A declined order has no tickets: its seats are its hold's.
        seats = hold_seats(ops, hold);
    }
    let mut out = Vec::new();
    for seat in seats {
        out.push(SeatEffect { seat: seat.clone(), effect: checked_out.clone(), optional: false });
        if let Some(effect) = &effect {
            out.push(SeatEffect { seat, effect: effect.clone(), optional: false });
        }
    }
    out
}

/// The seats of an order the history saw with tickets.
fn order_seats(ops: &[Op], seq: u64) -> Vec<String> {
    ops.iter()
        .find_map(|op| match &op.result {
            OpResult::Order(o) if o.order_id.seq == seq && !o.tickets.is_empty() => {
                Some(o.tickets.iter().filter_map(|t| t.seat.clone()).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// The seats of a hold the history saw acknowledged.
fn hold_seats(ops: &[Op], seq: u64) -> Vec<String> {
    ops.iter()
        .find_map(|op| match &op.result {
            OpResult::Hold(HoldView { hold_id, seats, .. }) if hold_id.seq == seq => Some(seats.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn held(by: Owner, expires_at_ms: Option<i64>, invoked_ms: i64) -> Seat {
    held_for(by, expires_at_ms, invoked_ms + HOLD_TTL_MS)
}

/// Held until `expires_at_ms` (leader time), or, when that is unknown, not before `earliest_ms`
/// (true time, as the leader's clock would show it at the earliest).
fn held_for(by: Owner, expires_at_ms: Option<i64>, earliest_ms: i64) -> Seat {
    match expires_at_ms {
        // A read shows it expired once the reader's clock, less the offset between clocks (twice
        // the skew), is past `at`: by true time `at` + 3 × skew at the latest.
        Some(at) => Seat::Held { by, expires_min: at - MAX_SKEW_MS, expires_max: at + 3 * MAX_SKEW_MS },
        // Unknown apply time: it cannot have expired before its time from its invocation.
        None => Seat::Held { by, expires_min: earliest_ms - MAX_SKEW_MS, expires_max: i64::MAX },
    }
}

/// The states the seat can be in after `op` takes effect at some point of its window, from `seat`
/// (several when expiry or an unknown outcome leaves a choice). Empty: `op` cannot go here.
fn step(seat: Seat, op: &SeatOp) -> Vec<Seat> {
    // Expiry may happen first if the op's point can be at or after the earliest expiry.
    let mut starts = vec![seat];
    if let Seat::Held { expires_min, .. } = seat {
        if op.returned_ms >= expires_min {
            starts.push(Seat::Free);
        }
    }
    // Past the latest expiry the hold is certainly gone.
    if let Seat::Held { expires_max, .. } = seat {
        if op.invoked_ms > expires_max {
            starts = vec![Seat::Free];
        }
    }
    let mut out = Vec::new();
    for s in starts {
        match (&op.effect, s) {
            (Effect::Take { by, expires_at_ms }, Seat::Free) => out.push(held(*by, *expires_at_ms, op.invoked_ms)),
            (Effect::Take { .. }, _) => {}
            (Effect::Taken, Seat::Free) => {}
            (Effect::Taken, other) => out.push(other),
            (Effect::Free, Seat::Free) => out.push(Seat::Free),
            (Effect::Free, _) => {}
            (Effect::Release { hold }, Seat::Held { by: Owner::Hold(h), .. }) if h == *hold => out.push(Seat::Free),
            (Effect::Release { .. }, other) => out.push(other),
            (Effect::CheckedOut { hold, deadline_ms }, Seat::Held { by: Owner::Hold(h), .. }) if h == *hold => {
                out.push(held_for(Owner::Hold(h), Some(*deadline_ms), 0))
            }
            // Already paid or declined (the other point of the same operation came first), or an
            // answer about an order made before (a second checkout of the hold).
            (Effect::CheckedOut { .. }, other) => out.push(other),
            (Effect::Sell { hold, order }, Seat::Held { by: Owner::Hold(h), .. }) if h == *hold => {
                out.push(Seat::Sold { order: Some(*order) })
            }
            (Effect::Sell { order, .. }, Seat::Sold { order: Some(o) }) if o == *order => out.push(s),
            // A sale whose answer was lost, now named by a later answer.
            (Effect::Sell { order, .. }, Seat::Sold { order: None }) => out.push(Seat::Sold { order: Some(*order) }),
            (Effect::Sell { .. }, _) => {}
            (Effect::Decline { hold }, Seat::Held { by: Owner::Hold(h), .. }) if h == *hold => out.push(Seat::Free),
            (Effect::Decline { .. }, other) => out.push(other),
            (Effect::CheckoutUnknown { hold }, Seat::Held { by: Owner::Hold(h), .. }) if h == *hold => {
                out.push(Seat::Free);
                out.push(Seat::Sold { order: None });
                out.push(held_for(Owner::Hold(h), None, op.invoked_ms + PAYMENT_TIMEOUT_MS));
            }
            (Effect::CheckoutUnknown { .. }, other) => out.push(other),
            (Effect::Unsell { order }, Seat::Sold { order: Some(o) }) if o == *order => out.push(Seat::Free),
            (Effect::Unsell { .. }, Seat::Sold { order: None }) => {
                out.push(Seat::Free);
                out.push(s);
            }
            (Effect::Unsell { .. }, other) => out.push(other),
            (Effect::Observe(SeatStatus::Available), Seat::Free) => out.push(Seat::Free),
            (Effect::Observe(SeatStatus::Held), Seat::Held { .. }) => out.push(s),
            (Effect::Observe(SeatStatus::Sold), Seat::Sold { .. }) => out.push(s),
            (Effect::Observe(_), _) => {}
        }
    }
    out.dedup();
    out
}

pub enum Verdict {
    Linearizable,
    /// No order fits; the operations (history indexes) the search could not get past.
    Violation(Vec<usize>),
    /// The search budget ran out: neither proven nor refuted.
    Inconclusive,
}

/// Checks one seat's operations.
fn check_seat(ops: &[SeatOp]) -> Verdict {
    let words = ops.len().div_ceil(64).max(1);
    let mut seen: HashSet<(Vec<u64>, Seat)> = HashSet::new();
    let mut stack: Vec<(Vec<u64>, Seat)> = vec![(vec![0; words], Seat::Free)];
    let mut steps = 0;
    let mut deepest: (usize, Vec<u64>) = (0, vec![0; words]);
    let placed = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
    while let Some((done, seat)) = stack.pop() {
        steps += 1;
        if steps > SEARCH_STEPS_MAX {
            return Verdict::Inconclusive;
        }
        let remaining_required: Vec<usize> =
            (0..ops.len()).filter(|i| !placed(&done, *i) && !ops[*i].optional).collect();
        if remaining_required.is_empty() {
            return Verdict::Linearizable;
        }
        let count = done.iter().map(|w| w.count_ones() as usize).sum::<usize>();
        if count > deepest.0 {
            deepest = (count, done.clone());
        }
        // The next operation must have been invoked before every remaining required one returned.
        let horizon = remaining_required.iter().map(|i| ops[*i].returned_ms).min().unwrap_or(i64::MAX);
        for i in (0..ops.len()).filter(|i| !placed(&done, *i)) {
            if ops[i].invoked_ms > horizon {
                break;
            }
            for next in step(seat, &ops[i]) {
                let mut d = done.clone();
                d[i / 64] |= 1 << (i % 64);
                if seen.insert((d.clone(), next)) {
                    stack.push((d, next));
                }
            }
        }
    }
    let stuck =
        (0..ops.len()).filter(|i| !placed(&deepest.1, *i) && !ops[*i].optional).take(4).map(|i| ops[i].index).collect();
    Verdict::Violation(stuck)
}

/// Checks every seat; returns the violations found and how many seats were inconclusive.
pub fn check_all(ops: &[Op], seats: &[String]) -> (Vec<String>, usize) {
    let mut violations = Vec::new();
    let mut inconclusive = 0;
    let debug_seat = std::env::var("SIM_DEBUG_SEAT").ok();
    for (seat, list) in seat_ops(ops, seats) {
        if debug_seat.as_deref() == Some(seat.as_str()) {
            for o in &list {
                eprintln!("{seat} #{} {}..{} opt={} {:?}", o.index, o.invoked_ms, o.returned_ms, o.optional, o.effect);
            }
        }
        match check_seat(&list) {
            Verdict::Linearizable => {}
            Verdict::Inconclusive => inconclusive += 1,
            Verdict::Violation(stuck) => {
                let shown: Vec<String> = stuck
                    .iter()
                    .filter_map(|i| ops.get(*i))
                    .map(|op| format!("{:?} at {}..{} → {}", op.kind, op.invoked_ms, op.returned_ms, short(&op.result)))
                    .collect();
                violations.push(format!(
                    "linearizability: no sequential order explains seat {seat}; stuck at: {}",
                    shown.join(" | ")
                ));
            }
        }
    }
    (violations, inconclusive)
}

fn short(r: &OpResult) -> String {
    let text = format!("{r:?}");
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(invoked_ms: i64, returned_ms: i64, effect: Effect) -> SeatOp {
        SeatOp { invoked_ms, returned_ms, optional: false, effect, index: 0 }
    }

    fn take(hold: u64, at: i64) -> Effect {
        Effect::Take { by: Owner::Hold(hold), expires_at_ms: Some(at + HOLD_TTL_MS) }
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let ops = vec![
            op(0, 10, take(1, 5)),
            op(20, 30, Effect::Observe(SeatStatus::Held)),
            op(40, 50, Effect::Release { hold: 1 }),
            op(60, 70, Effect::Observe(SeatStatus::Available)),
        ];
        assert!(matches!(check_seat(&ops), Verdict::Linearizable));
    }

    #[test]
    fn two_holds_of_one_seat_at_once_are_not() {
        let ops = vec![op(0, 10, take(1, 5)), op(20, 30, take(2, 25))];
        assert!(matches!(check_seat(&ops), Verdict::Violation(_)));
    }

    #[test]
    fn a_read_after_an_acknowledged_hold_cannot_show_the_seat_free() {
        let ops = vec![op(0, 10, take(1, 5)), op(20, 30, Effect::Observe(SeatStatus::Available))];
        assert!(matches!(check_seat(&ops), Verdict::Violation(_)));
        // Concurrent with the hold, it may.
        let ops = vec![op(0, 10, take(1, 5)), op(5, 30, Effect::Observe(SeatStatus::Available))];
        assert!(matches!(check_seat(&ops), Verdict::Linearizable));
    }

    #[test]
    fn expiry_frees_the_seat_only_after_its_time() {
        let late = HOLD_TTL_MS + MAX_SKEW_MS + 100;
        let ops = vec![op(0, 10, take(1, 5)), op(late, late + 10, take(2, late + 5))];
        assert!(matches!(check_seat(&ops), Verdict::Linearizable));
        let early = HOLD_TTL_MS / 2;
        let ops = vec![op(0, 10, take(1, 5)), op(early, early + 10, take(2, early + 5))];
        assert!(matches!(check_seat(&ops), Verdict::Violation(_)));
    }

    #[test]
    fn an_unanswered_hold_may_or_may_not_have_happened() {
        let unknown = SeatOp {
            optional: true,
            returned_ms: i64::MAX,
            ..op(0, 0, Effect::Take { by: Owner::Unknown(9), expires_at_ms: None })
        };
        let ops = vec![unknown.clone(), op(20, 30, Effect::Observe(SeatStatus::Available)), op(40, 50, take(1, 45))];
        assert!(matches!(check_seat(&ops), Verdict::Linearizable));
        let ops = vec![unknown, op(20, 30, Effect::Observe(SeatStatus::Held))];
        assert!(matches!(check_seat(&ops), Verdict::Linearizable), "it happened");
    }

    #[test]
    fn a_sale_without_an_answer_is_named_by_a_later_one() {
        let unknown =
            SeatOp { optional: true, returned_ms: i64::MAX, ..op(20, 0, Effect::CheckoutUnknown { hold: 1 }) };
        let ops = vec![
            op(0, 10, take(1, 5)),
            unknown,
            op(40, 50, Effect::Observe(SeatStatus::Sold)),
            op(60, 70, Effect::Sell { hold: 1, order: 3 }),
            op(80, 90, Effect::Unsell { order: 3 }),
            op(100, 110, Effect::Observe(SeatStatus::Available)),
        ];
        assert!(matches!(check_seat(&ops), Verdict::Linearizable));
    }

    #[test]
    fn a_checkout_paid_after_the_hold_would_have_expired_kept_the_seat_held_meanwhile() {
        // Checked out early in its window, paid at its end, past the hold's expiry: a read in
        // between sees the seat held (awaiting payment), then sold.
        let end = HOLD_TTL_MS + 3 * MAX_SKEW_MS + 1_000;
        let checkout = |effect| op(20, end, effect);
        let ops = vec![
            op(0, 10, take(1, 5)),
            checkout(Effect::CheckedOut { hold: 1, deadline_ms: 25 + PAYMENT_TIMEOUT_MS }),
            checkout(Effect::Sell { hold: 1, order: 2 }),
            op(end - 100, end - 90, Effect::Observe(SeatStatus::Held)),
            op(end + 10, end + 20, Effect::Observe(SeatStatus::Sold)),
        ];
        assert!(matches!(check_seat(&ops), Verdict::Linearizable));
        // Without the checkout the hold expires: held past its expiry is a violation.
        let ops = vec![op(0, 10, take(1, 5)), op(end - 100, end - 90, Effect::Observe(SeatStatus::Held))];
        assert!(matches!(check_seat(&ops), Verdict::Violation(_)));
    }

    #[test]
    fn a_refusal_must_see_the_seat_taken_and_the_others_free() {
        let ops = vec![op(0, 10, Effect::Taken)];
        assert!(matches!(check_seat(&ops), Verdict::Violation(_)), "nothing held it");
        let ops = vec![op(0, 10, take(1, 5)), op(20, 30, Effect::Free)];
        assert!(matches!(check_seat(&ops), Verdict::Violation(_)), "it was held");
    }
}
