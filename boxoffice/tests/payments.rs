//! Stripe payments through the real binary: `boxoffice dev` configured for a Stripe stand-in in
//! the test process (`common::stripe`), which answers the api's PaymentIntents and refunds and
//! delivers signed webhook events as Stripe does.

mod common;

use common::stripe::{now_s, signature_header, StripeStub, SECRET_KEY};
use common::{assert_problem, Server};
use serde_json::{json, Value};

/// The endpoint's secrets during a rotation: events signed with either are accepted.
const OLD_SECRET: &str = "whsec_old_0123456789abcdef";
const NEW_SECRET: &str = "whsec_new_fedcba9876543210";
/// The server's `--stripe-tolerance` in these tests, in seconds.
const TOLERANCE_S: i64 = 60;
const SUCCEEDED: &str = "payment_intent.succeeded";
const FAILED: &str = "payment_intent.payment_failed";

/// A server that takes Stripe payments through the stand-in, an event on sale, and a buyer.
struct Shop {
    stripe: StripeStub,
    server: Server,
    buyer: String,
    event: String,
}

/// A checkout with Stripe that answered 201: its order, and the PaymentIntent's id and secret.
struct Pending {
    hold_id: String,
    order_id: String,
    intent_id: String,
    client_secret: String,
}

impl Shop {
    async fn open() -> Shop {
        let stripe = StripeStub::start().await;
        let secrets = format!("{OLD_SECRET},{NEW_SECRET}");
        let tolerance = format!("{TOLERANCE_S}s");
        let server = Server::start(&[
            "--stripe-api-base",
            &stripe.url,
            "--stripe-secret-key",
            SECRET_KEY,
            "--stripe-webhook-secret",
            &secrets,
            "--stripe-tolerance",
            &tolerance,
        ])
        .await;
        let admin = server.token("admin", "admin").await;
        let buyer = server.token("buyer", "user").await;
        let event = server.create_event(&admin, 1, 10, 10, json!({})).await;
        Shop { stripe, server, buyer, event }
    }

    async fn hold(&self, seat: &str) -> String {
        let path = format!("/v1/events/{}/holds", self.event);
        let (status, hold) =
            self.server.call("POST", &path, Some(&self.buyer), Some(json!({"seats": [seat]})), None).await;
        assert_eq!(status, 201, "{hold}");
        hold["hold_id"].as_str().expect("hold id").to_owned()
    }

    async fn checkout(&self, hold_id: &str, method: &str) -> (u16, Value) {
        let path = format!("/v1/holds/{hold_id}/checkout");
        self.server.call("POST", &path, Some(&self.buyer), Some(json!({"payment_method": method})), None).await
    }

    /// Holds `seat` and checks out with Stripe.
    async fn pending(&self, seat: &str) -> Pending {
        let hold_id = self.hold(seat).await;
        let (status, answer) = self.checkout(&hold_id, "stripe").await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["order"]["status"], "pending_payment", "{answer}");
        let client_secret = answer["payment"]["client_secret"].as_str().expect("a client secret").to_owned();
        let (intent_id, _) = client_secret.split_once("_secret_").expect("Stripe's client secret format");
        Pending {
            hold_id,
            order_id: answer["order"]["order_id"].as_str().expect("order id").to_owned(),
            intent_id: intent_id.to_owned(),
            client_secret,
        }
    }

    async fn order(&self, order_id: &str) -> Value {
        let (status, order) = self.server.get(&format!("/v1/orders/{order_id}"), Some(&self.buyer)).await;
        assert_eq!(status, 200, "{order}");
        order
    }

    async fn seat(&self, seat: &str) -> String {
        self.server.seat_statuses(&self.event).await[seat].clone()
    }

    /// Delivers a new event of `kind` about the intent, signed with the current secret.
    async fn deliver(&self, kind: &str, intent_id: &str) -> (u16, Value) {
        let event = self.stripe.event(kind, intent_id);
        self.stripe.deliver(&self.server.url, OLD_SECRET, &event).await
    }
}

fn assert_received(status: u16, body: &Value) {
    assert_eq!((status, body), (200, &json!({"received": true})));
}

