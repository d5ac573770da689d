//! Retention of ended holds (DESIGN.md, I9) and exactly-once under retries (rule 4): what the
//! shard keeps, for how long, and what a retry is answered.

use super::*;

// ---- Retention: ended holds leave the hot state (DESIGN.md, I9) -------------------------------

/// Holds the shard keeps in memory, active and ended.
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

/// Makes `h`'s state one that a node from before ended holds went to the cold store would have
/// left: the ended holds of the cold store back in memory, each waiting in `dropping` for the end
/// of its retention, and gone from the cold store.
fn as_an_older_node_kept_it(h: &mut Harness) -> usize {
    let prefix = [crate::keys::cold::ENDED_HOLD];
    let ended = h.cold.scan(&prefix, &crate::cold::prefix_end(&prefix), usize::MAX).unwrap();
    match &mut h.m.state {
        MetaOrShard::Shard(shard) => shard.keep_ended_holds_in_memory(&ended),
        MetaOrShard::Meta(_) => panic!("a shard machine"),
    }
    let rest = h.cold.scan(&[0], &[crate::keys::cold::COLD_INDEX], usize::MAX).unwrap();
    h.cold = crate::cold::MemCold::default();
    let mut kept = crate::cold::ColdWrites::default();
    for (key, record) in rest.into_iter().filter(|(k, _)| !k.starts_with(&prefix)) {
        kept.put(key, record);
    }
    h.cold.write(kept);
    // The older state is what an older node's snapshot held: it decodes, and is consistent.
    h.m = Machine::decode(&h.m.encode().unwrap()).unwrap();
    h.m.check_invariants().unwrap();
    ended.len()
}

#[test]
fn an_ended_hold_leaves_memory_at_once_and_reads_the_same_until_its_retention_ends() {
    let mut h = Harness::new();
    let released = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let released = held(h.run(T0 + 1, Command::ReleaseHold { hold_id: released.hold_id, user: user("u1") }));
    let expiring = held(h.hold_seats(T0, "u1", &["FLOOR-A-2"]));
    let checked_out = held(h.hold_general(T0, "u2", 2));
    let order = ordered(h.checkout(T0 + 2, "u2", &checked_out.hold_id));
    h.run(expiring.expires_at_ms, Command::Expire);
    let at = expiring.expires_at_ms;
    assert_eq!(holds_retained(&h.m), 0, "no hold in memory: two ended, one checked out");
    // The feed keeps only the expiry's record: the others are older than it keeps records.
    assert_eq!(h.m.records(), MachineRecords { holds_active: 0, holds_ended: 0, orders: 1, changes: 1 });
    // Each reads with its final status, as it ended; another user's is "not found".
    assert_eq!(hold_read(&h, &released.hold_id, "u1", at), Some(released.clone()));
    let expired = hold_read(&h, &expiring.hold_id, "u1", at).unwrap();
    assert_eq!((expired.status, expired.ended_at_ms), (HoldStatus::Expired, Some(expiring.expires_at_ms)));
    assert_eq!(expired, HoldView { status: HoldStatus::Expired, ended_at_ms: Some(at), ..expiring.clone() });
    let out = hold_read(&h, &checked_out.hold_id, "u2", at).unwrap();
    assert_eq!((out.status, out.order_id.as_ref()), (HoldStatus::CheckedOut, Some(&order.order_id)));
    assert_eq!(hold_read(&h, &released.hold_id, "u2", at), None);
    // Repeated commands answer as they did while the hold was in memory.
    let again =
        |h: &mut Harness, t| h.run(t, Command::ReleaseHold { hold_id: released.hold_id.clone(), user: user("u1") });
    assert_eq!(held(again(&mut h, at)), released, "a repeated release: the released hold");
    let release_expired = Command::ReleaseHold { hold_id: expiring.hold_id.clone(), user: user("u1") };
    assert_eq!(held(h.run(at, release_expired)), expired);
    assert_eq!(
        refusal(h.checkout(at, "u1", &released.hold_id)),
        Refusal::HoldNotActive { status: HoldStatus::Released }
    );
    assert_eq!(refusal(h.checkout(at, "u1", &expiring.hold_id)), Refusal::HoldExpired);
    let release_out = Command::ReleaseHold { hold_id: checked_out.hold_id.clone(), user: user("u2") };
    assert_eq!(refusal(h.run(at, release_out)), Refusal::HoldNotActive { status: HoldStatus::CheckedOut });
    assert!(matches!(refusal(h.checkout(at, "u1", &checked_out.hold_id)), Refusal::NotFound { .. }), "not u1's");
    // A second checkout returns the same order, and the order as it stands once paid.
    assert_eq!(ordered(h.checkout(at, "u2", &checked_out.hold_id)), order);
    let paid = ordered(h.pay(at + 1, &order.order_id, true));
    assert_eq!(ordered(h.checkout(at + 2, "u2", &checked_out.hold_id)), paid);
    assert_eq!(h.m.records().holds_ended, 0);
    assert!(!h.m.has_due_deadlines(i64::MAX - 1), "no drop is ever due for them");
    // Until the end of its retention; then "not found", to reads and commands alike.
    let gone_at = released.ended_at_ms.unwrap() + HOLD_RETENTION_MS;
    assert_eq!(hold_read(&h, &released.hold_id, "u1", gone_at - 1), Some(released.clone()));
    assert_eq!(hold_read(&h, &released.hold_id, "u1", gone_at), None, "a read judges retention at its time");
    assert!(matches!(refusal(again(&mut h, gone_at)), Refusal::NotFound { .. }), "as for an unknown id");
    let out_gone_at = T0 + 2 + HOLD_RETENTION_MS;
    assert_eq!(ordered(h.checkout(out_gone_at - 1, "u2", &checked_out.hold_id)), paid);
    assert!(matches!(refusal(h.checkout(out_gone_at, "u2", &checked_out.hold_id)), Refusal::NotFound { .. }));
    let expired_gone_at = expiring.expires_at_ms + HOLD_RETENTION_MS;
    assert_eq!(hold_read(&h, &expiring.hold_id, "u1", expired_gone_at - 1), Some(expired));
    assert_eq!(hold_read(&h, &expiring.hold_id, "u1", expired_gone_at), None, "its window starts at its expiry");
}

