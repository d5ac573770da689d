//! The rules against one user taking more than a fair share: the cap on seats in active holds
//! that a hold carries, and one live place per user in a waiting room. Also: what format 2 wrote
//! (log entries, remembered outcomes, snapshots) still decodes, unchanged.

use super::*;
use crate::command::{AccessPass, QueueJoin, QueuePlace, QueueView};
use crate::limits::{PASS_TTL_MS, QUEUE_JOINS_PER_COMMAND_MAX};

fn seats(ids: &[&str]) -> Selection {
    Selection::Seats(ids.iter().map(|s| s.to_string()).collect())
}

fn lawn(quantity: u32) -> Selection {
    Selection::General { section: "LAWN".into(), quantity }
}

fn capped(h: &Harness, who: &str, selection: Selection, cap: u32) -> Command {
    Command::Hold {
        event_id: h.event.clone(),
        user: user(who),
        selection,
        ttl_ms: TTL_MS,
        access: None,
        held_seats_max: Some(cap),
    }
}

fn over_cap(limit: u32, current: u32, requested: u32) -> Refusal {
    Refusal::HeldSeatsExceeded { limit, current, requested }
}

// ---- The held-seat cap -------------------------------------------------------------------------

#[test]
fn a_hold_past_the_cap_is_refused_and_other_users_are_not_counted() {
    let mut h = Harness::new();
    held(h.run(T0, capped(&h, "u1", seats(&["FLOOR-A-1", "FLOOR-A-2", "FLOOR-A-3"]), 4)));
    // Seats and general admissions count together.
    assert_eq!(refusal(h.run(T0, capped(&h, "u1", lawn(2), 4))), over_cap(4, 3, 2));
    held(h.run(T0, capped(&h, "u1", lawn(1), 4)));
    assert_eq!(refusal(h.run(T0, capped(&h, "u1", seats(&["FLOOR-B-1"]), 4))), over_cap(4, 4, 1));
    held(h.run(T0, capped(&h, "u2", seats(&["FLOOR-B-1", "FLOOR-B-2", "FLOOR-B-3", "FLOOR-B-4"]), 4)));
    // A hold without a cap (the api's setting 0, or a format-2 entry) is not judged by one.
    held(h.hold_seats(T0, "u1", &["FLOOR-A-9"]));
}

#[test]
fn released_expired_and_checked_out_holds_leave_the_count() {
    let mut h = Harness::new();
    let first = held(h.run(T0, capped(&h, "u1", seats(&["FLOOR-A-1", "FLOOR-A-2"]), 2)));
    assert_eq!(refusal(h.run(T0, capped(&h, "u1", lawn(1), 2))), over_cap(2, 2, 1));
    h.run(T0 + 1, Command::ReleaseHold { hold_id: first.hold_id, user: user("u1") });
    let second = held(h.run(T0 + 2, capped(&h, "u1", lawn(2), 2)));
    // Checked out: the order keeps the seats until it is paid, but the hold is not active.
    ordered(h.checkout(T0 + 3, "u1", &second.hold_id));
    let third = held(h.run(T0 + 4, capped(&h, "u1", seats(&["FLOOR-A-1", "FLOOR-A-2"]), 2)));
    assert_eq!(refusal(h.run(T0 + 5, capped(&h, "u1", lawn(1), 2))), over_cap(2, 2, 1));
    // Expired: free the moment a command sees it, no `Expire` needed.
    held(h.run(third.expires_at_ms, capped(&h, "u1", lawn(2), 2)));
}

#[test]
fn the_leaders_prediction_of_the_cap_counts_what_apply_would_expire_first() {
    let mut h = Harness::new();
    let first = held(h.run(T0, capped(&h, "u1", seats(&["FLOOR-A-1", "FLOOR-A-2"]), 3)));
    held(h.run(T0 + 1_000, capped(&h, "u1", lawn(1), 3)));
    let ask = |h: &Harness| Proposal::internal(capped(h, "u1", seats(&["FLOOR-B-1", "FLOOR-B-2"]), 3));
    // Before the first hold's expiry: certain, and exactly apply's answer.
    let before = first.expires_at_ms - 1;
    assert_eq!(h.refusal(&ask(&h), before, before), Some(over_cap(3, 3, 2)));
    // After it, though no command has expired it yet: apply would free its two seats first.
    let after = first.expires_at_ms;
    assert_eq!(h.refusal(&ask(&h), after, after), None);
    // At the leader's clock it is over, at a reader's it is not yet: left to the log.
    assert_eq!(h.refusal(&ask(&h), after, before), None);
    // `run` asserts the prediction again and that an unpredicted refusal cannot happen.
    held(h.run(after, ask(&h).command));
}

#[test]
fn the_held_count_is_rebuilt_when_a_snapshot_is_decoded() {
    let mut h = Harness::new();
    held(h.run(T0, capped(&h, "u1", seats(&["FLOOR-A-1"]), 3)));
    held(h.run(T0, capped(&h, "u1", lawn(2), 3)));
    held(h.run(T0, capped(&h, "u2", lawn(1), 3)));
    let bytes = h.m.encode().unwrap();
    let restored = Machine::decode(&bytes).unwrap();
    assert_eq!(restored, h.m, "the derived count is rebuilt, equal to the one kept by apply");
    restored.check_invariants().unwrap();
    h.m = restored;
    assert_eq!(refusal(h.run(T0 + 1, capped(&h, "u1", lawn(1), 3))), over_cap(3, 3, 1));
}