#[tokio::test]
async fn a_stripe_checkout_is_pending_with_a_client_secret_and_a_retry_gets_the_same_intent() {
    let shop = Shop::open().await;
    let pending = shop.pending("FLOOR-A-1").await;
    assert!(pending.intent_id.starts_with("pi_"), "{}", pending.intent_id);

    let (_, again) = shop.checkout(&pending.hold_id, "stripe").await;
    assert_eq!(again["order"]["order_id"], pending.order_id.as_str(), "{again}");
    assert_eq!(
        again["payment"],
        json!({"provider": "stripe", "client_secret": pending.client_secret, "status": "requires_action"})
    );
    assert_eq!(shop.stripe.intents_created(), 1, "one PaymentIntent for one order");

    // What the api asked: the order's total, in Stripe's form encoding, keyed by the order.
    let creates = shop.stripe.requests_to("/v1/payment_intents");
    assert_eq!(creates.len(), 2);
    for create in &creates {
        assert_eq!(create.status, 200, "authorized with the secret key");
        assert_eq!(create.idempotency_key.as_deref(), Some(pending.order_id.as_str()));
        assert_eq!(create.field("amount"), Some("5000"));
        assert_eq!(create.field("currency"), Some("usd"));
        assert_eq!(create.field("metadata[order_id]"), Some(pending.order_id.as_str()));
        assert_eq!(create.field("automatic_payment_methods[enabled]"), Some("true"));
    }
    assert_eq!(shop.stripe.intent(&pending.intent_id)["metadata"]["order_id"], pending.order_id.as_str());
    assert_eq!(shop.order(&pending.order_id).await["status"], "pending_payment");

    // The document offers the method, and the sandbox's answer keeps its old shape.
    let (_, doc) = shop.server.get("/openapi.json", None).await;
    let methods = &doc["components"]["schemas"]["CheckoutBody"]["properties"]["payment_method"]["enum"];
    assert_eq!(methods, &json!(["sandbox_ok", "sandbox_decline", "stripe"]));
    assert!(doc["paths"]["/v1/payments/stripe/webhook"]["post"].is_object());
    let (status, order) = shop.checkout(&shop.hold("FLOOR-A-2").await, "sandbox_ok").await;
    assert_eq!((status, &order["status"]), (201, &json!("confirmed")), "{order}");
}

#[tokio::test]
async fn stripe_down_is_503_and_a_retry_pays_the_same_order() {
    let shop = Shop::open().await;
    let hold_id = shop.hold("FLOOR-A-1").await;
    shop.stripe.fail_next(1);
    let (status, problem) = shop.checkout(&hold_id, "stripe").await;
    assert_problem(status, &problem, 503, "unavailable");
    let (status, answer) = shop.checkout(&hold_id, "stripe").await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["payment"]["status"], "requires_action");
    assert_eq!(shop.stripe.intents_created(), 1);
}

#[tokio::test]
async fn a_success_confirms_the_order_once_however_often_stripe_delivers_it() {
    let shop = Shop::open().await;
    let pending = shop.pending("FLOOR-A-1").await;
    let event = shop.stripe.event(SUCCEEDED, &pending.intent_id);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (status, body) = shop.stripe.deliver(&shop.server.url, OLD_SECRET, &event).await;
        assert_received(status, &body);
        seen.push(shop.order(&pending.order_id).await);
    }
    let order = &seen[0];
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["payment_reference"], pending.intent_id.as_str());
    assert_eq!(order["refunded"], false);
    assert_eq!(order["tickets"].as_array().expect("tickets").len(), 1);
    assert!(seen.iter().all(|o| o == order), "a redelivery changes nothing: {seen:?}");
    assert_eq!(shop.seat("FLOOR-A-1").await, "sold");
    let (_, tickets) = shop.server.get("/v1/me/tickets", Some(&shop.buyer)).await;
    assert_eq!(tickets["items"].as_array().expect("tickets").len(), 1, "{tickets}");

    // A failure reported after the success (Stripe does not promise order) changes nothing.
    let (status, body) = shop.deliver(FAILED, &pending.intent_id).await;
    assert_received(status, &body);
    assert_eq!(&shop.order(&pending.order_id).await, order);

    // A retried checkout answers the settled order, and asks Stripe nothing more.
    let (_, again) = shop.checkout(&pending.hold_id, "stripe").await;
    assert_eq!(again["payment"], json!({"provider": "stripe", "client_secret": null, "status": "succeeded"}));
    assert_eq!(shop.stripe.requests_to("/v1/payment_intents").len(), 1);
    assert!(shop.stripe.requests_to("/v1/refunds").is_empty());
}