#[test]
fn a_hold_ended_earlier_in_an_entry_is_found_by_the_commands_after_it_and_a_replay_decides_the_same() {
    let mut h = Harness::new();
    let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let before = (h.m.clone(), h.index);
    let release = Command::ReleaseHold { hold_id: hold.hold_id.clone(), user: user("u1") };
    let checkout = Command::Checkout { hold_id: hold.hold_id.clone(), user: user("u1") };
    let entry = Request {
        time_ms: T0 + 1,
        proposals: vec![Proposal::internal(release.clone()), Proposal::internal(checkout.clone())],
    };
    h.index += 1;
    let first = h.apply_entry(&entry);
    assert_eq!(first[1], Outcome::Refused(Refusal::HoldNotActive { status: HoldStatus::Released }));
    // A restarted replica applies the entry again with its record on disk already: the record
    // (stamped with this entry) does not answer for the hold, which is in memory again.
    h.m = before.0.clone();
    assert_eq!(h.apply_at(before.1 + 1, &entry), first);
    assert_eq!(h.m, {
        let mut fresh = before.0;
        fresh.apply(before.1 + 1, &entry, &crate::cold::NoCold).unwrap();
        fresh
    });
    h.m.check_invariants().unwrap();
}

#[test]
fn an_older_state_keeps_its_ended_holds_in_memory_reads_them_the_same_and_drains_them() {
    let mut h = Harness::new();
    let released = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let released = held(h.run(T0, Command::ReleaseHold { hold_id: released.hold_id, user: user("u1") }));
    let pending = held(h.hold_general(T0, "u2", 2));
    let order = ordered(h.checkout(T0, "u2", &pending.hold_id));
    let views = [
        hold_read(&h, &released.hold_id, "u1", T0 + 1).unwrap(),
        hold_read(&h, &pending.hold_id, "u2", T0 + 1).unwrap(),
    ];
    assert_eq!(as_an_older_node_kept_it(&mut h), 2);
    assert_eq!(h.m.records(), MachineRecords { holds_active: 0, holds_ended: 2, orders: 1, changes: 4 });
    // In memory, they read and answer as they did from the cold store.
    assert_eq!(hold_read(&h, &released.hold_id, "u1", T0 + 1).as_ref(), Some(&views[0]));
    assert_eq!(hold_read(&h, &pending.hold_id, "u2", T0 + 1).as_ref(), Some(&views[1]));
    assert_eq!(h.seat_status(T0 + 1, "FLOOR-A-1"), SeatStatus::Available);
    assert_eq!(h.section(T0 + 1, "LAWN").held, 2, "the pending order's admissions, held in its hold's name");
    assert_eq!(ordered(h.checkout(T0 + 1, "u2", &pending.hold_id)), order);
    let release = Command::ReleaseHold { hold_id: released.hold_id.clone(), user: user("u1") };
    assert_eq!(held(h.run(T0 + 1, release)), views[0]);
    // A hold ending now goes to the cold store, not to the others in memory.
    let new = held(h.hold_seats(T0 + 2, "u3", &["FLOOR-A-3"]));
    held(h.run(T0 + 3, Command::ReleaseHold { hold_id: new.hold_id.clone(), user: user("u3") }));
    assert_eq!(h.m.records().holds_ended, 2);
    // The order lapses at its deadline, though its hold is in memory (as before).
    h.run(T0 + PAYMENT_TIMEOUT_MS, Command::Expire);
    assert_eq!(h.section(T0 + PAYMENT_TIMEOUT_MS, "LAWN").available, 5);
    // At the end of their retention the leader's Expire drops them, as it always did.
    let gone_at = T0 + HOLD_RETENTION_MS;
    assert!(!h.m.has_due_deadlines(gone_at - 1));
    assert!(h.m.has_due_deadlines(gone_at), "a due drop is work for the leader's Expire");
    h.run(gone_at, Command::Expire);
    assert_eq!(h.m.records().holds_ended, 0);
    assert_eq!(holds_retained(&h.m), 0);
    assert_eq!(hold_read(&h, &released.hold_id, "u1", gone_at), None);
    assert!(matches!(refusal(h.checkout(gone_at, "u2", &pending.hold_id)), Refusal::NotFound { .. }));
    assert_eq!(hold_read(&h, &new.hold_id, "u3", gone_at).map(|v| v.status), Some(HoldStatus::Released));
    assert!(!h.m.has_due_deadlines(i64::MAX - 1));
}

