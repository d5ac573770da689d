//! The checkout's answers and the payment provider's webhook documents.

use raft_store::{OrderStatus, OrderView};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::OneOfBuilder;
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::OrderJson;

/// What a checkout answers: the order, or for a provider the buyer completes the payment with
/// (Stripe), the order and what the buyer's client needs for that.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum CheckoutJson {
    Order(OrderJson),
    Provider(ProviderCheckoutJson),
}

impl ToSchema for CheckoutJson {}

/// Two shapes, told apart by their required fields (`order_id` or `order`): a schema cannot
/// derive an untagged enum.
impl PartialSchema for CheckoutJson {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "The order (the sandbox methods), or the order and the payment the buyer completes with the \
                 provider (`stripe`).",
            ))
            .item(Ref::from_schema_name("OrderJson"))
            .item(Ref::from_schema_name("ProviderCheckoutJson"))
            .into()
    }
}

/// Checkout with Stripe: the order (`pending_payment` until Stripe reports the payment), and the
/// PaymentIntent's client secret for Stripe.js (`stripe.confirmPayment`), or with a
/// `return_url` the hosted payment page to send the buyer to (`payment.url`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct ProviderCheckoutJson {
    pub order: OrderJson,
    pub payment: PaymentJson,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct PaymentJson {
    /// `stripe`.
    pub provider: String,
    /// The PaymentIntent's client secret, while the payment awaits the buyer; `null` once the
    /// order is settled. With a `return_url` (Stripe's hosted page), the Checkout Session's
    /// client secret where Stripe gives one (embedded sessions), otherwise an empty string: the
    /// buyer pays at `url`, and needs no secret.
    pub client_secret: Option<String>,
    pub status: PaymentStatusJson,
    /// With a `return_url`, while the payment awaits the buyer: Stripe's hosted payment page,
    /// to send the buyer's browser to. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Where the payment stands, from the order: `requires_action` while the buyer completes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PaymentStatusJson {
    RequiresAction,
    Succeeded,
    Failed,
    Refunded,
}

impl PaymentStatusJson {
    pub(crate) fn of(order: &OrderView) -> PaymentStatusJson {
        match order.status {
            _ if order.refunded => PaymentStatusJson::Refunded,
            OrderStatus::PendingPayment => PaymentStatusJson::RequiresAction,
            OrderStatus::Confirmed | OrderStatus::Cancelled => PaymentStatusJson::Succeeded,
            OrderStatus::PaymentFailed => PaymentStatusJson::Failed,
        }
    }
}

/// The webhook's answer once an event is applied, seen before, or not ours to act on.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct ReceivedJson {
    pub received: bool,
}

/// A Stripe event, as far as it is read: `data.object` is a PaymentIntent for the two types acted
/// on. Unknown fields are ignored; Stripe adds them without notice.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct StripeEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: StripeEventData,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct StripeEventData {
    pub object: serde_json::Value,
}

/// The parts of a PaymentIntent the webhook reads.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct StripeIntent {
    pub id: String,
    #[serde(default)]
    pub metadata: Option<StripeMetadata>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct StripeMetadata {
    pub order_id: Option<String>,
}
