//! From change records to webhook events: which records are events, their ids, and the JSON
//! body every endpoint receives.
//!
//! A body is `{"id", "type", "created", "data"}`. The id is `evt_` and 32 hex digits of a hash of
//! the record's place in the feed (shard, log index, position among the records of that index)
//! and its log time: every replay of the record (a retry, a restart from an older position)
//! carries the same id, so receivers deduplicate by it; the time keeps a restored cluster, whose
//! log indexes start again, from reusing the ids of the cluster it was restored from.

use axum::body::Bytes;
use raft_store::{Change, ChangeKind, OrderStatus, WebhookEventType};
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Changes the id of every event: never change it.
const EVENT_ID_TAG: &[u8] = b"boxoffice/webhook-event/v1";

/// One event, ready to deliver to every endpoint subscribed to its type.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookEvent {
    pub id: String,
    pub event_type: WebhookEventType,
    pub shard: u32,
    /// The log index of its record.
    pub index: u64,
    /// Its record's log time.
    pub time_ms: i64,
    /// The JSON body, as signed and sent.
    pub body: Bytes,
}

/// The type of event a record is, if it is one. A cancellation always refunds the order (its
/// record says `refunded`) and is `order.cancelled`; `order.refunded` is the other refund, of a
/// payment approved after its order lapsed (`payment_failed` and refunded).
pub fn event_type(kind: &ChangeKind) -> Option<WebhookEventType> {
    match kind {
        ChangeKind::Order { status: OrderStatus::Cancelled, .. } => Some(WebhookEventType::OrderCancelled),
        ChangeKind::Order { refunded: true, .. } => Some(WebhookEventType::OrderRefunded),
        ChangeKind::Order { status, .. } => match status {
            OrderStatus::Confirmed => Some(WebhookEventType::OrderConfirmed),
            OrderStatus::PaymentFailed => Some(WebhookEventType::OrderPaymentFailed),
            OrderStatus::Cancelled => Some(WebhookEventType::OrderCancelled),
            // Not recorded (an order is recorded when settled); nothing to tell if it were.
            OrderStatus::PendingPayment => None,
        },
        ChangeKind::Ticket { admitted_at_ms: Some(_), .. } => Some(WebhookEventType::TicketCheckedIn),
        ChangeKind::Ticket { .. } => Some(WebhookEventType::TicketTransferred),
        ChangeKind::Event | ChangeKind::Seats { .. } | ChangeKind::General { .. } => None,
    }
}

/// The events among one page of a shard's records, in feed order. A page holds every record of
/// each index it has (the feed never splits an index), so positions within an index are the
/// same in every read.
pub fn events_of(shard: u32, changes: &[Change]) -> Vec<WebhookEvent> {
    let mut events = Vec::new();
    let mut position = 0u32;
    for (n, change) in changes.iter().enumerate() {
        position = match n.checked_sub(1).map(|p| changes[p].index) {
            Some(previous) if previous == change.index => position + 1,
            _ => 0,
        };
        if let Some(event) = event_of(shard, change, position) {
            events.push(event);
        }
    }
    events
}

/// The event of the record at `position` among the records of its index, if it is one.
pub fn event_of(shard: u32, change: &Change, position: u32) -> Option<WebhookEvent> {
    let event_type = event_type(&change.kind)?;
    let id = event_id(shard, change.index, position, change.time_ms);
    let body = Body { id: &id, r#type: event_type.as_str(), created: rfc3339(change.time_ms), data: data(change)? };
    // Strings, numbers and booleans only: serializing cannot fail.
    let body = serde_json::to_vec(&body).ok()?;
    Some(WebhookEvent { id, event_type, shard, index: change.index, time_ms: change.time_ms, body: Bytes::from(body) })
}

pub fn event_id(shard: u32, index: u64, position: u32, time_ms: i64) -> String {
    let mut hash = Sha256::new();
    hash.update(EVENT_ID_TAG);
    hash.update(shard.to_be_bytes());
    hash.update(index.to_be_bytes());
    hash.update(position.to_be_bytes());
    hash.update(time_ms.to_be_bytes());
    format!("evt_{}", hex::encode(&hash.finalize()[..16]))
}

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    r#type: &'static str,
    created: String,
    data: Data,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data {
    Order {
        order_id: String,
        event_id: String,
        user_id: String,
        status: &'static str,
        refunded: bool,
    },
    Ticket {
        ticket_id: String,
        order_id: String,
        event_id: String,
        /// The holder now: the receiver of a transfer, or who was admitted.
        user_id: String,
        /// The ticket code's version: each transfer issues the next.
        version: u32,
        status: &'static str,
        admitted_at: Option<String>,
    },
}

fn data(change: &Change) -> Option<Data> {
    match &change.kind {
        ChangeKind::Order { order_id, user, status, refunded } => Some(Data::Order {
            order_id: order_id.to_string(),
            event_id: order_id.event_id.to_string(),
            user_id: user.to_string(),
            status: order_status(*status),
            refunded: *refunded,
        }),
        ChangeKind::Ticket { ticket_id, holder, version, admitted_at_ms } => Some(Data::Ticket {
            ticket_id: ticket_id.to_string(),
            order_id: ticket_id.order.to_string(),
            event_id: ticket_id.order.event_id.to_string(),
            user_id: holder.to_string(),
            version: *version,
            status: if admitted_at_ms.is_some() { "checked_in" } else { "valid" },
            admitted_at: admitted_at_ms.map(rfc3339),
        }),
        ChangeKind::Event | ChangeKind::Seats { .. } | ChangeKind::General { .. } => None,
    }
}

/// As API.md names order statuses.
fn order_status(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::PendingPayment => "pending_payment",
        OrderStatus::Confirmed => "confirmed",
        OrderStatus::PaymentFailed => "payment_failed",
        OrderStatus::Cancelled => "cancelled",
    }
}

