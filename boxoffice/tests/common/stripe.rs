//! A stand-in for Stripe, in the test process: the endpoints the api calls, in Stripe's wire
//! format, and Stripe's side of the webhook.
//!
//! - `POST /v1/payment_intents`, `POST /v1/checkout/sessions` and `POST /v1/refunds`:
//!   form-encoded, `Authorization: Bearer` with the secret key (401 otherwise), `Idempotency-Key`
//!   honoured (the same key answers the same object; with other parameters, Stripe's
//!   `idempotency_error`), answers shaped like Stripe's (`pi_…` with `pi_…_secret_…`, `cs_…`
//!   with its hosted page's `url`, `re_…`), Stripe's error documents (`charge_already_refunded`,
//!   `resource_missing`, `parameter_missing`).
//! - `GET /c/pay/{session}`: the hosted page, as far as a test needs one (it exists);
//!   [`StripeStub::pay_session`] is the buyer paying there: a new PaymentIntent carrying the
//!   session's `payment_intent_data[metadata]`, and its `payment_intent.succeeded` delivered.
//! - Every request is recorded, so a test can say what the api asked.
//! - [`StripeStub::deliver`] POSTs an event to the api as Stripe does: `evt_…`, signed with a
//!   webhook secret in `Stripe-Signature`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub form: Vec<(String, String)>,
    pub status: u16,
}

impl Recorded {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Ledger {
    requests: Vec<Recorded>,
    /// PaymentIntents by id.
    intents: HashMap<String, Value>,
    /// Checkout Sessions by id, with the form that made each.
    sessions: HashMap<String, (Value, Vec<(String, String)>)>,
    /// Refunds by id.
    refunds: HashMap<String, Value>,
    /// The answer given under each idempotency key: (path, form, status, body).
    replies: HashMap<String, Reply>,
    /// Requests still to answer 500, as an outage would.
    fail_next: usize,
    /// The stand-in's own URL: its hosted pages are under it.
    url: String,
}

/// A request made under an idempotency key, and what it was answered.
struct Reply {
    path: String,
    form: Vec<(String, String)>,
    status: StatusCode,
    body: Value,
}

type Shared = Arc<Mutex<Ledger>>;
/// Makes the object a new request asks for, or Stripe's error.
type Create = fn(&mut Ledger, &[(String, String)]) -> (StatusCode, Value);

pub struct StripeStub {
    pub url: String,
    ledger: Shared,
    task: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
}

impl Drop for StripeStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const SECRET_KEY: &str = "sk_test_boxoffice_stand_in_0123456789";

fn random_id(prefix: &str, len: usize) -> String {
    let tail: String = rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect();
    format!("{prefix}{tail}")
}

pub fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

/// Stripe's error document.
fn error(status: StatusCode, code: Option<&str>, kind: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"error": {"code": code, "type": kind, "message": message}}))
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {SECRET_KEY}"))
}

