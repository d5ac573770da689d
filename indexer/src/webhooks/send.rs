//! One delivery attempt: a signed POST of an event's body to an endpoint, with a deadline. A 2xx
//! is delivered; any other answer, a redirect included, or no answer is a failure to retry.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::header;
use raft_store::Webhook;

use super::event::WebhookEvent;
use super::signature::{sign, SIGNATURE_HEADER};
use super::DispatchError;

/// The `User-Agent` of deliveries.
const USER_AGENT: &str = concat!("boxoffice-webhooks/", env!("CARGO_PKG_VERSION"));
/// Also sent as a header, so a receiver can deduplicate before it parses the body.
pub const EVENT_ID_HEADER: &str = "Boxoffice-Event-Id";

pub(crate) struct Sender {
    http: reqwest::Client,
}

impl Sender {
    pub(crate) fn new(
        ca_file: Option<&Path>,
        request_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Sender, DispatchError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(client_tls(ca_file)?)
            .timeout(request_timeout)
            .connect_timeout(connect_timeout)
            // A redirect is the endpoint's mistake to fix, not a place to send signed events.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| DispatchError::Config(format!("the webhook client: {e}")))?;
        Ok(Sender { http })
    }

    /// POSTs `event` to `endpoint`, signed now. `Err` says why it was not delivered.
    pub(crate) async fn send(&self, endpoint: &Webhook, event: &WebhookEvent) -> Result<(), String> {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let response = self
            .http
            .post(&endpoint.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(&endpoint.secret, t, &event.body))
            .header(EVENT_ID_HEADER, &event.id)
            .body(event.body.clone())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

/// reqwest's error with its causes: "error sending request" alone says nothing.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Trusts the public roots and, for endpoints behind a private CA, the certificates in `ca_file`.
fn client_tls(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, DispatchError> {
    pki::public_client_config(ca_file).map_err(|e| DispatchError::Config(format!("webhook TLS: {e}")))
}
