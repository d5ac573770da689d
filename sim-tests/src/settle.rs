//! I7 and I8 of DESIGN.md, checked after the faults heal: over the history of the payments
//! provider and the door (`provider.rs`, `door.rs`) and every buyer's orders as they ended.
//!
//! I7, payments:
//! - a: an order that was confirmed (it is `Confirmed`, or `Cancelled`, which only a confirmed
//!   order becomes) carries the reference of an approved result the provider sent for it;
//! - b: an approved result the store acknowledged ends in the order confirmed with its reference,
//!   or in a refund; and every approved result was acknowledged in the end, as the provider
//!   retries it until it is;
//! - c: retries of one provider event (one request id) were all answered alike: a retried
//!   notification changes nothing twice.
//!
//! I8, tickets:
//! - a ticket is admitted (answered with its card) once at most, across scanners, retries under
//!   new request ids, and crashes;
//! - no admission presents a code (version, holder) that an acknowledged transfer had replaced
//!   before the scan was sent;
//! - a ticket ends checked in if and only if an admission was acknowledged or may have happened
//!   (a scan without an answer); a scan refused as checked in already implies the same.

use std::collections::{BTreeMap, BTreeSet};

use raft_store::{OrderId, OrderStatus, OrderView, Refusal, TicketId, TicketStatus};

use crate::history::{Op, OpKind, OpResult};

/// How the orders ended: for a run's summary.
pub fn outcomes(orders: &BTreeMap<OrderId, OrderView>) -> String {
    let count = |f: &dyn Fn(&OrderView) -> bool| orders.values().filter(|o| f(o)).count();
    let lapsed = |o: &OrderView| o.status == OrderStatus::PaymentFailed && o.payment_reference.is_none();
    format!(
        "orders ended: {} confirmed, {} cancelled, {} payment failed ({} lapsed at the deadline, {} refunded), {} \
         awaiting payment",
        count(&|o| o.status == OrderStatus::Confirmed),
        count(&|o| o.status == OrderStatus::Cancelled),
        count(&|o| o.status == OrderStatus::PaymentFailed),
        count(&lapsed),
        count(&|o| o.status == OrderStatus::PaymentFailed && o.refunded),
        count(&|o| o.status == OrderStatus::PendingPayment),
    )
}

/// One provider event as the history saw it: what it said, and every answer to its attempts.
struct Event<'a> {
    approved: bool,
    reference: &'a str,
    /// (operation, answer) of each attempt that was answered.
    answers: Vec<(usize, &'a OpResult)>,
}