// ---- One place per user in a waiting room ------------------------------------------------------

/// Makes the harness's event high-traffic, on sale from `on_sale_at_ms`.
fn waiting_room(h: &mut Harness, on_sale_at_ms: i64) {
    let patch = EventPatch { high_traffic: Some(true), on_sale_at_ms: Some(on_sale_at_ms), ..EventPatch::default() };
    h.run(T0 - 500, Command::UpdateEvent { event_id: h.event.clone(), patch });
}

fn joins(h: &Harness, users: &[(&str, Option<u64>)]) -> Command {
    let joins = users.iter().map(|(who, replaces)| QueueJoin { user: user(who), replaces: *replaces }).collect();
    Command::JoinQueue { event_id: h.event.clone(), joins }
}

fn places(out: Outcome) -> Vec<(u64, bool)> {
    match out {
        Outcome::QueuePlaces(places) => places.into_iter().map(|QueuePlace { seq, new }| (seq, new)).collect(),
        other => panic!("expected places, got {other:?}"),
    }
}

fn queue(h: &Harness, at_ms: i64) -> QueueView {
    match h.q(&Query::Queue(h.event.clone()), at_ms) {
        Answer::Queue(Some(view)) => view,
        other => panic!("expected a queue, got {other:?}"),
    }
}

#[test]
fn joining_twice_gives_one_place_in_one_batch_and_across_batches() {
    let mut h = Harness::new();
    waiting_room(&mut h, T0);
    // Two concurrent joins of u1 on one instance land in one batch.
    assert_eq!(
        places(h.run(T0, joins(&h, &[("u1", None), ("u2", None), ("u1", None)]))),
        [(0, true), (1, true), (0, false)]
    );
    // Another instance's batch, later.
    assert_eq!(places(h.run(T0 + 10, joins(&h, &[("u2", None), ("u3", None)]))), [(1, false), (2, true)]);
    assert_eq!(queue(&h, T0 + 10).queue.next_seq, 3, "a second join costs no number");
}

#[test]
fn early_joins_are_early_and_the_first_join_after_the_opening_closes_the_group() {
    let mut h = Harness::new();
    waiting_room(&mut h, T0 + 1_000);
    places(h.run(T0, joins(&h, &[("u1", None), ("u2", None)])));
    assert_eq!(queue(&h, T0).queue.early_bound, None);
    assert_eq!(places(h.run(T0 + 1_000, joins(&h, &[("u3", None), ("u1", None)]))), [(2, true), (0, false)]);
    assert_eq!(queue(&h, T0 + 1_000).queue.early_bound, Some(2));
}

#[test]
fn a_place_ends_when_its_pass_buys_a_hold() {
    let mut h = Harness::new();
    waiting_room(&mut h, T0);
    assert_eq!(places(h.run(T0, joins(&h, &[("u1", None)]))), [(0, true)]);
    h.run(T0 + 1, Command::AdvanceQueue { event_id: h.event.clone(), to: 1 });
    assert_eq!(places(h.run(T0 + 2, joins(&h, &[("u1", None)]))), [(0, false)], "admitted: the same place");
    let pass = AccessPass { pass_id: [1; 16], expires_at_ms: T0 + 1 + PASS_TTL_MS };
    let hold = Command::Hold {
        event_id: h.event.clone(),
        user: user("u1"),
        selection: seats(&["FLOOR-A-1"]),
        ttl_ms: TTL_MS,
        access: Some(pass),
        held_seats_max: Some(20),
    };
    held(h.run(T0 + 3, hold));
    assert_eq!(places(h.run(T0 + 4, joins(&h, &[("u1", None)]))), [(1, true)], "a used pass: a new place");
    assert_eq!(places(h.run(T0 + 5, joins(&h, &[("u1", None)]))), [(1, false)]);
}

#[test]
fn an_expired_place_is_replaced_once_however_many_instances_ask() {
    let mut h = Harness::new();
    waiting_room(&mut h, T0);
    places(h.run(T0, joins(&h, &[("u1", None), ("u2", None)])));
    // A stale claim (u2's place is 1, not 0) replaces nothing.
    assert_eq!(places(h.run(T0 + 1, joins(&h, &[("u2", Some(0))]))), [(1, false)]);
    // Two instances found u1's place expired: the first replaces it, the second gets the new one.
    let both = [("u1", Some(0)), ("u1", Some(0))];
    assert_eq!(places(h.run(T0 + 2, joins(&h, &both))), [(2, true), (2, false)]);
    assert_eq!(places(h.run(T0 + 3, joins(&h, &[("u1", Some(0))]))), [(2, false)]);
}

