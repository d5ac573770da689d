//! A stand-in for Stripe, in the test process: the two endpoints the api calls, in Stripe's wire
//! format, and Stripe's side of the webhook.
//!
//! - `POST /v1/payment_intents` and `POST /v1/refunds`: form-encoded, `Authorization: Bearer`
//!   with the secret key (401 otherwise), `Idempotency-Key` honoured (the same key answers the
//!   same object), answers shaped like Stripe's (`pi_…` with `pi_…_secret_…`, `re_…`), Stripe's
//!   error documents (`charge_already_refunded`, `resource_missing`).
//! - Every request is recorded, so a test can say what the api asked.
//! - [`StripeStub::deliver`] POSTs an event to the api as Stripe does: `evt_…`, signed with a
//!   webhook secret in `Stripe-Signature`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
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
    /// Refunds by id.
    refunds: HashMap<String, Value>,
    /// The answer given under each idempotency key: (path, status, body).
    replies: HashMap<String, (String, StatusCode, Value)>,
    /// Requests still to answer 500, as an outage would.
    fail_next: usize,
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
    } else if let Some((_, status, value)) = key.as_ref().and_then(|k| ledger.replies.get(k)) {
        (*status, value.clone())
    } else {
        let (status, value) = create(&mut ledger, &form);
        // Stripe keeps the answer of a request that reached its logic, errors included.
        if let Some(key) = &key {
            ledger.replies.insert(key.clone(), (path.to_owned(), status, value.clone()));
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

async fn refunds(State(ledger): State<Shared>, headers: HeaderMap, body: String) -> (StatusCode, Json<Value>) {
    answer(ledger, "/v1/refunds", headers, body, create_refund).await
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
            .route("/v1/refunds", post(refunds))
            .with_state(ledger.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
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
