//! Stripe: a checkout creates a PaymentIntent (`POST /v1/payment_intents`) and hands its client
//! secret to the buyer's client, which completes the payment with Stripe; or, when the checkout
//! gives a return URL, a Checkout Session (`POST /v1/checkout/sessions`): Stripe's hosted payment
//! page, where the buyer is sent and which sends the buyer back. Either way the result arrives at
//! the webhook (`routes::payments`) as a PaymentIntent's event carrying `metadata.order_id`. A
//! refund is `POST /v1/refunds` of the PaymentIntent.
//!
//! Requests are form-encoded with the secret key as a bearer token and an `Idempotency-Key` made
//! from the order id, so a retried checkout gets the same PaymentIntent (or session) and a refund
//! asked for twice is made once (Stripe keeps keys for 24 hours; an order's payment deadline is
//! minutes). Stripe refuses a key used again with other parameters, so every parameter of a
//! request is derived from the order alone. The secret key is never logged: `Debug` leaves it
//! out, and errors name only URLs, statuses and Stripe's own messages, which mask keys.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use seams::BoxFuture;

use super::{Charge, Charged, HostedPage, PaymentError, PaymentGateway, Refund};
use crate::config::{ConfigError, EDGE_TIMEOUT_MAX};

pub const STRIPE_API_BASE_DEFAULT: &str = "https://api.stripe.com";
/// How far a webhook's signed timestamp may be from our clock: Stripe's libraries' default.
pub const STRIPE_TOLERANCE_DEFAULT: Duration = Duration::from_secs(300);
/// How long one request to Stripe may take. A checkout waits for it; one that times out is
/// retried safely (the idempotency key returns the same PaymentIntent).
pub const STRIPE_REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// The longest tolerance accepted: beyond an hour a captured webhook could be replayed for long.
const TOLERANCE_MAX: Duration = Duration::from_secs(3600);
/// Webhook secrets at once: the current one and those being rotated out.
const WEBHOOK_SECRETS_MAX: usize = 4;
/// Largest answer read from Stripe, in bytes; its objects are a few KiB.
const RESPONSE_BYTES_MAX: usize = 256 * 1024;
/// Stripe's ids of PaymentIntents start so; the composite routes refunds by it.
const INTENT_PREFIX: &str = "pi_";
/// Stripe's ids of Checkout Sessions start so.
const SESSION_PREFIX: &str = "cs_";
/// Stripe's error code for a refund of a charge refunded already: the refund is done.
const ALREADY_REFUNDED: &str = "charge_already_refunded";
/// Stripe's error type for an idempotency key used again with other parameters.
const IDEMPOTENCY_ERROR: &str = "idempotency_error";
/// The earliest a Checkout Session may expire, after its creation: Stripe's minimum.
const SESSION_LIFETIME_MIN_S: i64 = 30 * 60;
/// The latest a Checkout Session may expire, after its creation: Stripe's maximum.
const SESSION_LIFETIME_MAX_S: i64 = 24 * 3600;
/// Added to Stripe's minimum: the store's log time and Stripe's clock differ a little, and a
/// checkout retried just after the order's deadline, before the store has lapsed the order,
/// still asks for a session Stripe accepts.
const SESSION_EXPIRY_MARGIN_S: i64 = 5 * 60;
/// A session asked for at checkout, when the order's deadline is the payment timeout away, must
/// fit Stripe's maximum.
const _: () = assert!(
    raft_store::PAYMENT_TIMEOUT_MS / 1000 + SESSION_LIFETIME_MIN_S + SESSION_EXPIRY_MARGIN_S < SESSION_LIFETIME_MAX_S
);

/// Stripe's settings. Stripe is on when a deployment gives them (the binary: when it is given a
/// secret key).
#[derive(Clone, PartialEq, Eq)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or a stand-in's URL in tests.
    pub api_base: String,
    /// The secret (or restricted) API key, `sk_…`.
    pub secret_key: String,
    /// The webhook endpoint's signing secrets, `whsec_…`: more than one while a secret is
    /// rotated; an event signed with any of them is accepted.
    pub webhook_secrets: Vec<String>,
    /// How far a webhook's signed timestamp may be from this server's clock.
    pub tolerance: Duration,
    /// How long one request to Stripe may take.
    pub request_timeout: Duration,
}

