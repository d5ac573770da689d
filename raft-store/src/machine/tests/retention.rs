//! Retention of ended holds (DESIGN.md, I9) and exactly-once under retries (rule 4): what the
//! shard keeps, for how long, and what a retry is answered.

use super::*;

// ---- Retention: ended holds leave the hot state (DESIGN.md, I9) -------------------------------

/// Holds the shard still keeps, active and ended.
fn holds_retained(m: &Machine) -> usize {
    match &m.state {
        MetaOrShard::Shard(shard) => shard.holds_retained(),
        MetaOrShard::Meta(_) => panic!("a shard machine"),
    }
}

fn hold_read(h: &Harness, hold: &HoldId, who: &str, now_ms: i64) -> Option<HoldView> {
    let Answer::Hold(view) = h.q(&Query::Hold { hold_id: hold.clone(), user: user(who) }, now_ms) else {
        panic!("a hold answer")
    };
    view
}

#[test]
fn ended_holds_leave_the_state_after_the_retention_window_and_then_read_as_unknown() {
    let mut h = Harness::new();
    let released = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    held(h.run(T0, Command::ReleaseHold { hold_id: released.hold_id.clone(), user: user("u1") }));
    let expired = held(h.hold_seats(T0, "u1", &["FLOOR-A-2"]));
    let gone_at = T0 + HOLD_RETENTION_MS;
    // Just before its window ends, a released hold still reads and answers as released.
    h.run(gone_at - 1, Command::Expire);
    assert_eq!(hold_read(&h, &released.hold_id, "u1", gone_at - 1).map(|v| v.status), Some(HoldStatus::Released));
    assert_eq!(holds_retained(&h.m), 2);
    assert!(h.m.has_due_deadlines(gone_at), "a due drop is work for the leader's Expire");
    h.run(gone_at, Command::Expire);
    assert_eq!(hold_read(&h, &released.hold_id, "u1", gone_at), None);
    let again = h.run(gone_at, Command::ReleaseHold { hold_id: released.hold_id, user: user("u1") });
    assert!(matches!(refusal(again), Refusal::NotFound { .. }), "as for an unknown id");
    // An expired hold's window starts at its expiry, not when a command noticed it.
    let expired_gone_at = expired.expires_at_ms + HOLD_RETENTION_MS;
    assert_eq!(hold_read(&h, &expired.hold_id, "u1", gone_at).map(|v| v.status), Some(HoldStatus::Expired));
    h.run(expired_gone_at, Command::Expire);
    assert_eq!(hold_read(&h, &expired.hold_id, "u1", expired_gone_at), None);
    assert_eq!(holds_retained(&h.m), 0);
    assert!(!h.m.has_due_deadlines(i64::MAX - 1));
}

#[test]
fn orders_outlive_their_holds_and_keep_working() {
    let mut h = Harness::new();
    let confirmed = h.buy(T0, "u1", &["FLOOR-A-1", "FLOOR-A-2"]);
    let hold = held(h.hold_general(T0, "u2", 2));
    let unpaid = ordered(h.checkout(T0, "u2", &hold.hold_id));
    let later = T0 + HOLD_RETENTION_MS + 1;
    h.run(later, Command::Expire);
    assert_eq!(holds_retained(&h.m), 0, "both checked-out holds are gone");
    // The unpaid order failed at its deadline, before its hold left: its admissions are free.
    assert_eq!(h.section(later, "LAWN").available, 5);
    let Answer::Order(Some(read)) = h.q(
        &Query::Order { order_id: confirmed.order_id.clone(), actor: Actor { user: user("u1"), admin: false } },
        later,
    ) else {
        panic!("the order is still there")
    };
    assert_eq!(read, confirmed, "an order reads the same without its hold");
    let failed = ordered(h.pay(later, &unpaid.order_id, true));
    assert_eq!((failed.status, failed.refunded), (OrderStatus::PaymentFailed, true));
    // A checkout of the dropped hold is "not found"; cancelling the order frees its seats.
    assert!(matches!(refusal(h.checkout(later, "u1", &confirmed.hold_id)), Refusal::NotFound { .. }));
    let cancelled = ordered(h.cancel(later, "u1", false, &confirmed.order_id));
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(h.seat_status(later, "FLOOR-A-1"), SeatStatus::Available);
    held(h.hold_seats(later, "u3", &["FLOOR-A-1", "FLOOR-A-2"]));
}

