//! Payments: a gateway that records what it was asked, and the checkout paths around it; Stripe's
//! webhook, with a gateway that answers `stripe` as Stripe would (a pending PaymentIntent).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use axum::http::StatusCode;
use raft_store::{Command, OrderStatus, Outcome, UserId};
use serde_json::json;

use super::TestApp;
use crate::identity;
use crate::routes::booking::pay;
use crate::{
    Charge, Charged, HostedPage, PaymentError, PaymentGateway, Refund, SandboxPayments, StripeConfig, StripeGateway,
};
use seams::BoxFuture;

/// The sandbox, recording every charge and refund; it can be made to fail the next charge or
/// refund, and to take `stripe` (then a charge is a pending `pi_…` PaymentIntent).
#[derive(Default)]
pub(crate) struct RecordingPayments {
    charges: Mutex<Vec<Charge>>,
    refunds: Mutex<Vec<Refund>>,
    fail_next_charge: AtomicBool,
    fail_next_refund: AtomicBool,
    stripe: AtomicBool,
}

impl RecordingPayments {
    pub(crate) fn charges(&self) -> usize {
        self.charges.lock().unwrap().len()
    }

    pub(crate) fn refunds(&self) -> Vec<String> {
        self.refunds.lock().unwrap().iter().map(|r| r.order_id.to_string()).collect()
    }

    /// The hosted pages the charges asked for, in order (`None`: none asked).
    pub(crate) fn hosted_pages(&self) -> Vec<Option<HostedPage>> {
        self.charges.lock().unwrap().iter().map(|c| c.hosted.clone()).collect()
    }

    /// The charge references refunded, in order.
    pub(crate) fn refunded_charges(&self) -> Vec<String> {
        self.refunds.lock().unwrap().iter().map(|r| r.charge_reference.clone().unwrap_or_default()).collect()
    }
}

impl PaymentGateway for RecordingPayments {
    fn methods(&self) -> Vec<&'static str> {
        let mut methods = SandboxPayments.methods();
        if self.stripe.load(Ordering::SeqCst) {
            methods.push(StripeGateway::METHOD);
        }
        methods
    }

    fn owns(&self, reference: &str) -> bool {
        SandboxPayments.owns(reference) || reference.starts_with("pi_")
    }

    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<Charged, PaymentError>> {
        if self.fail_next_charge.swap(false, Ordering::SeqCst) {
            return Box::pin(async { Err(PaymentError::Unavailable("provider timed out".into())) });
        }
        self.charges.lock().unwrap().push(charge.clone());
        if charge.payment_method == StripeGateway::METHOD && charge.hosted.is_some() {
            let reference = format!("cs_test_{}", charge.order_id.to_string().replace('-', "_"));
            let url = Some(format!("https://checkout.stripe.test/c/pay/{reference}"));
            return Box::pin(async move { Ok(Charged::Pending { reference, client_secret: String::new(), url }) });
        }
        if charge.payment_method == StripeGateway::METHOD {
            let reference = intent_of(&charge.order_id.to_string());
            let client_secret = format!("{reference}_secret_test");
            return Box::pin(async move { Ok(Charged::Pending { reference, client_secret, url: None }) });
        }
        SandboxPayments.charge(charge)
    }

    fn refund(&self, refund: Refund) -> BoxFuture<'_, Result<String, PaymentError>> {
        if self.fail_next_refund.swap(false, Ordering::SeqCst) {
            return Box::pin(async { Err(PaymentError::Unavailable("provider timed out".into())) });
        }
        self.refunds.lock().unwrap().push(refund.clone());
        SandboxPayments.refund(refund)
    }
}

#[tokio::test]
async fn the_sandbox_approves_ok_declines_decline_and_names_references_by_order() {
    let order_id = raft_store::OrderId { event_id: raft_store::EventId::from_u64(1), seq: 7 };
    let charge = |method: &str| Charge {
        order_id: order_id.clone(),
        amount: raft_store::Money::new(100, raft_store::Currency::USD),
        payment_method: method.into(),
        hosted: None,
    };
    let ok = SandboxPayments.charge(charge("sandbox_ok")).await.unwrap();
    assert!(matches!(ok, Charged::Settled { approved: true, .. }), "{ok:?}");
    assert_eq!(ok, SandboxPayments.charge(charge("sandbox_ok")).await.unwrap());
    let declined = SandboxPayments.charge(charge("sandbox_decline")).await.unwrap();
    assert!(matches!(declined, Charged::Settled { approved: false, .. }), "{declined:?}");
    assert!(SandboxPayments.owns(ok.reference()) && SandboxPayments.owns(declined.reference()));
    assert!(!SandboxPayments.accepts("cash") && !SandboxPayments.accepts("stripe"));
}