/// The common part of both endpoints: auth, outages, the form, idempotent replays, the record.
async fn answer(
    ledger: Shared,
    path: &str,
    headers: HeaderMap,
    body: String,
    create: Create,
) -> (StatusCode, Json<Value>) {
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut ledger = ledger.lock().unwrap();
    let (status, value) = if !authorized(&headers) {
        let message = "Invalid API Key provided: sk_test_****";
        error(StatusCode::UNAUTHORIZED, None, "invalid_request_error", message)
    } else if ledger.fail_next > 0 {
        ledger.fail_next -= 1;
        error(StatusCode::INTERNAL_SERVER_ERROR, None, "api_error", "An unknown error occurred")
    } else if let Some(reply) = key.as_ref().and_then(|k| ledger.replies.get(k)) {
        if reply.path == path && reply.form == form {
            (reply.status, reply.body.clone())
        } else {
            let message =
                "Keys for idempotent requests can only be used with the same parameters they were first used with.";
            error(StatusCode::BAD_REQUEST, None, "idempotency_error", message)
        }
    } else {
        let (status, value) = create(&mut ledger, &form);
        // Stripe keeps the answer of a request that reached its logic, errors included.
        if let Some(key) = &key {
            let reply = Reply { path: path.to_owned(), form: form.clone(), status, body: value.clone() };
            ledger.replies.insert(key.clone(), reply);
        }
        (status, value)
    };
    let recorded = Recorded { path: path.to_owned(), idempotency_key: key, form, status: status.as_u16() };
    ledger.requests.push(recorded);
    (status, Json(value))
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn create_intent(ledger: &mut Ledger, form: &[(String, String)]) -> (StatusCode, Value) {
    let amount = field(form, "amount").and_then(|a| a.parse::<i64>().ok());
    let (Some(amount), Some(currency)) = (amount, field(form, "currency")) else {
        return error(StatusCode::BAD_REQUEST, Some("parameter_missing"), "invalid_request_error", "Missing amount");
    };
    let id = random_id("pi_", 24);
    let intent = json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": 0,
        "automatic_payment_methods": {"enabled": field(form, "automatic_payment_methods[enabled]") == Some("true")},
        "client_secret": format!("{id}_secret_{}", random_id("", 24)),
        "created": now_s(),
        "currency": currency,
        "livemode": false,
        "metadata": {"order_id": field(form, "metadata[order_id]")},
        "status": "requires_payment_method",
    });
    ledger.intents.insert(id, intent.clone());
    (StatusCode::OK, intent)
}

/// The fields a Checkout Session for one order must have, as the api asks for it.
const SESSION_FIELDS: [&str; 11] = [
    "mode",
    "line_items[0][price_data][currency]",
    "line_items[0][price_data][unit_amount]",
    "line_items[0][price_data][product_data][name]",
    "line_items[0][quantity]",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "metadata[order_id]",
    "payment_intent_data[metadata][order_id]",
    "expires_at",
];
/// Stripe's bounds on a session's `expires_at`, from now: 30 minutes to 24 hours.
const SESSION_LIFETIME_S: std::ops::RangeInclusive<i64> = 30 * 60..=24 * 3600;

fn create_session(ledger: &mut Ledger, form: &[(String, String)]) -> (StatusCode, Value) {
    if let Some(missing) = SESSION_FIELDS.iter().find(|f| field(form, f).is_none_or(str::is_empty)) {
        let message = format!("Missing required param: {missing}.");
        return error(StatusCode::BAD_REQUEST, Some("parameter_missing"), "invalid_request_error", &message);
    }
    let get = |name: &str| field(form, name).unwrap_or_default();
    let amount = get("line_items[0][price_data][unit_amount]").parse::<i64>().ok();
    let expires_at = get("expires_at").parse::<i64>().ok();
    let in_bounds = expires_at.is_some_and(|at| SESSION_LIFETIME_S.contains(&(at - now_s())));
    if get("mode") != "payment" || amount.is_none() || get("line_items[0][quantity]") != "1" || !in_bounds {
        let message = "Invalid mode, unit_amount, quantity or expires_at.";
        return error(StatusCode::BAD_REQUEST, Some("parameter_invalid"), "invalid_request_error", message);
    }
    let id = random_id("cs_test_", 24);
    let session = json!({
        "id": id,
        "object": "checkout.session",
        "amount_total": amount,
        "cancel_url": get("cancel_url"),
        "client_reference_id": get("client_reference_id"),
        "client_secret": null,
        "currency": get("line_items[0][price_data][currency]"),
        "expires_at": expires_at,
        "livemode": false,
        "metadata": {"order_id": get("metadata[order_id]")},
        "mode": "payment",
        "payment_intent": null,
        "payment_status": "unpaid",
        "status": "open",
        "success_url": get("success_url"),
        "url": format!("{}/c/pay/{id}", ledger.url),
    });
    ledger.sessions.insert(id, (session.clone(), form.to_vec()));
    (StatusCode::OK, session)
}