#[tokio::test]
async fn a_success_after_a_failure_is_refunded_once() {
    let shop = Shop::open().await;
    let pending = shop.pending("FLOOR-A-1").await;
    let (status, body) = shop.deliver(FAILED, &pending.intent_id).await;
    assert_received(status, &body);
    assert_eq!(shop.order(&pending.order_id).await["status"], "payment_failed");
    assert_eq!(shop.seat("FLOOR-A-1").await, "available");

    let late = shop.stripe.event(SUCCEEDED, &pending.intent_id);
    let (status, body) = shop.stripe.deliver(&shop.server.url, OLD_SECRET, &late).await;
    assert_received(status, &body);
    let order = shop.order(&pending.order_id).await;
    assert_eq!(order["status"], "payment_failed", "{order}");
    assert_eq!(order["refunded"], true);
    assert_eq!(order["payment_reference"], pending.intent_id.as_str());
    let refunds = shop.stripe.requests_to("/v1/refunds");
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].field("payment_intent"), Some(pending.intent_id.as_str()));
    assert_eq!(refunds[0].idempotency_key.as_deref(), Some(format!("refund-{}", pending.order_id).as_str()));

    // Stripe delivers it again: the refund is asked again, and made once.
    let (status, body) = shop.stripe.deliver(&shop.server.url, OLD_SECRET, &late).await;
    assert_received(status, &body);
    assert_eq!(shop.stripe.refunds_of(&pending.intent_id).len(), 1);
    assert_eq!(shop.seat("FLOOR-A-1").await, "available");
}

#[tokio::test]
async fn bad_missing_and_stale_signatures_are_refused_and_change_nothing() {
    let shop = Shop::open().await;
    let pending = shop.pending("FLOOR-A-1").await;
    let body = shop.stripe.event(SUCCEEDED, &pending.intent_id).to_string();
    let now = now_s();
    let refused = [
        ("an unknown secret", Some(signature_header(&["whsec_someone_else"], now, &body))),
        ("a stale timestamp", Some(signature_header(&[OLD_SECRET], now - TOLERANCE_S - 30, &body))),
        ("a future timestamp", Some(signature_header(&[OLD_SECRET], now + TOLERANCE_S + 30, &body))),
        ("another body", Some(signature_header(&[OLD_SECRET], now, &body.replace("succeeded", "succeeded ")))),
        ("a malformed header", Some("v1=abc".to_owned())),
        ("no header", None),
    ];
    for (what, header) in refused {
        let (status, problem) = shop.stripe.deliver_raw(&shop.server.url, &body, header.as_deref()).await;
        assert_problem(status, &problem, 400, "invalid_signature");
        assert_eq!(shop.order(&pending.order_id).await["status"], "pending_payment", "{what}");
    }

    // A signed body that is not an event is the sender's bug: 400, and nothing changes.
    let junk = r#"{"hello": "world"}"#;
    let header = signature_header(&[OLD_SECRET], now, junk);
    let (status, problem) = shop.stripe.deliver_raw(&shop.server.url, junk, Some(&header)).await;
    assert_problem(status, &problem, 400, "bad_request");

    // Other types, and intents of orders that do not exist, are acknowledged and ignored.
    let (status, body) = shop.deliver("payment_intent.created", &pending.intent_id).await;
    assert_received(status, &body);
    let mut stranger = shop.stripe.event(SUCCEEDED, &pending.intent_id);
    stranger["data"]["object"]["metadata"]["order_id"] = json!("or-ev00000000000000ff-1");
    let (status, body) = shop.stripe.deliver(&shop.server.url, OLD_SECRET, &stranger).await;
    assert_received(status, &body);
    assert_eq!(shop.order(&pending.order_id).await["status"], "pending_payment");

    // Within the tolerance, signed with the secret being rotated in, with the old one beside it.
    let event = shop.stripe.event(SUCCEEDED, &pending.intent_id).to_string();
    let header = signature_header(&["whsec_retired", NEW_SECRET], now - TOLERANCE_S / 2, &event);
    let (status, body) = shop.stripe.deliver_raw(&shop.server.url, &event, Some(&header)).await;
    assert_received(status, &body);
    assert_eq!(shop.order(&pending.order_id).await["status"], "confirmed");
}