impl StripeConfig {
    /// The defaults, with these secrets.
    pub fn new(secret_key: impl Into<String>, webhook_secrets: Vec<String>) -> StripeConfig {
        StripeConfig {
            api_base: STRIPE_API_BASE_DEFAULT.to_owned(),
            secret_key: secret_key.into(),
            webhook_secrets,
            tolerance: STRIPE_TOLERANCE_DEFAULT,
            request_timeout: STRIPE_REQUEST_TIMEOUT_DEFAULT,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check_stripe_api_base(&self.api_base)?;
        check_token("stripe_secret_key", &self.secret_key)?;
        if !(1..=WEBHOOK_SECRETS_MAX).contains(&self.webhook_secrets.len()) {
            let rule = format!("give 1 to {WEBHOOK_SECRETS_MAX} webhook signing secrets (comma-separated)");
            return Err(config_error("stripe_webhook_secret", format!("{} secrets", self.webhook_secrets.len()), rule));
        }
        for secret in &self.webhook_secrets {
            check_token("stripe_webhook_secret", secret)?;
        }
        check_stripe_tolerance(self.tolerance)?;
        check_stripe_request_timeout(self.request_timeout)?;
        Ok(())
    }
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .field("secret_key", &"***")
            .field("webhook_secrets", &format_args!("[*** × {}]", self.webhook_secrets.len()))
            .field("tolerance", &self.tolerance)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

fn config_error(key: &'static str, value: impl Into<String>, rule: impl Into<String>) -> ConfigError {
    ConfigError { key, value: value.into(), rule: rule.into() }
}

/// A key sent in a header or used as an HMAC key: visible ASCII, not empty. Its value is never
/// shown, only its length.
fn check_token(key: &'static str, token: &str) -> Result<(), ConfigError> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(config_error(key, format!("<{} bytes>", token.len()), "visible ASCII characters, not empty"));
    }
    Ok(())
}

/// Stripe's API base: an `http(s)://` URL without a query.
pub fn check_stripe_api_base(base: &str) -> Result<(), ConfigError> {
    let url = reqwest::Url::parse(base).map_err(|e| config_error("stripe_api_base", base, e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") || url.query().is_some() || url.host_str().is_none() {
        return Err(config_error("stripe_api_base", base, "an http(s):// URL such as https://api.stripe.com"));
    }
    Ok(())
}

/// A URL the buyer's browser may be sent to: `https://` or `http://` (a stand-in in tests).
fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
}

/// The webhook's signature tolerance: positive, at most an hour.
pub fn check_stripe_tolerance(tolerance: Duration) -> Result<Duration, ConfigError> {
    if tolerance.as_secs() == 0 || tolerance > TOLERANCE_MAX {
        let rule = format!("at least 1s and at most {TOLERANCE_MAX:?}");
        return Err(config_error("stripe_tolerance", format!("{tolerance:?}"), rule));
    }
    Ok(tolerance)
}

/// A request's timeout: positive, at most [`EDGE_TIMEOUT_MAX`].
pub fn check_stripe_request_timeout(timeout: Duration) -> Result<Duration, ConfigError> {
    if timeout.is_zero() || timeout > EDGE_TIMEOUT_MAX {
        let rule = format!("positive and at most {EDGE_TIMEOUT_MAX:?}");
        return Err(config_error("stripe_request_timeout", format!("{timeout:?}"), rule));
    }
    Ok(timeout)
}

/// Stripe's PaymentIntents and refunds.
pub struct StripeGateway {
    /// Without a trailing `/`.
    api_base: String,
    secret_key: String,
    http: reqwest::Client,
}

impl fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeGateway").field("api_base", &self.api_base).finish_non_exhaustive()
    }
}

/// The parts of a PaymentIntent we read.
#[derive(Deserialize)]
struct PaymentIntent {
    id: String,
    client_secret: Option<String>,
}

/// The parts of a Checkout Session we read. `client_secret` is Stripe's for sessions embedded in
/// a page (`ui_mode=embedded`); a hosted session has none.
#[derive(Deserialize)]
struct CheckoutSession {
    id: String,
    url: Option<String>,
    client_secret: Option<String>,
}

/// The parts of a refund we read.
#[derive(Deserialize)]
struct RefundObject {
    id: String,
}

/// Stripe's error document: `{"error": {"type", "code", "message"}}`.
#[derive(Deserialize)]
struct ErrorDocument {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

/// Why a request to Stripe did not give the object asked for.
enum Failure {
    /// Network, timeout, 429, 409 (a concurrent request with the same key) or 5xx: retry later.
    Unavailable(String),
    /// Any other answer: this request will not succeed as it is.
    Refused { kind: Option<String>, code: Option<String>, detail: String },
}

impl From<Failure> for PaymentError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable(detail) => PaymentError::Unavailable(detail),
            Failure::Refused { kind: Some(kind), detail, .. } if kind == IDEMPOTENCY_ERROR => {
                PaymentError::Mismatch(format!(
                    "this order's payment was already started with other parameters (such as another \
                     `return_url`): check out with the same ones ({detail})"
                ))
            }
            Failure::Refused { detail, .. } => PaymentError::Refused(detail),
        }
    }
}