fn create_refund(ledger: &mut Ledger, form: &[(String, String)]) -> (StatusCode, Value) {
    let intent_id = field(form, "payment_intent").unwrap_or_default().to_owned();
    let Some(intent) = ledger.intents.get(&intent_id).cloned() else {
        let message = format!("No such payment_intent: '{intent_id}'");
        return error(StatusCode::NOT_FOUND, Some("resource_missing"), "invalid_request_error", &message);
    };
    if ledger.refunds.values().any(|r| r["payment_intent"] == intent_id.as_str()) {
        let message = format!("Charge for PaymentIntent {intent_id} has already been refunded.");
        return error(StatusCode::BAD_REQUEST, Some("charge_already_refunded"), "invalid_request_error", &message);
    }
    let refund = json!({
        "id": random_id("re_", 24),
        "object": "refund",
        "amount": intent["amount"],
        "currency": intent["currency"],
        "created": now_s(),
        "metadata": {"order_id": field(form, "metadata[order_id]")},
        "payment_intent": intent_id,
        "status": "succeeded",
    });
    ledger.refunds.insert(refund["id"].as_str().unwrap_or_default().to_owned(), refund.clone());
    (StatusCode::OK, refund)
}

async fn payment_intents(State(ledger): State<Shared>, headers: HeaderMap, body: String) -> (StatusCode, Json<Value>) {
    answer(ledger, "/v1/payment_intents", headers, body, create_intent).await
}

async fn checkout_sessions(
    State(ledger): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    answer(ledger, "/v1/checkout/sessions", headers, body, create_session).await
}

/// The hosted page: enough to show it is there.
async fn hosted_page(State(ledger): State<Shared>, Path(id): Path<String>) -> (StatusCode, String) {
    match ledger.lock().unwrap().sessions.get(&id) {
        Some((session, _)) => {
            (StatusCode::OK, format!("<h1>Pay {} {}</h1>", session["amount_total"], session["currency"]))
        }
        None => (StatusCode::NOT_FOUND, "no such session".to_owned()),
    }
}

async fn refunds(State(ledger): State<Shared>, headers: HeaderMap, body: String) -> (StatusCode, Json<Value>) {
    answer(ledger, "/v1/refunds", headers, body, create_refund).await
}

/// A session paid on its hosted page.
pub struct PaidSession {
    pub intent_id: String,
    /// Where the page sent the buyer.
    pub success_url: String,
    /// The api's answer to the `payment_intent.succeeded` delivered.
    pub webhook: (u16, Value),
}

/// `Stripe-Signature` for `body` sent at `t`, one `v1` per secret.
pub fn signature_header(secrets: &[&str], t: i64, body: &str) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{t}.{body}").as_bytes());
        header.push_str(&format!(",v1={}", hex::encode(mac.finalize().into_bytes())));
    }
    header
}

impl StripeStub {
    pub async fn start() -> StripeStub {
        let ledger = Shared::default();
        let app = Router::new()
            .route("/v1/payment_intents", post(payment_intents))
            .route("/v1/checkout/sessions", post(checkout_sessions))
            .route("/v1/refunds", post(refunds))
            .route("/c/pay/{id}", get(hosted_page))
            .with_state(ledger.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        ledger.lock().unwrap().url = url.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the stand-in serves");
        });
        StripeStub { url, ledger, task, http: super::client() }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.ledger.lock().unwrap().requests.clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// PaymentIntents created (not answers replayed for an idempotency key).
    pub fn intents_created(&self) -> usize {
        self.ledger.lock().unwrap().intents.len()
    }

    pub fn intent(&self, id: &str) -> Value {
        self.ledger.lock().unwrap().intents.get(id).cloned().unwrap_or_else(|| panic!("no PaymentIntent {id}"))
    }

