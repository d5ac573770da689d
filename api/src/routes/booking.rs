//! Holds and checkout.
//!
//! Checkout is two commands around one charge: `Checkout` turns the hold into an order awaiting
//! payment, the gateway charges it, and `PaymentResult` records the answer under a request id
//! derived from the order alone, so concurrent or retried checkouts record one result. A provider
//! the buyer pays with (Stripe) answers the charge later: checkout hands the buyer its client
//! secret, and the provider's webhook records the result (`routes::payments`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use raft_store::{Answer, Command, EventId, HoldId, OrderStatus, OrderView, Outcome, Query};

use crate::dto::rules::check_return_url;
use crate::dto::{
    CheckoutBody, CheckoutJson, HoldBody, HoldJson, OrderJson, PaymentJson, PaymentStatusJson, ProblemJson,
    ProviderCheckoutJson,
};
use crate::error::ApiError;
use crate::extract::{Caller, IdPath, Posted};
use crate::identity::{self, payment_request_id};
use crate::payments::{Charge, Charged, HostedPage, Refund, StripeGateway};
use crate::routes::events::read_event;
use crate::routes::orders::read_order;
use crate::routes::queue::access_pass;
use crate::state::ApiState;
use seams::{Consistency, Submit};

/// In a checkout's `return_url`, replaced by the order's id.
const ORDER_ID_PLACEHOLDER: &str = "{ORDER_ID}";