#[test]
fn an_archived_events_ended_holds_are_not_found_as_before() {
    let mut h = Harness::new();
    // An event that starts soon, archived within its holds' retention.
    let starts = T0 + 600_000;
    let patch = EventPatch { starts_at_ms: Some(starts), ..EventPatch::default() };
    assert!(matches!(h.run(T0, Command::UpdateEvent { event_id: h.event.clone(), patch }), Outcome::Event(_)));
    let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let hold = held(h.run(T0, Command::ReleaseHold { hold_id: hold.hold_id, user: user("u1") }));
    assert_eq!(hold_read(&h, &hold.hold_id, "u1", starts + 1).map(|v| v.status), Some(HoldStatus::Released));
    let out = h.run(starts + 1, Command::Archive { started_before_ms: starts + 1 });
    assert_eq!(out, Outcome::Archived { orders: 0, events: 1 });
    // Its record is still in the cold store, but the hold left with its event, as it did when
    // ended holds lived in memory.
    assert_eq!(hold_read(&h, &hold.hold_id, "u1", starts + 1), None);
    let again = h.run(starts + 2, Command::ReleaseHold { hold_id: hold.hold_id, user: user("u1") });
    assert!(matches!(refusal(again), Refusal::NotFound { .. }));
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
fn an_older_states_backlog_of_ended_holds_drains_a_bounded_step_per_command() {
    let mut h = Harness::new();
    h.checking = false; // recounting thousands of holds after each command is slow; checked below
    let backlog = 4 * HOLD_DROPS_PER_EXPIRE_MAX + 5;
    for _ in 0..backlog {
        let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
        held(h.run(T0, Command::ReleaseHold { hold_id: hold.hold_id, user: user("u1") }));
        assert_eq!(holds_retained(&h.m), 0, "an ended hold leaves memory at once");
    }
    // A backlog is what an older node's state keeps in memory: it drains.
    assert_eq!(as_an_older_node_kept_it(&mut h), backlog);
    assert_eq!(holds_retained(&h.m), backlog);
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
