//! Orders (checkout, payment, cancel) and the records around them: events, groups, the layout,
//! listings and the change feed.

use super::*;

// ---- Checkout, payment, cancel ----------------------------------------------------------------

#[test]
fn full_lifecycle_issues_tickets_and_cancel_returns_the_seats() {
    let mut h = Harness::new();
    let order = h.buy(T0, "u1", &["FLOOR-A-1", "FLOOR-A-2"]);
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.total, usd(10_000));
    assert_eq!(order.tickets.len(), 2);
    assert_eq!(order.tickets[0].seat.as_deref(), Some("FLOOR-A-1"));
    assert_eq!(h.seat_status(T0, "FLOOR-A-1"), SeatStatus::Sold);
    assert_eq!(h.section(T0, "FLOOR").sold, 2);
    let Answer::Tickets(tickets) = h.q(&Query::UserTickets { user: user("u1"), before: None, limit: 10 }, T0) else {
        panic!()
    };
    assert_eq!(tickets.len(), 2);

    let cancelled = ordered(h.cancel(T0 + 1, "u1", false, &order.order_id));
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert!(cancelled.refunded);
    assert!(cancelled.tickets.iter().all(|t| t.status == TicketStatus::Cancelled));
    assert_eq!(h.seat_status(T0 + 1, "FLOOR-A-1"), SeatStatus::Available);
    assert_eq!(h.section(T0 + 1, "FLOOR").sold, 0);
    held(h.hold_seats(T0 + 2, "u2", &["FLOOR-A-1"]));
}

#[test]
fn cancelling_a_cancelled_order_changes_nothing() {
    let mut h = Harness::new();
    let order = h.buy(T0, "u1", &["FLOOR-A-1"]);
    let first = ordered(h.cancel(T0 + 1, "u1", false, &order.order_id));
    held(h.hold_seats(T0 + 2, "u2", &["FLOOR-A-1"]));
    let second = ordered(h.cancel(T0 + 3, "u1", false, &order.order_id));
    assert_eq!(first, second);
    assert_eq!(h.seat_status(T0 + 3, "FLOOR-A-1"), SeatStatus::Held, "the new holder keeps the seat");
}

#[test]
fn second_checkout_of_a_hold_returns_the_same_order() {
    let mut h = Harness::new();
    let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let a = ordered(h.checkout(T0, "u1", &hold.hold_id));
    let b = ordered(h.checkout(T0 + 1, "u1", &hold.hold_id));
    assert_eq!(a.order_id, b.order_id);
}

#[test]
fn declined_payment_releases_the_seats() {
    let mut h = Harness::new();
    let hold = held(h.hold_general(T0, "u1", 2));
    let order = ordered(h.checkout(T0, "u1", &hold.hold_id));
    let failed = ordered(h.pay(T0 + 1, &order.order_id, false));
    assert_eq!(failed.status, OrderStatus::PaymentFailed);
    assert!(failed.tickets.is_empty());
    assert_eq!(h.section(T0 + 1, "LAWN").available, 5);
    // A repeated result changes nothing.
    assert_eq!(ordered(h.pay(T0 + 2, &order.order_id, true)).status, OrderStatus::PaymentFailed);
}

#[test]
fn released_and_checked_out_holds_cannot_be_checked_out_or_released() {
    let mut h = Harness::new();
    let a = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let released = held(h.run(T0, Command::ReleaseHold { hold_id: a.hold_id.clone(), user: user("u1") }));
    assert_eq!(released.status, HoldStatus::Released);
    assert_eq!(h.seat_status(T0, "FLOOR-A-1"), SeatStatus::Available, "free at once");
    assert_eq!(refusal(h.checkout(T0, "u1", &a.hold_id)), Refusal::HoldNotActive { status: HoldStatus::Released });
    let b = held(h.hold_seats(T0, "u1", &["FLOOR-A-2"]));
    ordered(h.checkout(T0, "u1", &b.hold_id));
    let r = refusal(h.run(T0, Command::ReleaseHold { hold_id: b.hold_id, user: user("u1") }));
    assert_eq!(r, Refusal::HoldNotActive { status: HoldStatus::CheckedOut });
}

#[test]
fn pending_and_failed_orders_are_not_cancellable_and_users_cannot_cancel_after_start() {
    let mut h = Harness::new();
    let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let pending = ordered(h.checkout(T0, "u1", &hold.hold_id));
    assert!(matches!(refusal(h.cancel(T0, "u1", false, &pending.order_id)), Refusal::OrderNotCancellable { .. }));
    let order = h.buy(T0, "u1", &["FLOOR-A-2"]);
    let start = T0 + 86_400_000;
    assert!(matches!(refusal(h.cancel(start, "u1", false, &order.order_id)), Refusal::OrderNotCancellable { .. }));
    assert_eq!(ordered(h.cancel(start, "admin", true, &order.order_id)).status, OrderStatus::Cancelled);
}

