//! Tickets after issue: admitted once, transferred with a new code version, and the listings and
//! limits that follow them.

use super::*;
use crate::ids::TicketId;

fn check_in(h: &mut Harness, time_ms: i64, ticket: &TicketId, version: u32, holder: &str) -> Outcome {
    h.run(time_ms, Command::CheckIn { ticket_id: ticket.clone(), version, holder: user(holder) })
}

fn transfer(h: &mut Harness, time_ms: i64, ticket: &TicketId, from: &str, to: &str) -> Outcome {
    h.run(time_ms, Command::TransferTicket { ticket_id: ticket.clone(), from: user(from), to: user(to) })
}

fn card(out: Outcome) -> TicketCard {
    match out {
        Outcome::Ticket(card) => card,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

fn tickets_of(h: &Harness, who: &str, now_ms: i64) -> Vec<TicketCard> {
    let Answer::Tickets(tickets) = h.q(&Query::UserTickets { user: user(who), before: None, limit: 100 }, now_ms)
    else {
        panic!("not a ticket list")
    };
    tickets.into_iter().map(|(_, card)| card).collect()
}

#[test]
fn a_ticket_is_admitted_once_and_says_when() {
    let mut h = Harness::new();
    let order = h.buy(T0, "u1", &["FLOOR-A-1", "FLOOR-A-2"]);
    let ticket = order.tickets[0].ticket_id.clone();
    let admitted = card(check_in(&mut h, T0 + 10, &ticket, 0, "u1"));
    assert_eq!(
        (admitted.view.status, admitted.admitted_at_ms, admitted.version),
        (TicketStatus::CheckedIn, Some(T0 + 10), 0)
    );
    assert_eq!(
        refusal(check_in(&mut h, T0 + 20, &ticket, 0, "u1")),
        Refusal::AlreadyCheckedIn { admitted_at_ms: T0 + 10 }
    );
    // The other ticket of the order is its own.
    card(check_in(&mut h, T0 + 30, &order.tickets[1].ticket_id, 0, "u1"));
    // A code of no ticket, a version never issued, another holder: not this ticket's code.
    let unknown = TicketId { order: order.order_id.clone(), n: 99 };
    assert!(matches!(refusal(check_in(&mut h, T0 + 40, &unknown, 0, "u1")), Refusal::InvalidTicketCode { .. }));
    assert!(matches!(refusal(check_in(&mut h, T0 + 40, &ticket, 1, "u1")), Refusal::InvalidTicketCode { .. }));
    assert!(matches!(refusal(check_in(&mut h, T0 + 40, &ticket, 0, "u2")), Refusal::InvalidTicketCode { .. }));
    // Listings and the order show the admission; the order can no longer be cancelled.
    let listed = tickets_of(&h, "u1", T0 + 50);
    assert!(listed.iter().all(|c| c.view.status == TicketStatus::CheckedIn), "{listed:?}");
    let Answer::Order(Some(read)) = h.q(
        &Query::Order { order_id: order.order_id.clone(), actor: Actor { user: user("u1"), admin: false } },
        T0 + 50,
    ) else {
        panic!()
    };
    assert!(read.tickets.iter().all(|t| t.status == TicketStatus::CheckedIn));
    assert!(matches!(refusal(h.cancel(T0 + 60, "u1", false, &order.order_id)), Refusal::OrderNotCancellable { .. }));
}

#[test]
fn two_scans_in_one_entry_admit_once() {
    let mut h = Harness::new();
    let order = h.buy(T0, "u1", &["FLOOR-A-1"]);
    let scan = Command::CheckIn { ticket_id: order.tickets[0].ticket_id.clone(), version: 0, holder: user("u1") };
    let request =
        Request { time_ms: T0 + 5, proposals: vec![Proposal::internal(scan.clone()), Proposal::internal(scan)] };
    h.index += 1;
    let before = h.m.clone();
    let outcomes = h.apply_entry(&request);
    assert!(matches!(outcomes[0], Outcome::Ticket(_)), "{outcomes:?}");
    assert_eq!(outcomes[1], Outcome::Refused(Refusal::AlreadyCheckedIn { admitted_at_ms: T0 + 5 }));
    // A replica applying the entry again after a restart (its cold store already holds the
    // entry's records) answers the same.
    h.m = before;
    assert_eq!(h.apply_entry(&request), outcomes);
}

#[test]
fn a_transfer_reissues_the_ticket_and_the_old_code_stops_working() {
    let mut h = Harness::new();
    let order = h.buy(T0, "u1", &["FLOOR-A-1", "FLOOR-A-2"]);
    let ticket = order.tickets[0].ticket_id.clone();
    let given = card(transfer(&mut h, T0 + 10, &ticket, "u1", "u2"));
    assert_eq!((given.view.user_id.as_str(), given.version, given.view.status), ("u2", 1, TicketStatus::Valid));
    // The giver sees one ticket left, the receiver the one they were given.
    let left: Vec<u32> = tickets_of(&h, "u1", T0 + 11).iter().map(|c| c.view.ticket_id.n).collect();
    assert_eq!(left, [order.tickets[1].ticket_id.n]);
    let received = tickets_of(&h, "u2", T0 + 11);
    assert_eq!(received, std::slice::from_ref(&given));
    // Only the holder transfers it; the old code is refused at the door, the new one admitted.
    assert!(matches!(refusal(transfer(&mut h, T0 + 12, &ticket, "u1", "u3")), Refusal::NotFound { .. }));
    assert!(matches!(refusal(check_in(&mut h, T0 + 13, &ticket, 0, "u1")), Refusal::InvalidTicketCode { .. }));
    // Passed on again, and back to the buyer: each time a new version.
    assert_eq!(card(transfer(&mut h, T0 + 14, &ticket, "u2", "u3")).version, 2);
    assert!(tickets_of(&h, "u2", T0 + 15).is_empty());
    let back = card(transfer(&mut h, T0 + 16, &ticket, "u3", "u1"));
    assert_eq!((back.view.user_id.as_str(), back.version), ("u1", 3));
    assert_eq!(tickets_of(&h, "u1", T0 + 17).len(), 2);
    assert!(matches!(refusal(check_in(&mut h, T0 + 18, &ticket, 2, "u3")), Refusal::InvalidTicketCode { .. }));
    card(check_in(&mut h, T0 + 19, &ticket, 3, "u1"));
    assert_eq!(refusal(transfer(&mut h, T0 + 20, &ticket, "u1", "u2")), Refusal::TicketCheckedIn);
}

#[test]
fn a_given_ticket_keeps_its_order_from_being_cancelled_and_a_cancelled_one_is_dead() {
    let mut h = Harness::new();
    let order = h.buy(T0, "u1", &["FLOOR-A-1"]);
    let ticket = order.tickets[0].ticket_id.clone();
    card(transfer(&mut h, T0 + 1, &ticket, "u1", "u2"));
    assert!(matches!(refusal(h.cancel(T0 + 2, "u1", false, &order.order_id)), Refusal::OrderNotCancellable { .. }));
    // A cancelled order's ticket is neither admitted nor transferred.
    let other = h.buy(T0, "u1", &["FLOOR-A-2"]);
    ordered(h.cancel(T0 + 3, "u1", false, &other.order_id));
    let dead = other.tickets[0].ticket_id.clone();
    assert!(matches!(refusal(check_in(&mut h, T0 + 4, &dead, 0, "u1")), Refusal::InvalidTicketCode { .. }));
    assert!(matches!(refusal(transfer(&mut h, T0 + 5, &dead, "u1", "u2")), Refusal::TicketNotTransferable { .. }));
    // To oneself, or once the event started: refused.
    let third = h.buy(T0, "u1", &["FLOOR-A-3"]);
    let t3 = third.tickets[0].ticket_id.clone();
    assert!(matches!(refusal(transfer(&mut h, T0 + 6, &t3, "u1", "u1")), Refusal::Invalid { .. }));
    let started = T0 + 86_400_000;
    assert!(matches!(refusal(transfer(&mut h, started, &t3, "u1", "u2")), Refusal::TicketNotTransferable { .. }));
    // The door still admits it.
    card(check_in(&mut h, started, &t3, 0, "u1"));
}

#[test]
fn the_per_user_limit_applies_to_the_receiver() {
    let mut h = Harness::with_limit(Some(2));
    let a = h.buy(T0, "u1", &["FLOOR-A-1", "FLOOR-A-2"]);
    let b = h.buy(T0, "u2", &["FLOOR-B-1", "FLOOR-B-2"]);
    // u2 bought the limit: one more by transfer is refused, and nothing changed.
    assert_eq!(
        refusal(transfer(&mut h, T0 + 1, &a.tickets[0].ticket_id, "u1", "u2")),
        Refusal::LimitExceeded { limit: 2, current: 2, requested: 1 }
    );
    assert_eq!(tickets_of(&h, "u1", T0 + 2).len(), 2);
    // u3 may be given two, not three; giving one on frees a place.
    card(transfer(&mut h, T0 + 3, &a.tickets[0].ticket_id, "u1", "u3"));
    card(transfer(&mut h, T0 + 4, &a.tickets[1].ticket_id, "u1", "u3"));
    assert_eq!(
        refusal(transfer(&mut h, T0 + 5, &b.tickets[0].ticket_id, "u2", "u3")),
        Refusal::LimitExceeded { limit: 2, current: 2, requested: 1 }
    );
    card(transfer(&mut h, T0 + 6, &a.tickets[0].ticket_id, "u3", "u4"));
    card(transfer(&mut h, T0 + 7, &b.tickets[0].ticket_id, "u2", "u3"));
    // A buyer who gave tickets away still has the purchases counted: no buying past the limit.
    assert!(matches!(refusal(h.hold_seats(T0 + 8, "u1", &["FLOOR-A-9"])), Refusal::LimitExceeded { .. }));
}