#[test]
fn a_backlog_of_ended_holds_drains_a_bounded_step_per_command() {
    let mut h = Harness::new();
    h.checking = false; // recounting thousands of holds after each command is slow; checked below
    let backlog = 4 * HOLD_DROPS_PER_EXPIRE_MAX + 5;
    for i in 0..backlog {
        let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
        held(h.run(T0, Command::ReleaseHold { hold_id: hold.hold_id, user: user("u1") }));
        assert_eq!(holds_retained(&h.m), i + 1);
    }
    h.m.check_invariants().unwrap();
    let due = T0 + HOLD_RETENTION_MS;
    // An ordinary command drops a few: a step, not the backlog.
    held(h.hold_seats(due, "u2", &["FLOOR-B-1"]));
    let after_hold = backlog + 1 - HOLD_DROPS_PER_COMMAND_MAX;
    assert_eq!(holds_retained(&h.m), after_hold);
    // A batched entry drops a step per command in it.
    h.index += 1;
    let expires = (0..3).map(|_| Proposal::internal(Command::Expire)).collect();
    h.apply_entry(&Request { time_ms: due, proposals: expires });
    let mut left = after_hold - 3 * HOLD_DROPS_PER_EXPIRE_MAX;
    assert_eq!(holds_retained(&h.m), left);
    // While drops are due the leader's Expire comes back, each dropping its step, until none is.
    let mut expires = 0;
    while h.m.has_due_deadlines(due) {
        h.run(due, Command::Expire);
        expires += 1;
        let dropped = left - holds_retained(&h.m);
        assert!(dropped <= HOLD_DROPS_PER_EXPIRE_MAX);
        left -= dropped;
    }
    assert_eq!((expires, left), (1, 1), "only the active hold stays");
    h.m.check_invariants().unwrap();
}

// ---- Rule 4: exactly once under retries -------------------------------------------------------

#[test]
fn retry_with_same_request_id_returns_first_outcome_and_applies_once() {
    let mut h = Harness::new();
    let id = Some(RequestId([7; 16]));
    let cmd = |h: &Harness| h.hold_command("u1", Selection::Seats(vec!["FLOOR-A-1".into()]));
    let first = h.run_with(T0, id, 1, cmd(&h));
    let again = h.run_with(T0 + 1, id, 1, cmd(&h));
    assert_eq!(first, again);
    assert_eq!(h.section(T0 + 1, "FLOOR").held, 1, "booked once");
    // The same id for another request is refused and changes nothing.
    let other = h.run_with(T0 + 2, id, 2, cmd(&h));
    assert_eq!(other, Outcome::Refused(Refusal::IdempotencyKeyReused));
    assert_eq!(h.section(T0 + 2, "FLOOR").held, 1);
}

#[test]
fn retry_after_expiry_returns_the_first_outcome_not_a_new_hold() {
    let mut h = Harness::new();
    let id = Some(RequestId([9; 16]));
    let cmd = h.hold_command("u1", Selection::Seats(vec!["FLOOR-A-1".into()]));
    let first = h.run_with(T0, id, 1, cmd.clone());
    let retried = h.run_with(T0 + TTL_MS + 5, id, 1, cmd);
    assert_eq!(first, retried, "the first response, even though that hold has expired");
    assert_eq!(h.section(T0 + TTL_MS + 5, "FLOOR").held, 0, "and no second hold was made");
}

#[test]
fn refusals_are_remembered_too() {
    let mut h = Harness::new();
    held(h.hold_seats(T0, "u2", &["FLOOR-A-1"]));
    let id = Some(RequestId([3; 16]));
    let cmd = h.hold_command("u1", Selection::Seats(vec!["FLOOR-A-1".into()]));
    let first = h.run_with(T0 + 1, id, 1, cmd.clone());
    h.run(T0 + TTL_MS, Command::Expire);
    assert_eq!(h.run_with(T0 + TTL_MS + 1, id, 1, cmd), first, "a retry gets the first answer");
}

#[test]
fn a_keyed_outcome_is_remembered_for_a_day_whatever_happened_meanwhile() {
    let mut h = Harness::new();
    let id = Some(RequestId([1; 16]));
    let hold = |h: &Harness| h.hold_command("u1", Selection::Seats(vec!["FLOOR-A-1".into()]));
    let first = held(h.run_with(T0, id, 1, hold(&h)));
    h.run(T0 + 1, Command::ReleaseHold { hold_id: first.hold_id.clone(), user: user("u1") });
    h.checking = false;
    for i in 0..1_000 {
        h.run(T0 + 2 + i, Command::Expire);
    }
    let day = crate::limits::DEDUP_RETAIN_MS;
    assert_eq!(held(h.run_with(T0 + day - 1, id, 1, hold(&h))), first, "a retry within the day: the first answer");
    // A day on the key is forgotten: the request is judged anew (the event has started by then).
    let again = h.run_with(T0 + day, id, 1, hold(&h));
    assert_ne!(again, Outcome::Hold(first), "a day on, the key is forgotten");
}