#[test]
fn another_users_hold_and_order_are_not_found() {
    let mut h = Harness::new();
    let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    assert!(matches!(refusal(h.checkout(T0, "u2", &hold.hold_id)), Refusal::NotFound { .. }));
    assert!(matches!(
        refusal(h.run(T0, Command::ReleaseHold { hold_id: hold.hold_id.clone(), user: user("u2") })),
        Refusal::NotFound { .. }
    ));
    let Answer::Hold(None) = h.q(&Query::Hold { hold_id: hold.hold_id.clone(), user: user("u2") }, T0) else {
        panic!()
    };
    let order = ordered(h.checkout(T0, "u1", &hold.hold_id));
    assert!(matches!(refusal(h.cancel(T0, "u2", false, &order.order_id)), Refusal::NotFound { .. }));
    let actor = Actor { user: user("u2"), admin: false };
    let Answer::Order(None) = h.q(&Query::Order { order_id: order.order_id.clone(), actor }, T0) else { panic!() };
    let admin = Actor { user: user("ops"), admin: true };
    let Answer::Order(Some(_)) = h.q(&Query::Order { order_id: order.order_id, actor: admin }, T0) else { panic!() };
    // An id whose sequence exists but under another event is not found either.
    let forged = HoldId { event_id: EventId::from_u64(99), seq: hold.hold_id.seq };
    let Answer::Hold(None) = h.q(&Query::Hold { hold_id: forged, user: user("u1") }, T0) else { panic!() };
}

// ---- Events and groups -----------------------------------------------------------------------

#[test]
fn events_must_start_in_the_future_and_ids_are_unique() {
    let mut h = Harness::new();
    let Answer::Event(Some(view)) = h.q(&Query::Event(h.event.clone()), T0) else { panic!() };
    let mut spec = view.spec.clone();
    let r = refusal(h.run(T0, Command::CreateEvent(spec.clone())));
    assert!(matches!(r, Refusal::Conflict { .. }));
    // Find another id on this shard, and make it start in the past.
    spec.event_id = (0..)
        .map(EventId::from_u64)
        .find(|e| shard_of(e, SHARDS) == h.m.group().as_shard().unwrap() && *e != h.event)
        .unwrap();
    spec.starts_at_ms = T0 - 1;
    spec.on_sale_at_ms = T0 - 2;
    assert!(matches!(refusal(h.run(T0, Command::CreateEvent(spec))), Refusal::Invalid { .. }));
}

#[test]
fn commands_for_another_group_are_refused() {
    let mut meta = Machine::new(GroupId::META, SHARDS);
    let checkout = Command::Checkout { hold_id: HoldId { event_id: EventId::from_u64(1), seq: 0 }, user: user("u") };
    assert_eq!(apply_bare(&mut meta, 1, &one(checkout)), vec![Outcome::Refused(Refusal::WrongGroup)]);
    let mut h = Harness::new();
    assert_eq!(refusal(h.run(T0, Command::CreateVenue(venue()))), Refusal::WrongGroup);
    assert!(matches!(apply_bare(&mut meta, 2, &one(Command::CreateVenue(venue()))).remove(0), Outcome::Venue(_)));
}

#[test]
fn the_layout_changes_only_by_its_rules() {
    let mut meta = Machine::new(GroupId::META, SHARDS);
    let mut index = 0;
    let mut run = |command| {
        index += 1;
        apply_bare(&mut meta, index, &one(command)).remove(0)
    };
    let nodes = vec![(1, "a:1".to_string()), (2, "a:2".to_string()), (3, "a:3".to_string())];
    assert!(matches!(run(Command::AddNode { id: 4, addr: "a:4".into() }), Outcome::Refused(Refusal::Invalid { .. })));
    let Outcome::Layout(layout) = run(Command::InitLayout { shard_count: 4, replication: 3, nodes: nodes.clone() })
    else {
        panic!()
    };
    assert_eq!((layout.shard_count, layout.version), (4, 1));
    let again = run(Command::InitLayout { shard_count: 4, replication: 3, nodes: nodes.clone() });
    assert_eq!(again, Outcome::Layout(layout.clone()), "init is idempotent");
    assert!(matches!(
        run(Command::InitLayout { shard_count: 8, replication: 3, nodes }),
        Outcome::Refused(Refusal::Conflict { .. })
    ));
    let Outcome::Layout(grown) = run(Command::AddNode { id: 4, addr: "a:4".into() }) else { panic!() };
    assert_eq!(grown.version, 2);
    let Outcome::Layout(same) = run(Command::AddNode { id: 4, addr: "a:4".into() }) else { panic!() };
    assert_eq!(same.version, 2, "adding an active node again changes nothing");
    assert!(matches!(run(Command::ForgetNode { id: 2 }), Outcome::Refused(Refusal::Invalid { .. })), "drain first");
    assert!(matches!(run(Command::DrainNode { id: 2 }), Outcome::Layout(_)));
    assert!(
        matches!(run(Command::ForgetNode { id: 2 }), Outcome::Refused(Refusal::Invalid { .. })),
        "still holds replicas"
    );
    for shard in 0..4 {
        let replicas = vec![1, 3, 4];
        assert!(matches!(run(Command::SetPlacement { shard, replicas }), Outcome::Layout(_)));
    }
    assert!(matches!(
        run(Command::SetPlacement { shard: 9, replicas: vec![1] }),
        Outcome::Refused(Refusal::Invalid { .. })
    ));
    assert!(matches!(
        run(Command::SetPlacement { shard: 0, replicas: vec![1, 1] }),
        Outcome::Refused(Refusal::Invalid { .. })
    ));
    let Outcome::Layout(done) = run(Command::ForgetNode { id: 2 }) else { panic!() };
    assert_eq!(done.nodes[&2].status, crate::layout::NodeStatus::Removed);
    assert!(
        matches!(run(Command::AddNode { id: 2, addr: "a:2".into() }), Outcome::Refused(Refusal::Conflict { .. })),
        "ids are never reused"
    );
}