#[tokio::test]
async fn cancelling_a_stripe_paid_order_refunds_its_payment_intent() {
    let shop = Shop::open().await;
    let pending = shop.pending("FLOOR-A-1").await;
    let (status, body) = shop.deliver(SUCCEEDED, &pending.intent_id).await;
    assert_received(status, &body);
    assert!(shop.stripe.requests_to("/v1/refunds").is_empty());

    let path = format!("/v1/orders/{}/cancel", pending.order_id);
    let (status, cancelled) = shop.server.call("POST", &path, Some(&shop.buyer), None, None).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!((&cancelled["status"], &cancelled["refunded"]), (&json!("cancelled"), &json!(true)));
    let refunds = shop.stripe.requests_to("/v1/refunds");
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].field("payment_intent"), Some(pending.intent_id.as_str()));
    assert_eq!(shop.stripe.refunds_of(&pending.intent_id).len(), 1);
    assert_eq!(shop.seat("FLOOR-A-1").await, "available");

    // Cancelling again refunds again, by the same key: Stripe makes one refund.
    let (status, _) = shop.server.call("POST", &path, Some(&shop.buyer), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(shop.stripe.refunds_of(&pending.intent_id).len(), 1);
}

#[tokio::test]
async fn a_checkout_with_a_return_url_pays_on_the_hosted_page_and_the_webhook_confirms_it() {
    let shop = Shop::open().await;
    let hold_id = shop.hold("FLOOR-A-1").await;
    let path = format!("/v1/holds/{hold_id}/checkout");
    let return_url = "http://127.0.0.1:9/#/orders/{ORDER_ID}";
    let body = json!({"payment_method": "stripe", "return_url": return_url});
    let (status, answer) = shop.server.call("POST", &path, Some(&shop.buyer), Some(body.clone()), None).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["order"]["status"], "pending_payment", "{answer}");
    let order_id = answer["order"]["order_id"].as_str().expect("order id").to_owned();
    let url = answer["payment"]["url"].as_str().expect("the hosted page's url").to_owned();
    let session_id = url.strip_prefix(&format!("{}/c/pay/", shop.stripe.url)).expect("a page of the stand-in");
    assert!(session_id.starts_with("cs_"), "{url}");
    assert_eq!(answer["payment"]["provider"], "stripe");
    assert_eq!(answer["payment"]["status"], "requires_action");
    assert_eq!(answer["payment"]["client_secret"], "", "a hosted session has no client secret");
    let page = common::client().get(&url).send().await.expect("the hosted page");
    assert_eq!(page.status(), 200);

    // What the api asked: the order's total as one line item, back to the return URL with the
    // order's id, the order on the session and on its PaymentIntent, keyed apart from the intent.
    let creates = shop.stripe.requests_to("/v1/checkout/sessions");
    assert_eq!(creates.len(), 1);
    let create = &creates[0];
    let back = format!("http://127.0.0.1:9/#/orders/{order_id}");
    for (name, value) in [
        ("mode", "payment"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "5000"),
        ("line_items[0][quantity]", "1"),
        ("success_url", &back),
        ("cancel_url", &back),
        ("client_reference_id", &order_id),
        ("metadata[order_id]", &order_id),
        ("payment_intent_data[metadata][order_id]", &order_id),
    ] {
        assert_eq!(create.field(name), Some(value), "{name}");
    }
    assert!(create.field("line_items[0][price_data][product_data][name]").is_some_and(|n| n.contains(&order_id)));
    let expires_in = create.field("expires_at").and_then(|t| t.parse::<i64>().ok()).expect("expires_at") - now_s();
    assert!((30 * 60..=24 * 3600).contains(&expires_in), "Stripe's bounds: {expires_in} s");
    let key = create.idempotency_key.as_deref().expect("an idempotency key");
    assert!(key.contains(&order_id) && key != order_id, "{key}");
    assert!(shop.stripe.requests_to("/v1/payment_intents").is_empty(), "no bare PaymentIntent");

    // A retry (with or without an Idempotency-Key) asks the same and gets the same page.
    let (status, again) = shop.server.call("POST", &path, Some(&shop.buyer), Some(body.clone()), None).await;
    assert_eq!((status, &again), (201, &answer));
    let (status, keyed) = shop.server.call("POST", &path, Some(&shop.buyer), Some(body.clone()), Some("retry-1")).await;
    assert_eq!((status, &keyed["payment"]), (201, &answer["payment"]), "{keyed}");
    assert_eq!(shop.stripe.sessions_created(), 1, "one session for one order");
    assert!(shop.stripe.requests_to("/v1/checkout/sessions").iter().all(|r| r.status == 200));
    // Another return URL for the same order cannot be the same session: refused, in words.
    let other = json!({"payment_method": "stripe", "return_url": "https://elsewhere.example/"});
    let (status, problem) = shop.server.call("POST", &path, Some(&shop.buyer), Some(other), None).await;
    assert_problem(status, &problem, 422, "bad_request");
    assert_eq!(shop.stripe.sessions_created(), 1);
    assert_eq!(shop.order(&order_id).await["status"], "pending_payment", "nothing is paid until the webhook");
    assert_eq!(shop.seat("FLOOR-A-1").await, "held");

    // The buyer pays on the page: Stripe's webhook confirms the order, recording the intent.
    let paid = shop.stripe.pay_session(session_id, &shop.server.url, OLD_SECRET).await;
    assert_received(paid.webhook.0, &paid.webhook.1);
    assert_eq!(paid.success_url, back);
    let order = shop.order(&order_id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["payment_reference"], paid.intent_id.as_str());
    assert_eq!(order["tickets"].as_array().expect("tickets").len(), 1, "{order}");
    assert_eq!(shop.seat("FLOOR-A-1").await, "sold");
    let (_, settled) = shop.server.call("POST", &path, Some(&shop.buyer), Some(body), None).await;
    assert_eq!(settled["payment"], json!({"provider": "stripe", "client_secret": null, "status": "succeeded"}));

    // Cancelling refunds the PaymentIntent the session made.
    let cancel = format!("/v1/orders/{order_id}/cancel");
    let (status, cancelled) = shop.server.call("POST", &cancel, Some(&shop.buyer), None, None).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!((&cancelled["status"], &cancelled["refunded"]), (&json!("cancelled"), &json!(true)));
    let refunds = shop.stripe.requests_to("/v1/refunds");
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].field("payment_intent"), Some(paid.intent_id.as_str()));
    assert_eq!(shop.stripe.refunds_of(&paid.intent_id).len(), 1);
}

#[tokio::test]
async fn a_bad_return_url_is_400_and_changes_nothing() {
    let shop = Shop::open().await;
    let hold_id = shop.hold("FLOOR-A-1").await;
    let path = format!("/v1/holds/{hold_id}/checkout");
    let too_long = format!("https://shop.example/{}", "x".repeat(2048));
    for bad in ["/#/orders/{ORDER_ID}", "javascript:alert(1)", "https://user@shop.example/", "http://a b/", &too_long] {
        let body = json!({"payment_method": "stripe", "return_url": bad});
        let (status, problem) = shop.server.call("POST", &path, Some(&shop.buyer), Some(body), None).await;
        assert_problem(status, &problem, 400, "bad_request");
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains("return_url")), "{problem}");
    }
    assert!(shop.stripe.requests().is_empty(), "Stripe was asked nothing");
    let (_, hold) = shop.server.get(&format!("/v1/holds/{hold_id}"), Some(&shop.buyer)).await;
    assert_eq!(hold["status"], "active", "{hold}");
    let (_, orders) = shop.server.get("/v1/me/orders", Some(&shop.buyer)).await;
    assert_eq!(orders["items"], json!([]), "no order");
    assert_eq!(shop.seat("FLOOR-A-1").await, "held");
}