impl StripeGateway {
    /// The payment method a checkout names.
    pub const METHOD: &'static str = "stripe";

    pub fn new(config: &StripeConfig) -> Result<StripeGateway, ConfigError> {
        config.validate()?;
        let tls = crate::tls::client_config(None).map_err(|e| config_error("stripe_api_base", "", e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|e| config_error("stripe_api_base", &config.api_base, e.to_string()))?;
        let api_base = config.api_base.trim_end_matches('/').to_owned();
        Ok(StripeGateway { api_base, secret_key: config.secret_key.clone(), http })
    }

    /// POSTs a form to `path` under `idempotency_key`; the object Stripe answers, or why not.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        idempotency_key: &str,
        form: &[(&str, String)],
    ) -> Result<T, Failure> {
        let url = format!("{}{path}", self.api_base);
        let unavailable = |e: reqwest::Error| Failure::Unavailable(format!("POST {url}: {e}"));
        let mut response = self
            .http
            .post(&url)
            .bearer_auth(&self.secret_key)
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
            if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
                let detail = format!("POST {url}: the answer is too large");
                return Err(Failure::Refused { kind: None, code: None, detail });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| Failure::Refused {
                kind: None,
                code: None,
                detail: format!("POST {url}: {status} with an unexpected body: {e}"),
            });
        }
        let error = serde_json::from_slice::<ErrorDocument>(&body).ok().map(|d| d.error);
        let (kind, code, message) = match error {
            Some(e) => (e.kind, e.code, e.message),
            None => (None, None, None),
        };
        let detail = format!(
            "POST {url}: {status} {}/{}: {}",
            kind.as_deref().unwrap_or("-"),
            code.as_deref().unwrap_or("-"),
            message.as_deref().unwrap_or("no message"),
        );
        let retry = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 409;
        Err(if retry { Failure::Unavailable(detail) } else { Failure::Refused { kind, code, detail } })
    }

    async fn create(&self, charge: Charge) -> Result<Charged, PaymentError> {
        match &charge.hosted {
            Some(page) => self.create_session(&charge, page).await,
            None => self.create_intent(charge).await,
        }
    }

    async fn create_intent(&self, charge: Charge) -> Result<Charged, PaymentError> {
        let order_id = charge.order_id.to_string();
        let form = [
            ("amount", charge.amount.amount.to_string()),
            ("currency", charge.amount.currency.as_str().to_ascii_lowercase()),
            ("metadata[order_id]", order_id.clone()),
            ("automatic_payment_methods[enabled]", "true".to_owned()),
        ];
        let intent: PaymentIntent = self.post("/v1/payment_intents", &order_id, &form).await?;
        match intent.client_secret {
            Some(client_secret) if intent.id.starts_with(INTENT_PREFIX) => {
                Ok(Charged::Pending { reference: intent.id, client_secret, url: None })
            }
            _ => Err(PaymentError::Refused(format!(
                "Stripe answered a PaymentIntent without an id or secret for {order_id}"
            ))),
        }
    }

    /// Stripe's hosted payment page for the order: one line item of the order's total, the buyer
    /// sent back to the return URL whether they pay or cancel, and the order's id on the session
    /// and on the PaymentIntent it makes, so the webhook confirms the order as it confirms a bare
    /// PaymentIntent (recording the PaymentIntent's id, which a refund names). The reference
    /// answered is the session's id; nothing records it.
    ///
    /// The session expires at the order's payment deadline plus Stripe's minimum lifetime (30
    /// minutes) and a margin: fixed by the order, so a retry asks the same and gets the same
    /// session, and never sooner than Stripe allows. So the page outlives the order's deadline
    /// (`raft_store::PAYMENT_TIMEOUT_MS`, 10 minutes): a buyer who pays after it pays for an
    /// order that has lapsed (`payment_failed`, its seats back on sale). That payment's
    /// `payment_intent.succeeded` marks the order `refunded` (`PaymentResult` on a failed order)
    /// and the webhook refunds the PaymentIntent at once (`refund_unless_kept`), as for any late
    /// approval.
    async fn create_session(&self, charge: &Charge, page: &HostedPage) -> Result<Charged, PaymentError> {
        let order_id = charge.order_id.to_string();
        let expires_at_s = page.payment_deadline_ms / 1000 + SESSION_LIFETIME_MIN_S + SESSION_EXPIRY_MARGIN_S;
        let form = [
            ("mode", "payment".to_owned()),
            ("line_items[0][price_data][currency]", charge.amount.currency.as_str().to_ascii_lowercase()),
            ("line_items[0][price_data][unit_amount]", charge.amount.amount.to_string()),
            // The order, not the event's name: every parameter comes from the order, so a retry
            // asks the same whatever was edited since.
            ("line_items[0][price_data][product_data][name]", format!("Order {order_id}")),
            ("line_items[0][quantity]", "1".to_owned()),
            ("success_url", page.return_url.clone()),
            ("cancel_url", page.return_url.clone()),
            ("client_reference_id", order_id.clone()),
            ("metadata[order_id]", order_id.clone()),
            ("payment_intent_data[metadata][order_id]", order_id.clone()),
            ("expires_at", expires_at_s.to_string()),
        ];
        // Not the PaymentIntent's key (the order id): the two are different requests.
        let key = format!("checkout-session-{order_id}");
        let session: CheckoutSession = self.post("/v1/checkout/sessions", &key, &form).await?;
        match session.url {
            Some(url) if session.id.starts_with(SESSION_PREFIX) && is_http_url(&url) => Ok(Charged::Pending {
                reference: session.id,
                client_secret: session.client_secret.unwrap_or_default(),
                url: Some(url),
            }),
            _ => Err(PaymentError::Refused(format!(
                "Stripe answered a Checkout Session without an id or a page's URL for {order_id}"
            ))),
        }
    }

    async fn refund_intent(&self, refund: Refund) -> Result<String, PaymentError> {
        let intent = match refund.charge_reference {
            Some(reference) if reference.starts_with(INTENT_PREFIX) => reference,
            other => {
                return Err(PaymentError::Refused(format!(
                    "order {}: {other:?} is not a Stripe PaymentIntent",
                    refund.order_id
                )))
            }
        };
        let key = format!("refund-{}", refund.order_id);
        let form = [("payment_intent", intent.clone()), ("metadata[order_id]", refund.order_id.to_string())];
        match self.post::<RefundObject>("/v1/refunds", &key, &form).await {
            Ok(refunded) => Ok(refunded.id),
            // Refunded already (by an earlier attempt whose key has expired, or from Stripe's
            // dashboard): what was asked is done.
            Err(Failure::Refused { code: Some(code), .. }) if code == ALREADY_REFUNDED => Ok(intent),
            Err(failure) => Err(failure.into()),
        }
    }
}