#[tokio::test]
async fn a_replayed_checkout_never_charges_twice() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let path = format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap());
    for _ in 0..3 {
        app.post_keyed(&path, &user, "pay-1", r#"{"payment_method": "sandbox_ok"}"#).await.ok(StatusCode::CREATED);
    }
    app.checkout(hold["hold_id"].as_str().unwrap(), &user, "sandbox_ok").await.ok(StatusCode::CREATED);
    assert_eq!(app.payments.charges(), 1);
}

#[tokio::test]
async fn cancelling_refunds_once_the_cancellation_is_recorded() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let order = app.buy(&event_id, &user, &["FLOOR-A-1"]).await;
    assert!(app.payments.refunds().is_empty());
    let path = format!("/v1/orders/{}/cancel", order["order_id"].as_str().unwrap());
    app.post(&path, Some(&user), &json!({})).await.ok(StatusCode::OK);
    assert_eq!(app.payments.refunds(), [order["order_id"].as_str().unwrap()]);
}

#[tokio::test]
async fn an_unreachable_provider_is_503_and_a_retry_pays_the_same_order() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let hold_id = hold["hold_id"].as_str().unwrap();
    app.payments.fail_next_charge.store(true, Ordering::SeqCst);
    let reply = app.checkout(hold_id, &user, "sandbox_ok").await;
    reply.problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "held");
    let order = app.checkout(hold_id, &user, "sandbox_ok").await.ok(StatusCode::CREATED);
    assert_eq!(order["status"], "confirmed");
    assert_eq!(app.payments.charges(), 1);
}

/// Two payment attempts for one order (concurrent checkouts): the first result recorded wins,
/// and an approval that lost is refunded.
#[tokio::test]
async fn two_payment_attempts_record_one_result_and_refund_the_loser() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = UserId::parse("u1").unwrap();
    let hold = app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-1"] })).await.json();
    let hold_id = raft_store::HoldId::parse(hold["hold_id"].as_str().unwrap()).unwrap();
    let command = Command::Checkout { hold_id, user: user.clone() };
    let Outcome::Order(pending) = app.state.submit(command, identity::request_id(&user, None), 0).await.unwrap() else {
        panic!("checkout gives an order");
    };
    assert_eq!(pending.status, OrderStatus::PendingPayment);

    let declined = pay(&app.state, &pending, "sandbox_decline", None).await.unwrap().order;
    let approved_late = pay(&app.state, &pending, "sandbox_ok", None).await.unwrap().order;
    assert_eq!(declined.status, OrderStatus::PaymentFailed);
    assert_eq!(approved_late, declined, "the first recorded result stands");
    assert_eq!(app.payments.refunds(), [pending.order_id.to_string()]);
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "available");
}

#[tokio::test]
async fn an_approval_after_the_payment_deadline_is_refunded() {
    let app = TestApp::new();
    let event_id = app.event_id(json!({})).await;
    let user = UserId::parse("u1").unwrap();
    let hold = app.hold(&event_id, &app.user("u1"), json!({ "seats": ["FLOOR-A-1"] })).await.json();
    let hold_id = raft_store::HoldId::parse(hold["hold_id"].as_str().unwrap()).unwrap();
    let command = Command::Checkout { hold_id, user: user.clone() };
    let Outcome::Order(pending) = app.state.submit(command, identity::request_id(&user, None), 0).await.unwrap() else {
        panic!("checkout gives an order");
    };
    app.cluster.advance(std::time::Duration::from_millis(raft_store::PAYMENT_TIMEOUT_MS as u64 + 1));
    let recorded = pay(&app.state, &pending, "sandbox_ok", None).await.unwrap().order;
    assert_eq!(recorded.status, OrderStatus::PaymentFailed);
    assert_eq!(app.payments.refunds(), [pending.order_id.to_string()]);
}

/// The PaymentIntent `RecordingPayments` makes for an order: its id, made safe for Stripe's grammar.
fn intent_of(order_id: &str) -> String {
    format!("pi_{}", order_id.replace('-', "_"))
}

