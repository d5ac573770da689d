//! What payment providers report: Stripe's webhook.
//!
//! Stripe POSTs an event for each change of a PaymentIntent, signed with the endpoint's secret,
//! and delivers it again until it gets a 2xx. So the signature is checked over the raw body
//! before anything in it is believed; the result is recorded under a request id derived from
//! the event's id, so a redelivery applies once; what we will never act on (other event types,
//! PaymentIntents of other integrations, unknown orders) is answered 200, and only what a
//! redelivery can fix (the store or the refund unavailable) is answered 5xx.

use axum::extract::{Request, State};
use axum::Json;
use raft_store::{Command, OrderId, OrderStatus, OrderView, Outcome, Refusal};
use serde_json::json;

use crate::dto::{now_ms, ProblemJson, ReceivedJson, StripeEvent, StripeIntent};
use crate::error::ApiError;
use crate::extract::read_body;
use crate::identity;
use crate::payments::signature::{self, SIGNATURE_HEADER};
use crate::payments::Refund;
use crate::state::ApiState;

/// The webhook's path: the URL to register with Stripe is the api's public URL and this.
pub(crate) const STRIPE_WEBHOOK_PATH: &str = "/v1/payments/stripe/webhook";
/// The event types acted on; every other type is answered 200 and ignored.
const SUCCEEDED: &str = "payment_intent.succeeded";
const FAILED: &str = "payment_intent.payment_failed";
/// Longest Stripe object id accepted (theirs are about 30 characters).
const STRIPE_ID_LEN_MAX: usize = 255;

/// Stripe's report of a PaymentIntent: `payment_intent.succeeded` confirms the order it pays,
/// `payment_intent.payment_failed` fails it (its seats go back on sale). A success for an order
/// that lapsed first is refunded before the answer.
#[utoipa::path(
    post, path = "/v1/payments/stripe/webhook", operation_id = "stripe_webhook", tag = "payments",
    request_body(content = Object, description = "A Stripe event (`id`, `type`, `data.object`), as Stripe sends it", content_type = "application/json"),
    params(
        // Declared optional: the handler refuses a missing one as it refuses a wrong one (400
        // `invalid_signature`), and a server without Stripe answers 404 whatever the headers.
        ("Stripe-Signature" = Option<String>, Header, description = "`t=UNIX,v1=HEX[,v1=HEX…]`: HMAC-SHA256 of `{t}.{body}` with the endpoint's signing secret; without a valid one, 400 `invalid_signature`"),
    ),
    responses(
        (status = 200, body = ReceivedJson, description = "Applied, seen before, or not ours to act on"),
        (status = 400, description = "invalid_signature (missing, malformed, stale or wrong), or a signed body that is not an event (bad_request)", body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, description = "This server takes no Stripe payments", body = ProblemJson, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large", body = ProblemJson, content_type = "application/problem+json"),
        (status = 503, description = "The store or the refund is unavailable; Stripe delivers the event again", body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn stripe_webhook(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<ReceivedJson>, ApiError> {
    let Some(stripe) = state.config().stripe.as_ref() else {
        return Err(ApiError::NotFound("this server takes no Stripe payments".into()));
    };
    let (parts, body) = request.into_parts();
    let raw = read_body(body, &parts.headers, state.config().body_limit_bytes).await?;
    let header = parts.headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    if let Err(e) = signature::verify(header, &raw, &stripe.webhook_secrets, stripe.tolerance, now_ms() / 1000) {
        tracing::warn!(error = %e, "a Stripe webhook was refused");
        return Err(ApiError::InvalidSignature(e.to_string()));
    }
    let event: StripeEvent = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a Stripe event: {e}")))?;
    check_stripe_id("id", &event.id)?;
    let approved = match event.kind.as_str() {
        SUCCEEDED => true,
        FAILED => false,
        other => {
            tracing::debug!(event = %event.id, kind = other, "a Stripe event of a type not acted on");
            return Ok(received());
        }
    };
    let intent: StripeIntent = serde_json::from_value(event.data.object)
        .map_err(|e| ApiError::BadRequest(format!("`data.object` is not a PaymentIntent: {e}")))?;
    check_stripe_id("data.object.id", &intent.id)?;
    let order_id = intent.metadata.as_ref().and_then(|m| m.order_id.as_deref());
    let Some(order_id) = order_id.and_then(OrderId::parse) else {
        tracing::warn!(event = %event.id, intent = %intent.id, "a PaymentIntent without an order of ours: ignored");
        return Ok(received());
    };
    let Some(recorded) = record(&state, &event.id, &order_id, approved, &intent.id).await? else {
        tracing::warn!(event = %event.id, %order_id, "a Stripe event for an unknown order: ignored");
        return Ok(received());
    };
    if approved {
        check_amount(&intent, &recorded);
        refund_unless_kept(&state, &recorded, &intent.id).await?;
    }
    Ok(received())
}

fn received() -> Json<ReceivedJson> {
    Json(ReceivedJson { received: true })
}

fn check_stripe_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > STRIPE_ID_LEN_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest(format!("`{field}` is not a Stripe id")));
    }
    Ok(())
}

/// Records the result under the event's request id; `None` when no such order exists.
async fn record(
    state: &ApiState,
    event_id: &str,
    order_id: &OrderId,
    approved: bool,
    intent_id: &str,
) -> Result<Option<OrderView>, ApiError> {
    let command = Command::PaymentResult { order_id: order_id.clone(), approved, reference: intent_id.to_owned() };
    let asked = json!({"order_id": order_id.to_string(), "approved": approved, "reference": intent_id});
    let fingerprint = identity::fingerprint("POST", STRIPE_WEBHOOK_PATH, &asked);
    match state.submit(command, identity::stripe_event_request_id(event_id), fingerprint).await {
        Ok(Outcome::Order(order)) => Ok(Some(order)),
        Ok(other) => Err(ApiError::unexpected(other)),
        Err(ApiError::Refused(Refusal::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A success that did not confirm the order (it lapsed first, or another payment confirmed it)
/// took money for nothing: give it back, by the order's id, so a redelivery refunds once.
async fn refund_unless_kept(state: &ApiState, order: &OrderView, intent_id: &str) -> Result<(), ApiError> {
    let kept = order.status == OrderStatus::Confirmed && order.payment_reference.as_deref() == Some(intent_id);
    if kept {
        return Ok(());
    }
    let refund =
        Refund { order_id: order.order_id.clone(), amount: order.total, charge_reference: Some(intent_id.to_owned()) };
    state.payments().refund(refund).await?;
    tracing::warn!(order_id = %order.order_id, intent = intent_id, status = ?order.status, "refunded a Stripe payment the order did not keep");
    Ok(())
}

/// A PaymentIntent is created for its order's total; one that paid another amount was changed
/// outside this server. Logged for a person to look at: the event is authentic, and the order's
/// state is the state machine's to decide.
fn check_amount(intent: &StripeIntent, order: &OrderView) {
    let currency = order.total.currency.as_str().to_ascii_lowercase();
    let same = intent.amount == Some(order.total.amount) && intent.currency.as_deref() == Some(currency.as_str());
    if !same {
        tracing::error!(
            order_id = %order.order_id,
            intent = %intent.id,
            intent_amount = ?intent.amount,
            intent_currency = ?intent.currency,
            order_total = order.total.amount,
            "a Stripe payment's amount differs from its order's total"
        );
    }
}