/// Unix milliseconds as RFC 3339 in UTC (the api's times).
pub(crate) fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use raft_store::{EventId, OrderId, SeatStatus, TicketId, UserId};
    use serde_json::{json, Value};

    use super::*;

    fn order(status: OrderStatus, refunded: bool) -> ChangeKind {
        let order_id = OrderId { event_id: EventId::from_u64(7), seq: 3 };
        ChangeKind::Order { order_id, user: UserId::parse("alice").unwrap(), status, refunded }
    }

    fn ticket(admitted_at_ms: Option<i64>) -> ChangeKind {
        let ticket_id = TicketId { order: OrderId { event_id: EventId::from_u64(7), seq: 3 }, n: 1 };
        ChangeKind::Ticket { ticket_id, holder: UserId::parse("bob").unwrap(), version: 2, admitted_at_ms }
    }

    fn change(index: u64, kind: ChangeKind) -> Change {
        Change { index, time_ms: 1_700_000_000_250, event_id: EventId::from_u64(7), kind }
    }

    fn json_of(event: &WebhookEvent) -> Value {
        serde_json::from_slice(&event.body).unwrap()
    }

    #[test]
    fn records_map_to_event_types() {
        use WebhookEventType::*;
        assert_eq!(event_type(&order(OrderStatus::Confirmed, false)), Some(OrderConfirmed));
        assert_eq!(event_type(&order(OrderStatus::PaymentFailed, false)), Some(OrderPaymentFailed));
        assert_eq!(event_type(&order(OrderStatus::Cancelled, true)), Some(OrderCancelled), "a cancel refunds");
        assert_eq!(event_type(&order(OrderStatus::Cancelled, false)), Some(OrderCancelled));
        assert_eq!(event_type(&order(OrderStatus::PaymentFailed, true)), Some(OrderRefunded), "a late approval");
        assert_eq!(event_type(&order(OrderStatus::Confirmed, true)), Some(OrderRefunded));
        assert_eq!(event_type(&order(OrderStatus::PendingPayment, false)), None);
        assert_eq!(event_type(&ticket(None)), Some(TicketTransferred));
        assert_eq!(event_type(&ticket(Some(5))), Some(TicketCheckedIn));
        assert_eq!(event_type(&ChangeKind::Event), None);
        let seats = ChangeKind::Seats { seats: vec!["FLOOR-A-1".into()], status: SeatStatus::Sold };
        assert_eq!(event_type(&seats), None);
    }

    #[test]
    fn bodies_carry_the_id_type_time_and_data() {
        let order = event_of(0, &change(9, order(OrderStatus::Confirmed, false)), 1).unwrap();
        assert_eq!(
            json_of(&order),
            json!({
                "id": order.id,
                "type": "order.confirmed",
                "created": "2023-11-14T22:13:20.25Z",
                "data": {
                    "order_id": "or-ev0000000000000007-3",
                    "event_id": "ev0000000000000007",
                    "user_id": "alice",
                    "status": "confirmed",
                    "refunded": false,
                },
            })
        );
        let admitted = event_of(0, &change(9, ticket(Some(1_700_000_000_000))), 0).unwrap();
        assert_eq!(
            json_of(&admitted)["data"],
            json!({
                "ticket_id": "tk-ev0000000000000007-3-1",
                "order_id": "or-ev0000000000000007-3",
                "event_id": "ev0000000000000007",
                "user_id": "bob",
                "version": 2,
                "status": "checked_in",
                "admitted_at": "2023-11-14T22:13:20Z",
            })
        );
        let transferred = event_of(0, &change(9, ticket(None)), 0).unwrap();
        assert_eq!(json_of(&transferred)["data"]["status"], "valid");
        assert_eq!(json_of(&transferred)["data"]["admitted_at"], Value::Null);
    }

    #[test]
    fn ids_depend_on_the_records_place_and_time_only() {
        let a = event_id(1, 10, 0, 5);
        assert!(a.starts_with("evt_") && a.len() == 4 + 32, "{a}");
        assert_eq!(a, event_id(1, 10, 0, 5));
        for other in [event_id(2, 10, 0, 5), event_id(1, 11, 0, 5), event_id(1, 10, 1, 5), event_id(1, 10, 0, 6)] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn positions_count_every_record_of_an_index_in_every_read() {
        let seats = || ChangeKind::Seats { seats: vec!["FLOOR-A-1".into()], status: SeatStatus::Sold };
        let page = vec![
            change(4, seats()),
            change(4, order(OrderStatus::Confirmed, false)),
            change(5, order(OrderStatus::Cancelled, false)),
            change(5, seats()),
            change(5, ticket(None)),
        ];
        let events = events_of(3, &page);
        let places: Vec<(u64, WebhookEventType)> = events.iter().map(|e| (e.index, e.event_type)).collect();
        assert_eq!(
            places,
            vec![
                (4, WebhookEventType::OrderConfirmed),
                (5, WebhookEventType::OrderCancelled),
                (5, WebhookEventType::TicketTransferred),
            ]
        );
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let t = page[0].time_ms;
        assert_eq!(ids, [event_id(3, 4, 1, t), event_id(3, 5, 0, t), event_id(3, 5, 2, t)]);
        // A later read that starts at index 5 gives its events the same ids.
        assert_eq!(events_of(3, &page[2..]), events[1..]);
    }
}