const WEBHOOK: &str = "/v1/payments/stripe/webhook";
const WEBHOOK_SECRETS: [&str; 2] = ["whsec_current", "whsec_next"];

/// An app that takes `stripe`, with Stripe's webhook configured.
fn stripe_app() -> TestApp {
    let app = TestApp::with(|config| {
        config.stripe = Some(StripeConfig::new("sk_test_x", WEBHOOK_SECRETS.map(str::to_owned).to_vec()));
    });
    app.payments.stripe.store(true, Ordering::SeqCst);
    app
}

fn stripe_event(id: &str, kind: &str, intent: &str, order_id: &str) -> String {
    json!({
        "id": id,
        "object": "event",
        "type": kind,
        "data": {"object": {
            "id": intent, "object": "payment_intent", "amount": 5000, "currency": "usd",
            "metadata": {"order_id": order_id}, "status": "succeeded",
        }},
    })
    .to_string()
}

impl TestApp {
    /// POSTs `body` to the webhook, signed with `secret` at `t` (when given).
    async fn webhook(&self, body: &str, signed: Option<(&str, i64)>) -> super::Reply {
        let mut request = axum::http::Request::post(WEBHOOK).header("content-type", "application/json");
        if let Some((secret, t)) = signed {
            let v1 = hex::encode(crate::payments::signature::sign(secret, &t.to_string(), body.as_bytes()));
            request = request.header("stripe-signature", format!("t={t},v1={v1}"));
        }
        self.send(request.body(axum::body::Body::from(body.to_owned())).unwrap()).await
    }

    async fn deliver(&self, id: &str, kind: &str, intent: &str, order_id: &str) -> super::Reply {
        let body = stripe_event(id, kind, intent, order_id);
        self.webhook(&body, Some((WEBHOOK_SECRETS[0], crate::dto::now_ms() / 1000))).await
    }