impl PaymentGateway for StripeGateway {
    fn methods(&self) -> Vec<&'static str> {
        vec![Self::METHOD]
    }

    fn owns(&self, reference: &str) -> bool {
        reference.starts_with(INTENT_PREFIX)
    }

    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<Charged, PaymentError>> {
        Box::pin(self.create(charge))
    }

    fn refund(&self, refund: Refund) -> BoxFuture<'_, Result<String, PaymentError>> {
        Box::pin(self.refund_intent(refund))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StripeConfig {
        StripeConfig::new("sk_test_123", vec!["whsec_1".into()])
    }

    #[test]
    fn settings_are_checked_and_secrets_never_shown() {
        assert_eq!(config().validate(), Ok(()));
        let shown = format!("{:?}", config());
        assert!(!shown.contains("sk_test_123") && !shown.contains("whsec_1"), "{shown}");
        let bad = |adjust: fn(&mut StripeConfig)| {
            let mut c = config();
            adjust(&mut c);
            c.validate().unwrap_err().key
        };
        assert_eq!(bad(|c| c.secret_key = String::new()), "stripe_secret_key");
        assert_eq!(bad(|c| c.secret_key = "sk live".into()), "stripe_secret_key");
        assert_eq!(bad(|c| c.webhook_secrets.clear()), "stripe_webhook_secret");
        assert_eq!(bad(|c| c.webhook_secrets.push(String::new())), "stripe_webhook_secret");
        assert_eq!(bad(|c| c.api_base = "ftp://example.com".into()), "stripe_api_base");
        assert_eq!(bad(|c| c.api_base = "not a url".into()), "stripe_api_base");
        assert_eq!(bad(|c| c.tolerance = Duration::ZERO), "stripe_tolerance");
        assert_eq!(bad(|c| c.request_timeout = Duration::ZERO), "stripe_request_timeout");
        let err = bad_value(|c| c.secret_key = "sk live".into());
        assert!(!err.contains("sk live"), "{err}");
    }

    fn bad_value(adjust: fn(&mut StripeConfig)) -> String {
        let mut c = config();
        adjust(&mut c);
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn stripe_owns_payment_intents_only() {
        let gateway = StripeGateway::new(&config()).unwrap();
        assert!(gateway.owns("pi_3Nabc") && !gateway.owns("sandbox-ok-x") && !gateway.owns("ch_1"));
        assert!(gateway.accepts("stripe") && !gateway.accepts("sandbox_ok"));
        assert!(!format!("{gateway:?}").contains("sk_test_123"));
    }
}
