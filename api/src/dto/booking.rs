//! Holds, orders, tickets, and the small documents of auth and operations.

use std::collections::BTreeSet;

use raft_store::{HoldStatus, HoldView, OrderStatus, OrderView, Selection, TicketStatus, TicketView};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::rules::{self, HOLD_QUANTITY, HOLD_SEATS, PART_ID, SEAT_ID};
use super::{time_json, MoneyJson};
use crate::error::ApiError;
use crate::payments::{SandboxPayments, StripeGateway};
use seams::GroupHealth;

/// Body of `POST /v1/events/{event_id}/holds`: `seats`, or `section` with `quantity`. The
/// fields of the other shape may be absent or `null`, nothing else.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct HoldBody {
    /// Seat ids `SECTION-ROW-NUMBER` of seated sections.
    pub seats: Option<Vec<String>>,
    /// A general-admission section, with `quantity`.
    pub section: Option<String>,
    #[serde(default, deserialize_with = "super::integer::option_u32")]
    pub quantity: Option<u32>,
}

impl ToSchema for HoldBody {}

/// Two shapes, exactly one of which a body has (`oneOf`): a schema cannot derive this.
impl PartialSchema for HoldBody {
    fn schema() -> RefOr<Schema> {
        let null = || ObjectBuilder::new().schema_type(Type::Null).build();
        let seats = ObjectBuilder::new()
            .title(Some("Seats"))
            .description(Some("Numbered seats of seated sections, all or none."))
            .property("seats", rules::hold_seats())
            .property("section", null())
            .property("quantity", null())
            .required("seats")
            .build();
        let admissions = ObjectBuilder::new()
            .title(Some("General admission"))
            .description(Some("A quantity of a general-admission section."))
            .property("section", rules::part_id())
            .property("quantity", rules::hold_quantity())
            .property("seats", null())
            .required("section")
            .required("quantity")
            .build();
        OneOfBuilder::new()
            .description(Some("`seats`, or `section` with `quantity`."))
            .item(seats)
            .item(admissions)
            .into()
    }
}