/// Holds seats (or a general-admission quantity) for the caller, all or nothing.
#[utoipa::path(
    post, path = "/v1/events/{event_id}/holds", operation_id = "create_hold", tag = "booking",
    request_body = HoldBody,
    params(
        ("event_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry"),
        ("X-Queue-Access" = Option<String>, Header, description = "The access token from the waiting room: required by high-traffic events, ignored by others"),
    ),
    responses(
        (status = 201, body = HoldJson),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, description = "not_on_sale or queue_required", body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, description = "Unknown event, seat or section", body = ProblemJson, content_type = "application/problem+json"),
        (status = 409, description = "seats_unavailable or sold_out", body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "limit_exceeded (the event's per-user limit, or the cap on seats held at once), idempotency_key_reused, or a selection the event cannot take as given (a quantity of a seated section, a seat named twice)", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn hold(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(event_id): IdPath<EventId>,
    headers: HeaderMap,
    posted: Posted<HoldBody>,
) -> Result<(StatusCode, Json<HoldJson>), ApiError> {
    state.limits().check_hold(&caller.user)?;
    let (request_id, fingerprint, keyed) = (posted.request_id(&caller.user), posted.fingerprint(), posted.has_key());
    let selection = posted.body.into_selection()?;
    let ttl_ms = state.config().hold_ttl_ms();
    // High-traffic events refuse a hold without a pass in apply; other events ignore one, even
    // one that does not verify (API.md asks for the header on high-traffic events only).
    let access = match access_pass(&state, &headers, &caller.user, &event_id) {
        Ok(access) => access,
        Err(refused) => {
            // Refused here, before anything is submitted (so a keyed retry with a good pass is a
            // new request), if the event sells through its waiting room; ignored otherwise.
            if read_event(&state, &event_id, Consistency::Linearizable).await?.spec.high_traffic {
                return Err(refused);
            }
            None
        }
    };
    let held_seats_max = state.config().held_seats_max();
    let command = Command::Hold { event_id, user: caller.user, selection, ttl_ms, access, held_seats_max };
    // Without an `Idempotency-Key` a refusal need not be remembered, so the leader may answer one
    // from its confirmed state without writing it.
    match state.submit_as(Submit { command, request_id, fingerprint, keyed }).await? {
        Outcome::Hold(hold) => Ok((StatusCode::CREATED, Json(HoldJson::from(&hold)))),
        other => Err(ApiError::unexpected(other)),
    }
}

#[utoipa::path(
    get, path = "/v1/holds/{hold_id}", operation_id = "get_hold", tag = "booking",
    params(("hold_id" = String, Path)),
    responses(
        (status = 200, body = HoldJson),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_hold(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(hold_id): IdPath<HoldId>,
) -> Result<Json<HoldJson>, ApiError> {
    let group = state.group_of(&hold_id.event_id);
    let query = Query::Hold { hold_id, user: caller.user };
    match state.cluster().query(group, query, Consistency::Linearizable).await? {
        Answer::Hold(Some(hold)) => Ok(Json(HoldJson::from(&hold))),
        Answer::Hold(None) => Err(ApiError::NotFound("no hold has this id".into())),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Releases a hold: its seats are free at once. Releasing a released or expired hold is a no-op.
#[utoipa::path(
    delete, path = "/v1/holds/{hold_id}", operation_id = "release_hold", tag = "booking",
    params(("hold_id" = String, Path)),
    responses(
        (status = 204, description = "Released"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
        (status = 409, description = "hold_not_active: already checked out", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn release(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(hold_id): IdPath<HoldId>,
) -> Result<StatusCode, ApiError> {
    // Releasing is idempotent in the state machine itself, so a fresh request id will do.
    let request_id = identity::request_id(&caller.user, None);
    let fingerprint = identity::fingerprint("DELETE", &format!("/v1/holds/{hold_id}"), &serde_json::Value::Null);
    match state.submit(Command::ReleaseHold { hold_id, user: caller.user }, request_id, fingerprint).await? {
        Outcome::Hold(_) => Ok(StatusCode::NO_CONTENT),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Turns a hold into an order and pays it. A decline is still an order (`payment_failed`, seats
/// released); a second checkout of the same hold returns the same order. With `stripe` the order
/// stays `pending_payment` and the answer carries the PaymentIntent's client secret: the buyer
/// completes the payment with Stripe.js, and Stripe's webhook confirms or fails the order (until
/// its `payment_deadline`); a retry answers the same PaymentIntent. With `stripe` and a
/// `return_url`, the answer's `payment.url` is Stripe's hosted payment page (a Checkout Session,
/// the same on a retry), which sends the buyer back to `return_url`; `payment.client_secret` is
/// then the session's where Stripe gives one, otherwise empty.
#[utoipa::path(
    post, path = "/v1/holds/{hold_id}/checkout", operation_id = "checkout_hold", tag = "booking",
    request_body = CheckoutBody,
    params(
        ("hold_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry"),
    ),
    responses(
        (status = 201, body = CheckoutJson, description = "The order; with `stripe`, the order and the payment to complete"),
        (status = 400, description = "Unknown payment method, or a `return_url` that is not an absolute http(s) URL of at most 2048 bytes", body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
        (status = 409, description = "hold_expired or hold_not_active", body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "idempotency_key_reused, or the order's hosted payment page was made for another `return_url`", body = ProblemJson, content_type = "application/problem+json"),
        (status = 503, description = "Store or payment provider unavailable; retry", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn checkout(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(hold_id): IdPath<HoldId>,
    posted: Posted<CheckoutBody>,
) -> Result<(StatusCode, Json<CheckoutJson>), ApiError> {
    let method = posted.body.payment_method.clone();
    if !state.payments().accepts(&method) {
        // Said in words, for a person reading it: a server without Stripe's keys lacks `stripe`.
        let taken = match state.payments().methods() {
            methods if methods.is_empty() => "no payment methods".to_owned(),
            methods => methods.join(", "),
        };
        return Err(ApiError::BadRequest(format!(
            "unknown `payment_method`: {} (this server takes {taken})",
            truncated(&method)
        )));
    }
    let return_url = posted.body.return_url.clone();
    if let Some(url) = &return_url {
        check_return_url(url)?;
    }
    let command = Command::Checkout { hold_id, user: caller.user.clone() };
    let order = match state.submit(command, posted.request_id(&caller.user), posted.fingerprint()).await? {
        Outcome::Order(order) => order,
        other => return Err(ApiError::unexpected(other)),
    };
    let return_url = return_url.as_deref();
    let paid = if order.status != OrderStatus::PendingPayment {
        Paid::settled(order)
    } else if posted.has_key() {
        // With an Idempotency-Key the order may be the remembered first answer, long since paid:
        // settle from the order's current state rather than charge again.
        settle_remembered(&state, &caller, order, &method, return_url).await?
    } else {
        pay(&state, &order, &method, return_url).await?
    };
    Ok((StatusCode::CREATED, Json(checkout_json(&method, paid))))
}

/// A checkout's order, and for a provider's payment the client secret (and the hosted page)
/// while it awaits the buyer.
pub(crate) struct Paid {
    pub order: OrderView,
    pub client_secret: Option<String>,
    pub url: Option<String>,
}

impl Paid {
    fn settled(order: OrderView) -> Paid {
        Paid { order, client_secret: None, url: None }
    }
}

/// The sandbox's answer is the order; Stripe's (whatever the order's state, so a client reads one
/// shape per method) is the order and the payment.
fn checkout_json(method: &str, paid: Paid) -> CheckoutJson {
    let order = OrderJson::from(&paid.order);
    if method != StripeGateway::METHOD {
        return CheckoutJson::Order(order);
    }
    let status = PaymentStatusJson::of(&paid.order);
    // The secret and the page are of use only while the buyer can still pay.
    let payable = status == PaymentStatusJson::RequiresAction;
    let client_secret = paid.client_secret.filter(|_| payable);
    let url = paid.url.filter(|_| payable);
    let payment = PaymentJson { provider: StripeGateway::METHOD.to_owned(), client_secret, status, url };
    CheckoutJson::Provider(ProviderCheckoutJson { order, payment })
}

/// Shown in errors: a hostile method name is cut short rather than echoed whole.
fn truncated(text: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 40;
    let shown: String = text.chars().take(SHOWN_CHARS_MAX).filter(|c| !c.is_control()).collect();
    format!("{shown:?}")
}

/// Charges a pending order and records a settled result. An approval that arrives after the
/// order lapsed is refunded at once. A pending charge records nothing: its result comes by
/// webhook, and the order stays pending until then (or its deadline). With a `return_url`
/// (checked by the caller) the provider is asked for its hosted page, which sends the buyer back
/// there with `{ORDER_ID}` replaced by the order's id.
pub(crate) async fn pay(
    state: &ApiState,
    order: &OrderView,
    method: &str,
    return_url: Option<&str>,
) -> Result<Paid, ApiError> {
    let hosted = return_url.map(|url| HostedPage {
        return_url: url.replace(ORDER_ID_PLACEHOLDER, &order.order_id.to_string()),
        payment_deadline_ms: order.payment_deadline_ms,
    });
    let charge =
        Charge { order_id: order.order_id.clone(), amount: order.total, payment_method: method.to_owned(), hosted };
    let (approved, reference) = match state.payments().charge(charge).await? {
        Charged::Settled { approved, reference } => (approved, reference),
        Charged::Pending { client_secret, url, .. } => {
            return Ok(Paid { order: order.clone(), client_secret: Some(client_secret), url });
        }
    };
    let command = Command::PaymentResult { order_id: order.order_id.clone(), approved, reference: reference.clone() };
    // The fingerprint is fixed too: every attempt at this order's payment is the same request.
    let recorded = match state.submit(command, payment_request_id(&order.order_id), 0).await? {
        Outcome::Order(recorded) => recorded,
        other => return Err(ApiError::unexpected(other)),
    };
    // An approved charge that did not confirm the order (the order lapsed, or another attempt's
    // result was recorded first) took money for nothing: give it back.
    let kept =
        recorded.status == OrderStatus::Confirmed && recorded.payment_reference.as_deref() == Some(reference.as_str());
    if approved && !kept {
        let refund =
            Refund { order_id: order.order_id.clone(), amount: order.total, charge_reference: Some(reference) };
        state.payments().refund(refund).await?;
        tracing::warn!(order_id = %order.order_id, "refunded a charge the order did not record");
    }
    Ok(Paid::settled(recorded))
}

/// The checkout answer for an order that was pending when first checked out: pay it if it still
/// is; otherwise the result already recorded (the remembered outcome of the payment request, or
/// the order as it stands). Orders never return to pending, so the second branch cannot race a
/// payment into a decline.
async fn settle_remembered(
    state: &ApiState,
    caller: &Caller,
    order: OrderView,
    method: &str,
    return_url: Option<&str>,
) -> Result<Paid, ApiError> {
    let current = read_order(state, &order.order_id, caller).await?;
    if current.status == OrderStatus::PendingPayment {
        return pay(state, &current, method, return_url).await;
    }
    let lookup = Command::PaymentResult { order_id: order.order_id.clone(), approved: false, reference: String::new() };
    match state.submit(lookup, payment_request_id(&order.order_id), 0).await? {
        Outcome::Order(recorded) => Ok(Paid::settled(recorded)),
        other => Err(ApiError::unexpected(other)),
    }
}