/// The I7 violations of a history whose buyers' orders ended as `orders`.
pub fn payments(ops: &[Op], orders: &BTreeMap<OrderId, OrderView>) -> Vec<String> {
    let mut found = Vec::new();
    let mut events: BTreeMap<(&OrderId, u32), Event> = BTreeMap::new();
    for (index, op) in ops.iter().enumerate() {
        let OpKind::Payment { order, event, approved, reference, .. } = &op.kind else { continue };
        let e = events.entry((order, *event)).or_insert(Event { approved: *approved, reference, answers: Vec::new() });
        if !matches!(op.result, OpResult::Unknown(_)) {
            e.answers.push((index, &op.result));
        }
    }
    // a: confirmed only by an approved result.
    let mut approved_refs: BTreeMap<&OrderId, BTreeSet<&str>> = BTreeMap::new();
    for ((order, _), e) in events.iter().filter(|(_, e)| e.approved) {
        approved_refs.entry(order).or_default().insert(e.reference);
    }
    for order in orders.values() {
        if !matches!(order.status, OrderStatus::Confirmed | OrderStatus::Cancelled) {
            continue;
        }
        let sent = approved_refs.get(&order.order_id);
        let paid = order.payment_reference.as_deref().is_some_and(|r| sent.is_some_and(|s| s.contains(r)));
        if !paid {
            found.push(format!(
                "I7: order {} is {:?} with payment reference {:?}, but the approved results sent for it were {:?}",
                order.order_id, order.status, order.payment_reference, sent
            ));
        }
    }
    for ((order_id, n), e) in &events {
        // c: a retried event answered alike.
        if let Some(pair) = e.answers.windows(2).find(|pair| pair[0].1 != pair[1].1) {
            found.push(format!(
                "I7: event {n} for order {order_id} answered {:?} at operation {}, then {:?} at operation {}",
                pair[0].1, pair[0].0, pair[1].1, pair[1].0
            ));
        }
        // b: every approved result acknowledged, and ending in a confirmed order or a refund.
        if !e.approved {
            continue;
        }
        let reference = e.reference;
        match e.answers.first() {
            None => {
                found.push(format!("I7: the approved result {reference} for order {order_id} was never acknowledged"));
                continue;
            }
            Some((index, refused @ OpResult::Refused(_))) => {
                found.push(format!("I7: the approved result {reference} for order {order_id} was refused at operation {index}: {refused:?}"));
                continue;
            }
            Some(_) => {}
        }
        match orders.get(*order_id) {
            None => found.push(format!("I7: order {order_id}, paid by {reference}, is gone")),
            Some(o) if o.refunded => {}
            Some(o) if o.status == OrderStatus::Confirmed && o.payment_reference.as_deref() == Some(reference) => {}
            Some(o) => found.push(format!(
                "I7: the approved result {reference} for order {order_id} was acknowledged, but the order ended \
                 {:?} with reference {:?}, not refunded",
                o.status, o.payment_reference
            )),
        }
    }
    found
}

/// What the history knows of one ticket's scans.
#[derive(Default)]
struct Scans<'a> {
    /// Acknowledged admissions: (operation index, operation).
    admitted: Vec<(usize, &'a Op)>,
    /// Some scan got no answer: it may have admitted the ticket.
    unanswered: bool,
    /// Some scan was refused as already checked in.
    refused_as_admitted: Option<usize>,
}