#[test]
fn joins_are_refused_when_they_cannot_be_honoured() {
    let mut h = Harness::new();
    assert!(matches!(refusal(h.run(T0, joins(&h, &[("u1", None)]))), Refusal::Invalid { .. }), "no waiting room");
    waiting_room(&mut h, T0);
    assert!(matches!(refusal(h.run(T0, joins(&h, &[]))), Refusal::Invalid { .. }));
    let many: Vec<(String, Option<u64>)> = (0..=QUEUE_JOINS_PER_COMMAND_MAX).map(|i| (format!("u{i}"), None)).collect();
    let many: Vec<(&str, Option<u64>)> = many.iter().map(|(u, r)| (u.as_str(), *r)).collect();
    assert!(matches!(refusal(h.run(T0, joins(&h, &many))), Refusal::Invalid { .. }));
    let starts = T0 + 86_400_000;
    assert!(matches!(refusal(h.run(starts, joins(&h, &[("u1", None)]))), Refusal::NotOnSale { .. }));
    assert_eq!(queue(&h, starts).queue.next_seq, 0, "a refused batch takes no numbers");
}

#[test]
fn an_entry_applied_again_after_a_crash_does_not_see_its_own_earlier_writes() {
    let mut h = Harness::new();
    waiting_room(&mut h, T0);
    places(h.run(T0, joins(&h, &[("u1", None)])));
    let before = h.m.clone();
    let entry = Request::single(T0 + 1, Proposal::internal(joins(&h, &[("u2", None), ("u1", None)])));
    h.index += 1;
    let first = h.apply_entry(&entry);
    // The cold store kept what the entry wrote; the state goes back to before it (a restart from
    // an older snapshot), and the entry is applied again.
    h.m = before;
    assert_eq!(h.apply_entry(&entry), first);
    assert_eq!(places(first[0].clone()), [(1, true), (0, false)]);
}

// ---- Format 2 still decodes (format 3 reads it) ------------------------------------------------

/// What format 2 wrote, before the changes above: a log entry (a hold, a lease, an `Expire`),
/// two remembered outcomes, and a shard's snapshot with active and checked-out holds.
const FORMAT_2: &str = include_str!("../../../tests/fixtures/format2.hex");

fn fixture(name: &str) -> Vec<u8> {
    let line = FORMAT_2.lines().find_map(|l| l.strip_prefix(name).and_then(|l| l.strip_prefix(' '))).unwrap();
    (0..line.len()).step_by(2).map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn format_2_log_entries_outcomes_and_snapshots_decode_and_encode_the_same() {
    let (entry, outcomes, snapshot) = (fixture("REQUEST"), fixture("OUTCOMES"), fixture("MACHINE"));
    let request: Request = crate::codec::decode(&entry).unwrap();
    assert!(matches!(request.proposals[0].command, Command::HoldUncapped { .. }), "{request:?}");
    assert!(matches!(request.proposals[1].command, Command::LeaseQueueBlock { size: 5, .. }));
    let outcomes: Vec<Outcome> = crate::codec::decode(&outcomes).unwrap();
    assert_eq!(outcomes[0], Outcome::Refused(Refusal::LimitExceeded { limit: 4, current: 3, requested: 2 }));
    let mut m = Machine::decode(&snapshot).unwrap();
    m.check_invariants().unwrap();
    // Log entries encode exactly as in format 2, frame and all, so nodes of format 2 read them;
    // a snapshot gained its pricing and webhooks (none), is written as format 3, and reads back
    // the same.
    assert_eq!(crate::codec::encode(&request).unwrap(), entry);
    let rewritten = m.encode().unwrap();
    assert_eq!(rewritten[0], crate::codec::FORMAT_VERSION);
    assert_eq!(Machine::decode(&rewritten).unwrap(), m);
    // A format-2 snapshot read as the current format is refused, not misread.
    assert!(crate::codec::decode::<Machine>(&snapshot).is_err());
    // The old entry applies to the old state: a hold without a cap (its pass was used, so refused).
    let applied = m.apply(m.last_index() + 1, &request, &crate::cold::NoCold).unwrap();
    assert_eq!(applied.outcomes[0], Outcome::Refused(Refusal::AccessUsed));
    m.check_invariants().unwrap();
}

#[test]
fn a_format_2_snapshots_ended_holds_stay_in_memory_until_their_retention_and_then_drain() {
    let mut m = Machine::decode(&fixture("MACHINE")).unwrap();
    let before = m.records();
    assert!(before.holds_ended > 0, "the fixture keeps checked-out holds in memory: {before:?}");
    // A day on, the leader's Expire drops them (and expires what else is due); nothing is left
    // to drop, and nothing ended goes back to memory.
    let later = m.last_time_ms() + 86_400_000;
    let cold = crate::cold::MemCold::default();
    while m.has_due_deadlines(later) {
        let applied = m.apply(m.last_index() + 1, &Request::single(later, Proposal::internal(Command::Expire)), &cold);
        cold.write(applied.unwrap().writes);
        m.check_invariants().unwrap();
    }
    let after = m.records();
    assert_eq!((after.holds_ended, after.holds_active), (0, 0), "{after:?}");
    assert_eq!(after.orders, before.orders);
}