impl HoldBody {
    pub(crate) fn into_selection(self) -> Result<Selection, ApiError> {
        let bad = |detail: String| Err(ApiError::BadRequest(detail));
        match (self.seats, self.section, self.quantity) {
            (Some(seats), None, None) => {
                HOLD_SEATS.check("seats", seats.len())?;
                let mut seen = BTreeSet::new();
                for seat in &seats {
                    SEAT_ID.check("seats[]", seat)?;
                    if !seen.insert(seat.as_str()) {
                        return bad(format!("seat {seat} is listed twice"));
                    }
                }
                Ok(Selection::Seats(seats))
            }
            (None, Some(section), Some(quantity)) => {
                PART_ID.check("section", &section)?;
                HOLD_QUANTITY.check("quantity", i64::from(quantity))?;
                Ok(Selection::General { section, quantity })
            }
            (Some(_), _, _) => bad("give either `seats` or `section` with `quantity`, not both".into()),
            _ => bad("give either `seats`, or `section` with `quantity`".into()),
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HoldStatusJson {
    Active,
    Released,
    Expired,
    CheckedOut,
}

impl From<HoldStatus> for HoldStatusJson {
    fn from(s: HoldStatus) -> Self {
        match s {
            HoldStatus::Active => HoldStatusJson::Active,
            HoldStatus::Released => HoldStatusJson::Released,
            HoldStatus::Expired => HoldStatusJson::Expired,
            HoldStatus::CheckedOut => HoldStatusJson::CheckedOut,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct HoldJson {
    pub hold_id: String,
    pub event_id: String,
    pub user_id: String,
    /// Empty for a general-admission hold.
    pub seats: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    pub total: MoneyJson,
    pub status: HoldStatusJson,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// When the hold stopped being active (released, expired or checked out).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    /// Set once the hold is checked out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

impl From<&HoldView> for HoldJson {
    fn from(h: &HoldView) -> Self {
        HoldJson {
            hold_id: h.hold_id.to_string(),
            event_id: h.event_id.to_string(),
            user_id: h.user_id.to_string(),
            seats: h.seats.clone(),
            section: h.section.clone(),
            quantity: h.quantity,
            total: h.total.into(),
            status: h.status.into(),
            created_at: time_json(h.created_at_ms),
            expires_at: time_json(h.expires_at_ms),
            ended_at: h.ended_at_ms.map(time_json),
            order_id: h.order_id.as_ref().map(ToString::to_string),
        }
    }
}

/// Body of `POST /v1/holds/{hold_id}/checkout`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub(crate) struct CheckoutBody {
    /// `sandbox_ok` pays at once, `sandbox_decline` is declined (the sandbox gateway); `stripe`
    /// (where the server is configured for it) answers a PaymentIntent's client secret, and the
    /// order is confirmed when Stripe reports the payment.
    #[schema(schema_with = payment_method)]
    pub payment_method: String,
    /// With `stripe`: pay on Stripe's hosted page (a Checkout Session) rather than with the
    /// PaymentIntent's client secret; the answer's `payment.url` is the page.
    #[serde(default)]
    #[schema(schema_with = rules::return_url_or_null)]
    pub return_url: Option<String>,
}

/// Every method this build knows. The served document lists those the running server's gateway
/// takes (`openapi::document`), the methods a checkout accepts.
pub(crate) const PAYMENT_METHODS: [&str; 3] =
    [SandboxPayments::APPROVE, SandboxPayments::DECLINE, StripeGateway::METHOD];

fn payment_method() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(PAYMENT_METHODS))
        .examples([serde_json::json!(SandboxPayments::APPROVE)])
        .build()
}

/// A body with nothing in it: `{}` or no body at all.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub(crate) struct EmptyBody {}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OrderStatusJson {
    PendingPayment,
    Confirmed,
    PaymentFailed,
    Cancelled,
}

impl From<OrderStatus> for OrderStatusJson {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::PendingPayment => OrderStatusJson::PendingPayment,
            OrderStatus::Confirmed => OrderStatusJson::Confirmed,
            OrderStatus::PaymentFailed => OrderStatusJson::PaymentFailed,
            OrderStatus::Cancelled => OrderStatusJson::Cancelled,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TicketStatusJson {
    Valid,
    Cancelled,
    CheckedIn,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct TicketJson {
    pub ticket_id: String,
    pub order_id: String,
    pub event_id: String,
    pub user_id: String,
    /// Absent for a general-admission ticket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat: Option<String>,
    pub section: String,
    pub status: TicketStatusJson,
    /// When it was admitted at the door.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub admitted_at: Option<String>,
    /// The signed code the door admits (`BX1.<payload>.<signature>`; its event's key is at
    /// `GET /v1/events/{event_id}/checkin-key`). Given to the ticket's holder only, where the
    /// ticket stands as of now: in `GET /v1/me/tickets`, a transfer's and a check-in's answer.
    /// A transfer replaces it; an order lists its tickets without.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The code as a QR image: a standalone SVG document (in `GET /v1/me/tickets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_svg: Option<String>,
}

impl From<&TicketView> for TicketJson {
    fn from(t: &TicketView) -> Self {
        TicketJson {
            ticket_id: t.ticket_id.to_string(),
            order_id: t.order_id.to_string(),
            event_id: t.event_id.to_string(),
            user_id: t.user_id.to_string(),
            seat: t.seat.clone(),
            section: t.section.clone(),
            status: match t.status {
                TicketStatus::Valid => TicketStatusJson::Valid,
                TicketStatus::Cancelled => TicketStatusJson::Cancelled,
                TicketStatus::CheckedIn => TicketStatusJson::CheckedIn,
            },
            admitted_at: None,
            code: None,
            qr_svg: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct OrderJson {
    pub order_id: String,
    pub event_id: String,
    pub user_id: String,
    pub hold_id: String,
    pub status: OrderStatusJson,
    pub total: MoneyJson,
    pub tickets: Vec<TicketJson>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// While `pending_payment`: when the seats go back on sale without a payment result.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub payment_deadline: Option<String>,
    pub payment_reference: Option<String>,
    pub refunded: bool,
}

impl From<&OrderView> for OrderJson {
    fn from(o: &OrderView) -> Self {
        OrderJson {
            order_id: o.order_id.to_string(),
            event_id: o.event_id.to_string(),
            user_id: o.user_id.to_string(),
            hold_id: o.hold_id.to_string(),
            status: o.status.into(),
            total: o.total.into(),
            tickets: o.tickets.iter().map(TicketJson::from).collect(),
            created_at: time_json(o.created_at_ms),
            updated_at: time_json(o.updated_at_ms),
            payment_deadline: (o.status == OrderStatus::PendingPayment).then(|| time_json(o.payment_deadline_ms)),
            payment_reference: o.payment_reference.clone(),
            refunded: o.refunded,
        }
    }
}

/// Body of `POST /v1/auth/dev-token`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub(crate) struct DevTokenBody {
    #[schema(schema_with = rules::dev_user_id)]
    pub user_id: String,
    /// `user` (default), `admin` or `scanner`.
    #[serde(default)]
    #[schema(schema_with = dev_token_role)]
    pub role: Option<String>,
}

/// The roles a dev token may carry: each is a `token::Role` (a test checks).
pub(crate) const DEV_TOKEN_ROLES: [&str; 3] = ["user", "admin", "scanner"];

fn dev_token_role() -> utoipa::openapi::schema::Object {
    let values = DEV_TOKEN_ROLES.iter().map(|r| serde_json::json!(r)).chain([serde_json::Value::Null]);
    ObjectBuilder::new()
        .schema_type([Type::String, Type::Null].into_iter().collect::<utoipa::openapi::schema::SchemaType>())
        .enum_values(Some(values))
        .build()
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct DevTokenJson {
    pub token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub user_id: String,
    pub role: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct GroupHealthJson {
    /// `meta` or `shard-N`.
    pub group: String,
    pub leader: Option<u64>,
    pub last_applied_index: u64,
}

impl From<&GroupHealth> for GroupHealthJson {
    fn from(g: &GroupHealth) -> Self {
        GroupHealthJson { group: g.group.to_string(), leader: g.leader, last_applied_index: g.last_applied_index }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct ReadinessJson {
    pub ready: bool,
    pub groups: Vec<GroupHealthJson>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct HealthJson {
    pub status: String,
}

/// An RFC 9457 problem document; some codes add fields (`unavailable`, `section`, `limit`, ...).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct ProblemJson {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Machine-readable: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `seats_unavailable`, `sold_out`, `limit_exceeded`, `not_on_sale`, `hold_expired`,
    /// `hold_not_active`, `order_not_cancellable`, `queue_required`, `idempotency_key_reused`,
    /// `invalid_signature` (a payment provider's webhook),
    /// `method_not_allowed`, `payload_too_large`, `rate_limited`, `unavailable`, `internal`.
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(seats: Option<&[&str]>, section: Option<&str>, quantity: Option<u32>) -> HoldBody {
        HoldBody {
            seats: seats.map(|s| s.iter().map(|x| x.to_string()).collect()),
            section: section.map(str::to_owned),
            quantity,
        }
    }

    #[test]
    fn hold_body_takes_seats_xor_a_quantity() {
        assert!(body(Some(&["FLOOR-A-1"]), None, None).into_selection().is_ok());
        assert!(body(None, Some("LAWN"), Some(2)).into_selection().is_ok());
        assert!(body(Some(&["FLOOR-A-1"]), Some("LAWN"), Some(2)).into_selection().is_err());
        assert!(body(None, None, None).into_selection().is_err());
        assert!(body(None, Some("LAWN"), None).into_selection().is_err());
        assert!(body(None, None, Some(2)).into_selection().is_err());
    }

    #[test]
    fn hold_body_rejects_malformed_seat_ids_and_bad_counts() {
        for bad in ["FLOOR", "FLOOR-A", "FLOOR-A-", "FLOOR-A-x", "FL\u{0}OR-A-1", "FLOOR-A-12345", "-A-1"] {
            assert!(body(Some(&[bad]), None, None).into_selection().is_err(), "{bad:?}");
        }
        assert!(body(Some(&["FLOOR-A-1", "FLOOR-A-1"]), None, None).into_selection().is_err());
        assert!(body(Some(&[]), None, None).into_selection().is_err());
        assert!(body(None, Some("LAWN"), Some(0)).into_selection().is_err());
        assert!(body(None, Some("LAWN"), Some(raft_store::HOLD_QUANTITY_MAX + 1)).into_selection().is_err());
        assert!(body(None, Some("LA-WN"), Some(1)).into_selection().is_err());
    }
}