#[test]
fn listing_is_soonest_first_with_a_cursor() {
    let event = EventId::from_u64(1);
    let group = GroupId::shard(shard_of(&event, 1));
    let mut m = Machine::new(group, 1);
    let base = Harness::new().q(&Query::Event(EventId::from_u64(42)), T0);
    let Answer::Event(Some(view)) = base else { panic!() };
    for (i, start) in [(1u64, 5_000_000i64), (2, 3_000_000), (3, 4_000_000)] {
        let mut spec = view.spec.clone();
        spec.event_id = EventId::from_u64(i);
        spec.starts_at_ms = start;
        spec.on_sale_at_ms = 0;
        assert!(matches!(apply_bare(&mut m, i, &one(Command::CreateEvent(spec))).remove(0), Outcome::Event(_)));
    }
    let page = |after, limit| {
        let Answer::Events(list) = query_bare(&m, &Query::Events { from_ms: 0, to_ms: i64::MAX, after, limit }, 0)
        else {
            panic!()
        };
        list.into_iter().map(|e| (e.starts_at_ms, e.event_id)).collect::<Vec<_>>()
    };
    let first = page(None, 2);
    assert_eq!(first.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3_000_000, 4_000_000]);
    let rest = page(first.last().cloned(), 2);
    assert_eq!(rest.iter().map(|e| e.0).collect::<Vec<_>>(), vec![5_000_000]);
}

#[test]
fn change_records_past_their_age_leave_as_new_ones_are_recorded() {
    use crate::limits::{CHANGES_AGED_DROPS_MAX, CHANGES_RETAIN_MS};
    let mut h = Harness::new();
    h.checking = false;
    let changes = |h: &Harness| h.m.records().changes as usize;
    // A burst (the event's record and two per hold released), then quiet: nothing leaves while
    // nothing is recorded.
    for i in 0..1_000 {
        let hold = held(h.hold_seats(T0 + i, "u1", &["FLOOR-A-1"]));
        h.run(T0 + i, Command::ReleaseHold { hold_id: hold.hold_id, user: user("u1") });
    }
    assert_eq!(changes(&h), 2_001);
    let burst_end = h.index;
    // A change recorded later than the age drops at most the bound of old records at once...
    let later = T0 + 1_000 + CHANGES_RETAIN_MS;
    held(h.hold_seats(later, "u2", &["FLOOR-B-1"]));
    assert_eq!(changes(&h), 2_001 - CHANGES_AGED_DROPS_MAX + 1);
    // ... and the next ones the rest; a reader from within the burst is told it was compacted,
    // one from its end reads on.
    held(h.hold_seats(later, "u2", &["FLOOR-B-2"]));
    assert_eq!(changes(&h), 2);
    let Answer::Changes(page) = h.q(&Query::Changes { after_index: burst_end - 1, limit: 10 }, later) else { panic!() };
    assert!(matches!(page, ChangesPage::Compacted { .. }), "{page:?}");
    let Answer::Changes(ChangesPage::Records { changes, .. }) =
        h.q(&Query::Changes { after_index: burst_end, limit: 10 }, later)
    else {
        panic!()
    };
    assert_eq!(changes.len(), 2);
    h.m.check_invariants().unwrap();
}

#[test]
fn change_feed_reports_compaction_when_records_were_dropped() {
    let mut h = Harness::new();
    let Answer::Changes(ChangesPage::Records { changes, last_index }) =
        h.q(&Query::Changes { after_index: 0, limit: 10 }, T0)
    else {
        panic!()
    };
    assert_eq!((changes.len(), last_index), (1, 1));
    assert_eq!(changes[0].kind, ChangeKind::Event);
    h.checking = false;
    for i in 0..(crate::limits::CHANGES_RETAINED_MAX as i64 / 2 + 1) {
        let hold = held(h.hold_seats(T0 + i, "u1", &["FLOOR-A-1"]));
        h.run(T0 + i, Command::ReleaseHold { hold_id: hold.hold_id, user: user("u1") });
    }
    let Answer::Changes(page) = h.q(&Query::Changes { after_index: 0, limit: 10 }, T0) else { panic!() };
    assert!(matches!(page, ChangesPage::Compacted { .. }), "{page:?}");
    let Answer::Changes(ChangesPage::Records { changes, .. }) =
        h.q(&Query::Changes { after_index: h.index - 1, limit: 10 }, T0)
    else {
        panic!()
    };
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].index, h.index);
    h.m.check_invariants().unwrap();
}