    /// Refunds made of a PaymentIntent.
    pub fn refunds_of(&self, intent_id: &str) -> Vec<Value> {
        let ledger = self.ledger.lock().unwrap();
        ledger.refunds.values().filter(|r| r["payment_intent"] == intent_id).cloned().collect()
    }

    /// Checkout Sessions created (not answers replayed for an idempotency key).
    pub fn sessions_created(&self) -> usize {
        self.ledger.lock().unwrap().sessions.len()
    }

    /// The buyer pays on the session's hosted page, as Stripe's page would have it: a new
    /// PaymentIntent of the session's amount, carrying `payment_intent_data[metadata]`, the
    /// session completed, and `payment_intent.succeeded` delivered to the api's webhook signed
    /// with `secret`. Returns the PaymentIntent's id, where the page sends the buyer
    /// (`success_url`), and the webhook's answer.
    pub async fn pay_session(&self, session_id: &str, api_url: &str, secret: &str) -> PaidSession {
        let (intent_id, success_url) = {
            let mut ledger = self.ledger.lock().unwrap();
            let (session, form) =
                ledger.sessions.get(session_id).cloned().unwrap_or_else(|| panic!("no session {session_id}"));
            assert_eq!(session["status"], "open", "a session is paid once");
            let id = random_id("pi_", 24);
            let intent = json!({
                "id": id,
                "object": "payment_intent",
                "amount": session["amount_total"],
                "amount_received": session["amount_total"],
                "client_secret": format!("{id}_secret_{}", random_id("", 24)),
                "created": now_s(),
                "currency": session["currency"],
                "livemode": false,
                "metadata": {"order_id": field(&form, "payment_intent_data[metadata][order_id]")},
                "status": "succeeded",
            });
            ledger.intents.insert(id.clone(), intent);
            let (session, _) = ledger.sessions.get_mut(session_id).expect("found above");
            session["status"] = json!("complete");
            session["payment_status"] = json!("paid");
            session["payment_intent"] = json!(id);
            (id, session["success_url"].as_str().unwrap_or_default().to_owned())
        };
        let event = self.event("payment_intent.succeeded", &intent_id);
        let (status, body) = self.deliver(api_url, secret, &event).await;
        PaidSession { intent_id, success_url, webhook: (status, body) }
    }

    /// The next `n` requests answer 500, as during an outage.
    pub fn fail_next(&self, n: usize) {
        self.ledger.lock().unwrap().fail_next = n;
    }

    /// An event about the PaymentIntent `intent_id` as Stripe sends it: a new `evt_…` id, and the
    /// intent as the event leaves it.
    pub fn event(&self, kind: &str, intent_id: &str) -> Value {
        let mut intent = self.intent(intent_id);
        match kind {
            "payment_intent.succeeded" => {
                intent["status"] = json!("succeeded");
                intent["amount_received"] = intent["amount"].clone();
            }
            "payment_intent.payment_failed" => {
                intent["status"] = json!("requires_payment_method");
                intent["last_payment_error"] =
                    json!({"code": "card_declined", "decline_code": "generic_decline", "type": "card_error"});
            }
            _ => {}
        }
        json!({
            "id": random_id("evt_", 24),
            "object": "event",
            "api_version": "2024-06-20",
            "created": now_s(),
            "data": {"object": intent},
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": kind,
        })
    }

    /// POSTs `event` to the api's webhook, signed now with `secret`.
    pub async fn deliver(&self, api_url: &str, secret: &str, event: &Value) -> (u16, Value) {
        let body = event.to_string();
        let header = signature_header(&[secret], now_s(), &body);
        self.deliver_raw(api_url, &body, Some(&header)).await
    }

    /// POSTs `body` to the api's webhook with this `Stripe-Signature`, or none.
    pub async fn deliver_raw(&self, api_url: &str, body: &str, signature: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{api_url}/v1/payments/stripe/webhook"))
            .header("content-type", "application/json; charset=utf-8")
            .header("user-agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        let response = request.send().await.expect("the webhook was delivered");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}