#[test]
fn a_keyed_hold_replayed_after_300_000_other_keyed_writes_returns_its_first_answer() {
    // The table of outcomes is bounded by time, not by count: 300,000 keyed writes (holds of the
    // lawn and their releases, each with its own key) between a request and its retry change
    // nothing. (boxoffice/tests/idempotency_day.rs does the same over HTTP, with a restart.)
    const OTHER_WRITES: u64 = 300_000;
    let mut h = Harness::new();
    h.checking = false;
    let keyed = |n: u64| {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_le_bytes());
        id[8] = 0xAA;
        Some(RequestId(id))
    };
    let hold = |h: &Harness, who: &str| Command::Hold {
        event_id: h.event.clone(),
        user: user(who),
        selection: Selection::General { section: "LAWN".into(), quantity: 1 },
        ttl_ms: TTL_MS,
        access: None,
        held_seats_max: None,
    };
    let first = held(h.run_with(T0, keyed(u64::MAX), 1, hold(&h, "alice")));
    // Four of the lawn's five places are left: holds of four, then their releases, one entry each.
    let mut n = 0;
    let mut time = T0;
    while n < OTHER_WRITES {
        time += 1;
        h.index += 1;
        let holds = (0..4)
            .map(|k| Proposal {
                request_id: keyed(n + k),
                fingerprint: 2,
                keyed: true,
                command: hold(&h, &format!("u{k}")),
            })
            .collect();
        let taken: Vec<HoldView> =
            h.apply_entry(&Request { time_ms: time, proposals: holds }).into_iter().map(held).collect();
        h.index += 1;
        let releases = taken
            .into_iter()
            .enumerate()
            .map(|(k, t)| Proposal {
                request_id: keyed(n + 4 + k as u64),
                fingerprint: 3,
                keyed: true,
                command: Command::ReleaseHold { hold_id: t.hold_id, user: user(&format!("u{k}")) },
            })
            .collect();
        h.apply_entry(&Request { time_ms: time, proposals: releases });
        n += 8;
    }
    let retry = held(h.run_with(time + 1, keyed(u64::MAX), 1, hold(&h, "alice")));
    assert_eq!(retry, first, "the first answer");
    assert_eq!(h.section(time + 1, "LAWN").held, 1, "booked once");
    h.m.check_invariants().unwrap();
}

#[test]
fn a_router_id_is_remembered_for_minutes_only() {
    let mut h = Harness::new();
    let id = RequestId([2; 16]);
    let command = Command::Hold {
        event_id: h.event.clone(),
        user: user("u1"),
        selection: Selection::General { section: "LAWN".into(), quantity: 1 },
        ttl_ms: TTL_MS,
        access: None,
        held_seats_max: None,
    };
    h.index += 1;
    let proposal = Proposal { request_id: Some(id), fingerprint: 1, keyed: false, command };
    let first = held(h.apply_entry(&Request::single(T0, proposal.clone())).remove(0));
    h.index += 1;
    let retry =
        held(h.apply_entry(&Request::single(T0 + crate::limits::RETRY_RETAIN_MS - 1, proposal.clone())).remove(0));
    assert_eq!(retry, first);
    h.index += 1;
    let late = held(h.apply_entry(&Request::single(T0 + crate::limits::RETRY_RETAIN_MS, proposal)).remove(0));
    assert_ne!(late.hold_id, first.hold_id);
}

#[test]
fn a_replayed_entry_does_not_answer_for_itself_from_its_own_earlier_writes() {
    // A restarted node applies entries again whose cold writes are already on disk: the entry
    // must decide as it did the first time, not find its own outcome remembered.
    let mut h = Harness::new();
    let before = h.m.clone();
    let id = Some(RequestId([4; 16]));
    let command = h.hold_command("u1", Selection::Seats(vec!["FLOOR-A-1".into()]));
    let first = h.run_with(T0, id, 1, command.clone());
    let index = h.index;
    h.m = before;
    let proposal = Proposal { request_id: id, fingerprint: 1, keyed: true, command };
    let replayed = h.apply_at(index, &Request::single(T0, proposal)).remove(0);
    assert_eq!(replayed, first);
    h.m.check_invariants().unwrap();
    assert_eq!(h.seat_status(T0, "FLOOR-A-1"), SeatStatus::Held, "the hold was made again, in memory");
}