/// The I8 violations of a history whose buyers' orders ended as `orders`.
pub fn tickets(ops: &[Op], orders: &BTreeMap<OrderId, OrderView>) -> Vec<String> {
    let mut found = Vec::new();
    let mut scans: BTreeMap<&TicketId, Scans> = BTreeMap::new();
    // Acknowledged transfers per ticket: (returned at, the version they made).
    let mut transfers: BTreeMap<&TicketId, Vec<(i64, u32)>> = BTreeMap::new();
    for (index, op) in ops.iter().enumerate() {
        match (&op.kind, &op.result) {
            (OpKind::Transfer { ticket, .. }, OpResult::Ticket(card)) => {
                transfers.entry(ticket).or_default().push((op.returned_ms, card.version));
            }
            (OpKind::CheckIn { ticket, .. }, result) => {
                let s = scans.entry(ticket).or_default();
                match result {
                    OpResult::Ticket(_) => s.admitted.push((index, op)),
                    OpResult::Unknown(_) => s.unanswered = true,
                    OpResult::Refused(Refusal::AlreadyCheckedIn { .. }) => {
                        s.refused_as_admitted.get_or_insert(index);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for (ticket, s) in &scans {
        if s.admitted.len() > 1 {
            let shown: Vec<String> = s
                .admitted
                .iter()
                .map(|(i, op)| format!("operation {i} at {}..{} ms ({:?})", op.invoked_ms, op.returned_ms, op.kind))
                .collect();
            found.push(format!("I8: ticket {ticket} was admitted {} times: {}", s.admitted.len(), shown.join("; ")));
        }
        for (i, op) in &s.admitted {
            let OpKind::CheckIn { version, holder, .. } = &op.kind else { continue };
            let replaced = transfers
                .get(ticket)
                .and_then(|list| list.iter().find(|(at, made)| *at < op.invoked_ms && made > version));
            if let Some((at, made)) = replaced {
                found.push(format!(
                    "I8: ticket {ticket} was admitted at operation {i} with code ({version}, {holder}), which a \
                     transfer to version {made} had replaced at {at} ms, before the scan at {} ms",
                    op.invoked_ms
                ));
            }
        }
        if let Some(i) = s.refused_as_admitted.filter(|_| s.admitted.is_empty() && !s.unanswered) {
            found.push(format!(
                "I8: a scan of ticket {ticket} (operation {i}) was refused as checked in, but no scan admitted it"
            ));
        }
    }
    for order in orders.values() {
        for t in &order.tickets {
            let s = scans.get(&t.ticket_id);
            let acknowledged = s.is_some_and(|s| !s.admitted.is_empty());
            let possible = acknowledged || s.is_some_and(|s| s.unanswered);
            let checked_in = t.status == TicketStatus::CheckedIn;
            if acknowledged && !checked_in {
                found.push(format!("I8: ticket {} was admitted, but it ended {:?}", t.ticket_id, t.status));
            }
            if checked_in && !possible {
                found.push(format!(
                    "I8: ticket {} ended checked in, but no scan admitted it or went unanswered",
                    t.ticket_id
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use raft_store::{Currency, EventId, HoldId, Money, TicketCard, TicketView, UserId};

    use super::*;

    fn order_id(seq: u64) -> OrderId {
        OrderId { event_id: EventId::from_u64(7), seq }
    }

    fn ticket(seq: u64, status: TicketStatus) -> TicketView {
        TicketView {
            ticket_id: TicketId { order: order_id(seq), n: 0 },
            order_id: order_id(seq),
            event_id: EventId::from_u64(7),
            user_id: UserId::parse("buyer-0").expect("valid"),
            seat: Some("FLOOR-A-1".into()),
            section: "FLOOR".into(),
            status,
        }
    }

    fn order(seq: u64, status: OrderStatus, reference: Option<&str>, refunded: bool) -> OrderView {
        let tickets = if status == OrderStatus::Confirmed { vec![ticket(seq, TicketStatus::Valid)] } else { vec![] };
        OrderView {
            order_id: order_id(seq),
            event_id: EventId::from_u64(7),
            user_id: UserId::parse("buyer-0").expect("valid"),
            hold_id: HoldId { event_id: EventId::from_u64(7), seq: 100 + seq },
            status,
            total: Money::new(5_000, Currency::USD),
            tickets,
            created_at_ms: 0,
            updated_at_ms: 0,
            payment_deadline_ms: raft_store::PAYMENT_TIMEOUT_MS,
            payment_reference: reference.map(str::to_owned),
            refunded,
        }
    }

    fn op(kind: OpKind, result: OpResult, invoked_ms: i64) -> Op {
        Op { client: 0, kind, request: None, invoked_ms, returned_ms: invoked_ms + 10, result }
    }

    /// A result for order `seq`: its event 0 if a decline, 1 if an approval.
    fn pay(seq: u64, approved: bool, reference: &str, result: OpResult) -> Op {
        let kind = OpKind::Payment {
            order: order_id(seq),
            hold: HoldId { event_id: EventId::from_u64(7), seq: 100 + seq },
            event: u32::from(approved),
            approved,
            reference: reference.into(),
            attempt: 0,
        };
        op(kind, result, 0)
    }

    fn ended(orders: Vec<OrderView>) -> BTreeMap<OrderId, OrderView> {
        orders.into_iter().map(|o| (o.order_id.clone(), o)).collect()
    }

    #[test]
    fn an_order_confirmed_without_an_approved_result_is_caught() {
        let confirmed = order(1, OrderStatus::Confirmed, Some("ch-1"), false);
        let declined = pay(1, false, "dc-1-0", OpResult::Order(confirmed.clone()));
        assert!(payments(std::slice::from_ref(&declined), &ended(vec![confirmed.clone()]))[0].starts_with("I7:"));
        let approved = pay(1, true, "ch-1", OpResult::Order(confirmed.clone()));
        assert!(payments(&[declined, approved], &ended(vec![confirmed])).is_empty());
    }

    #[test]
    fn an_acknowledged_approval_must_end_confirmed_or_refunded() {
        let failed = order(1, OrderStatus::PaymentFailed, None, false);
        let approved = pay(1, true, "ch-1", OpResult::Order(failed.clone()));
        assert!(payments(std::slice::from_ref(&approved), &ended(vec![failed]))[0].starts_with("I7:"));
        let refunded = order(1, OrderStatus::PaymentFailed, Some("ch-1"), true);
        assert!(payments(std::slice::from_ref(&approved), &ended(vec![refunded])).is_empty());
        let unanswered = pay(1, true, "ch-1", OpResult::Unknown("timeout".into()));
        let confirmed = order(1, OrderStatus::Confirmed, Some("ch-1"), false);
        assert!(payments(&[unanswered], &ended(vec![confirmed]))[0].contains("never acknowledged"));
    }

    fn scan(seq: u64, version: u32, holder: &str, result: OpResult, invoked_ms: i64) -> Op {
        let holder = UserId::parse(holder).expect("valid");
        let kind = OpKind::CheckIn { ticket: TicketId { order: order_id(seq), n: 0 }, version, holder, scanner: 0 };
        op(kind, result, invoked_ms)
    }

    fn admitted(seq: u64) -> OpResult {
        OpResult::Ticket(TicketCard { view: ticket(seq, TicketStatus::CheckedIn), version: 0, admitted_at_ms: Some(5) })
    }

    #[test]
    fn a_ticket_admitted_twice_is_caught() {
        let mut confirmed = order(1, OrderStatus::Confirmed, Some("ch-1"), false);
        confirmed.tickets[0].status = TicketStatus::CheckedIn;
        let once = vec![
            scan(1, 0, "buyer-0", admitted(1), 0),
            scan(1, 0, "buyer-0", OpResult::Refused(Refusal::AlreadyCheckedIn { admitted_at_ms: 5 }), 0),
        ];
        assert!(tickets(&once, &ended(vec![confirmed.clone()])).is_empty());
        let twice = vec![scan(1, 0, "buyer-0", admitted(1), 0), scan(1, 0, "buyer-0", admitted(1), 0)];
        assert!(tickets(&twice, &ended(vec![confirmed]))[0].starts_with("I8:"));
    }

    #[test]
    fn an_admission_with_a_replaced_code_is_caught() {
        let mut confirmed = order(1, OrderStatus::Confirmed, Some("ch-1"), false);
        confirmed.tickets[0].status = TicketStatus::CheckedIn;
        let fan = UserId::parse("fan").expect("valid");
        let card = TicketCard { view: ticket(1, TicketStatus::Valid), version: 1, admitted_at_ms: None };
        let transfer = OpKind::Transfer {
            ticket: TicketId { order: order_id(1), n: 0 },
            from: UserId::parse("buyer-0").expect("valid"),
            to: fan,
        };
        let ops = vec![op(transfer, OpResult::Ticket(card), 0), scan(1, 0, "buyer-0", admitted(1), 100)];
        assert!(tickets(&ops, &ended(vec![confirmed]))[0].contains("replaced"));
    }

    #[test]
    fn a_ticket_checked_in_without_a_scan_is_caught() {
        let mut confirmed = order(1, OrderStatus::Confirmed, Some("ch-1"), false);
        confirmed.tickets[0].status = TicketStatus::CheckedIn;
        assert!(tickets(&[], &ended(vec![confirmed.clone()]))[0].starts_with("I8:"));
        let unanswered = vec![scan(1, 0, "buyer-0", OpResult::Unknown("timeout".into()), 0)];
        assert!(tickets(&unanswered, &ended(vec![confirmed])).is_empty(), "it may have been admitted");
        let valid = order(1, OrderStatus::Confirmed, Some("ch-1"), false);
        let ops = vec![scan(1, 0, "buyer-0", admitted(1), 0)];
        assert!(tickets(&ops, &ended(vec![valid]))[0].contains("ended Valid"));
    }
}