    /// Holds FLOOR-A-1 and checks out with Stripe; returns the hold's and the order's ids.
    async fn stripe_checkout(&self, event_id: &str, user: &str) -> (String, String) {
        let hold = self.hold(event_id, user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
        let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
        let answer = self.checkout(&hold_id, user, "stripe").await.ok(StatusCode::CREATED);
        assert_eq!(answer["order"]["status"], "pending_payment", "{answer}");
        (hold_id, answer["order"]["order_id"].as_str().unwrap().to_owned())
    }
}

fn payment_methods(doc: &serde_json::Value) -> &serde_json::Value {
    &doc["components"]["schemas"]["CheckoutBody"]["properties"]["payment_method"]["enum"]
}

#[tokio::test]
async fn stripe_is_offered_and_its_webhook_served_only_where_configured() {
    let plain = TestApp::new();
    let doc = plain.get("/openapi.json", None).await.ok(StatusCode::OK);
    assert_eq!(payment_methods(&doc), &json!(["sandbox_ok", "sandbox_decline"]));
    assert!(doc["paths"][WEBHOOK]["post"].is_object(), "documented either way");
    plain.webhook("{}", Some(("whsec_current", 0))).await.problem(StatusCode::NOT_FOUND, "not_found");
    let event_id = plain.event_id(json!({})).await;
    let user = plain.user("u1");
    let hold = plain.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    plain
        .checkout(hold["hold_id"].as_str().unwrap(), &user, "stripe")
        .await
        .problem(StatusCode::BAD_REQUEST, "bad_request");

    let stripe = stripe_app();
    let doc = stripe.get("/openapi.json", None).await.ok(StatusCode::OK);
    assert_eq!(payment_methods(&doc), &json!(["sandbox_ok", "sandbox_decline", "stripe"]));
    let checkout = &doc["paths"]["/v1/holds/{hold_id}/checkout"]["post"]["responses"]["201"];
    let one_of = &checkout["content"]["application/json"]["schema"];
    assert_eq!(one_of["$ref"], "#/components/schemas/CheckoutJson", "{checkout}");
    assert_eq!(doc["components"]["schemas"]["CheckoutJson"]["oneOf"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_stripe_order_waits_for_the_webhook_which_applies_each_event_once() {
    let app = stripe_app();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let (hold_id, order_id) = app.stripe_checkout(&event_id, &user).await;
    let intent = intent_of(&order_id);
    let answer = app.checkout(&hold_id, &user, "stripe").await.ok(StatusCode::CREATED);
    let secret = format!("{intent}_secret_test");
    assert_eq!(answer["payment"], json!({"provider": "stripe", "client_secret": secret, "status": "requires_action"}));

    for _ in 0..3 {
        let reply = app.deliver("evt_1", "payment_intent.succeeded", &intent, &order_id).await;
        assert_eq!(reply.ok(StatusCode::OK), json!({"received": true}));
    }
    let order = app.get(&format!("/v1/orders/{order_id}"), Some(&user)).await.ok(StatusCode::OK);
    assert_eq!((&order["status"], &order["payment_reference"]), (&json!("confirmed"), &json!(intent)));
    assert_eq!(app.seat_status(&event_id, "FLOOR-A-1").await, "sold");
    assert!(app.payments.refunds().is_empty());
}

#[tokio::test]
async fn a_stripe_success_for_an_order_paid_otherwise_or_lapsed_is_refunded() {
    let app = stripe_app();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    // The buyer started with Stripe, then paid with another method before finishing.
    let (hold_id, order_id) = app.stripe_checkout(&event_id, &user).await;
    let paid = app.checkout(&hold_id, &user, "sandbox_ok").await.ok(StatusCode::CREATED);
    assert_eq!(paid["status"], "confirmed");
    app.deliver("evt_2", "payment_intent.succeeded", &intent_of(&order_id), &order_id).await.ok(StatusCode::OK);
    assert_eq!(app.payments.refunded_charges(), [intent_of(&order_id)]);
    let order = app.get(&format!("/v1/orders/{order_id}"), Some(&user)).await.ok(StatusCode::OK);
    assert_eq!((&order["status"], &order["refunded"]), (&json!("confirmed"), &json!(false)), "the sandbox paid it");

    // An order whose payment deadline passed before Stripe reported the payment.
    app.post(&format!("/v1/orders/{order_id}/cancel"), Some(&user), &json!({})).await.ok(StatusCode::OK);
    let (_, lapsed) = app.stripe_checkout(&event_id, &user).await;
    app.cluster.advance(std::time::Duration::from_millis(raft_store::PAYMENT_TIMEOUT_MS as u64 + 1));
    app.deliver("evt_3", "payment_intent.succeeded", &intent_of(&lapsed), &lapsed).await.ok(StatusCode::OK);
    let order = app.get(&format!("/v1/orders/{lapsed}"), Some(&user)).await.ok(StatusCode::OK);
    assert_eq!((&order["status"], &order["refunded"]), (&json!("payment_failed"), &json!(true)), "{order}");
    assert_eq!(app.payments.refunded_charges().last(), Some(&intent_of(&lapsed)));
}

#[tokio::test]
async fn an_unavailable_store_or_refund_is_503_and_stripes_redelivery_completes_it() {
    let app = stripe_app();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let (_, order_id) = app.stripe_checkout(&event_id, &user).await;
    let intent = intent_of(&order_id);
    app.cluster.set_fault(Some(seams::Fault::Unavailable));
    app.deliver("evt_f", "payment_intent.payment_failed", &intent, &order_id)
        .await
        .problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    app.cluster.set_fault(None);
    app.deliver("evt_f", "payment_intent.payment_failed", &intent, &order_id).await.ok(StatusCode::OK);

    // The late success is recorded, its refund fails: 503, and the redelivery refunds.
    app.payments.fail_next_refund.store(true, Ordering::SeqCst);
    app.deliver("evt_s", "payment_intent.succeeded", &intent, &order_id)
        .await
        .problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(app.payments.refunds().is_empty());
    app.deliver("evt_s", "payment_intent.succeeded", &intent, &order_id).await.ok(StatusCode::OK);
    assert_eq!(app.payments.refunded_charges(), [intent]);
}

#[tokio::test]
async fn webhooks_without_a_good_signature_or_about_nothing_of_ours() {
    let app = stripe_app();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let (_, order_id) = app.stripe_checkout(&event_id, &user).await;
    let intent = intent_of(&order_id);
    let body = stripe_event("evt_x", "payment_intent.succeeded", &intent, &order_id);
    let now_s = crate::dto::now_ms() / 1000;
    for signed in [None, Some(("whsec_other", now_s)), Some((WEBHOOK_SECRETS[0], now_s - 301))] {
        app.webhook(&body, signed).await.problem(StatusCode::BAD_REQUEST, "invalid_signature");
    }
    app.webhook(&body, Some((WEBHOOK_SECRETS[1], now_s + 299))).await.ok(StatusCode::OK);
    let order = app.get(&format!("/v1/orders/{order_id}"), Some(&user)).await.ok(StatusCode::OK);
    assert_eq!(order["status"], "confirmed");

    let signed_now = Some((WEBHOOK_SECRETS[0], now_s));
    for malformed in ["not json", "{}", r#"{"id": "", "type": "payment_intent.succeeded", "data": {"object": {}}}"#] {
        app.webhook(malformed, signed_now).await.problem(StatusCode::BAD_REQUEST, "bad_request");
    }
    let not_an_intent = r#"{"id": "evt_y", "type": "payment_intent.succeeded", "data": {"object": {"amount": 1}}}"#;
    app.webhook(not_an_intent, signed_now).await.problem(StatusCode::BAD_REQUEST, "bad_request");
    let ignored = [
        stripe_event("evt_a", "charge.refunded", &intent, &order_id),
        stripe_event("evt_b", "payment_intent.succeeded", "pi_other", "not-an-order"),
        stripe_event("evt_c", "payment_intent.succeeded", "pi_other", "or-ev00000000000000ff-1"),
    ];
    for body in ignored {
        assert_eq!(app.webhook(&body, signed_now).await.ok(StatusCode::OK), json!({"received": true}));
    }
    let too_large = format!("{{\"pad\": \"{}\"}}", "x".repeat(crate::BODY_LIMIT_BYTES_DEFAULT));
    app.webhook(&too_large, signed_now).await.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(app.payments.refunds().is_empty());
}

#[tokio::test]
async fn a_return_url_asks_for_the_hosted_page_and_a_bad_one_changes_nothing() {
    let app = stripe_app();
    let event_id = app.event_id(json!({})).await;
    let user = app.user("u1");
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-1"] })).await.ok(StatusCode::CREATED);
    let hold_id = hold["hold_id"].as_str().unwrap();
    let path = format!("/v1/holds/{hold_id}/checkout");
    let too_long = format!("https://shop.example/{}", "x".repeat(2048));
    for bad in [json!("/#/orders/{ORDER_ID}"), json!("ftp://shop.example/"), json!("https://"), json!(too_long)] {
        let body = json!({"payment_method": "stripe", "return_url": bad});
        let problem = app.post(&path, Some(&user), &body).await.problem(StatusCode::BAD_REQUEST, "bad_request");
        assert!(problem["detail"].as_str().unwrap().contains("return_url"), "{problem}");
    }
    let body = json!({"payment_method": "stripe", "return_url": 7});
    app.post(&path, Some(&user), &body).await.problem(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(app.payments.charges(), 0);
    let hold = app.get(&format!("/v1/holds/{hold_id}"), Some(&user)).await.ok(StatusCode::OK);
    assert_eq!(hold["status"], "active", "a refused checkout left the hold as it was");

    let body = json!({"payment_method": "stripe", "return_url": "https://shop.example/#/orders/{ORDER_ID}"});
    let answer = app.post(&path, Some(&user), &body).await.ok(StatusCode::CREATED);
    let order_id = answer["order"]["order_id"].as_str().unwrap();
    let session = format!("cs_test_{}", order_id.replace('-', "_"));
    assert_eq!(
        answer["payment"],
        json!({"provider": "stripe", "client_secret": "", "status": "requires_action",
               "url": format!("https://checkout.stripe.test/c/pay/{session}")})
    );
    let order = app.get(&format!("/v1/orders/{order_id}"), Some(&user)).await.ok(StatusCode::OK);
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let deadline = time::OffsetDateTime::parse(order["payment_deadline"].as_str().unwrap(), rfc3339).unwrap();
    let page = app.payments.hosted_pages().pop().flatten().expect("a hosted page asked for");
    assert_eq!(page.return_url, format!("https://shop.example/#/orders/{order_id}"));
    assert_eq!(page.payment_deadline_ms / 1000, deadline.unix_timestamp(), "the order's deadline");

    // The sandbox takes a return URL and ignores it: its answer is the order, as before.
    let hold = app.hold(&event_id, &user, json!({ "seats": ["FLOOR-A-2"] })).await.ok(StatusCode::CREATED);
    let path = format!("/v1/holds/{}/checkout", hold["hold_id"].as_str().unwrap());
    let body = json!({"payment_method": "sandbox_ok", "return_url": "http://127.0.0.1:8080/"});
    let order = app.post(&path, Some(&user), &body).await.ok(StatusCode::CREATED);
    assert_eq!(order["status"], "confirmed", "{order}");
}
