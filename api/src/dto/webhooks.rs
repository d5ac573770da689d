//! Outgoing webhook endpoints as admins register and list them (`/v1/webhooks`).

use raft_store::{Webhook, WebhookEventType};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rules::{self, WEBHOOK_EVENTS, WEBHOOK_URL};
use super::time_json;
use crate::error::ApiError;

/// Body of `POST /v1/webhooks`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    /// Where deliveries are POSTed: `https://`, or `http://` to `localhost`, `127.0.0.0/8` or
    /// `[::1]` (development and tests). No credentials (`user@`), no fragment, a port 1 to 65535.
    #[schema(schema_with = rules::webhook_url)]
    pub url: String,
    /// The event types delivered to the endpoint, each named once.
    #[schema(schema_with = rules::webhook_events)]
    pub events: Vec<String>,
}

impl WebhookBody {
    /// The event types, if the body meets the document (400 otherwise). What the document cannot
    /// say of the URL (its host, its port) is the store's to judge (422).
    pub(crate) fn checked_events(&self) -> Result<Vec<WebhookEventType>, ApiError> {
        WEBHOOK_URL.check("url", &self.url)?;
        WEBHOOK_EVENTS.check("events", self.events.len())?;
        let mut events = Vec::with_capacity(self.events.len());
        for name in &self.events {
            let event = WebhookEventType::parse(name).ok_or_else(|| {
                ApiError::BadRequest(format!("`events[]` are among {}", WEBHOOK_EVENT_NAMES.join(", ")))
            })?;
            if events.contains(&event) {
                return Err(ApiError::BadRequest(format!("`events` names `{name}` twice")));
            }
            events.push(event);
        }
        Ok(events)
    }
}

/// Every event type's name, as the document lists them.
pub(crate) const WEBHOOK_EVENT_NAMES: [&str; 6] = [
    "order.confirmed",
    "order.payment_failed",
    "order.cancelled",
    "order.refunded",
    "ticket.transferred",
    "ticket.checked_in",
];

/// Answer of `POST /v1/webhooks`: the endpoint, with the secret its deliveries are signed with.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct WebhookCreatedJson {
    #[schema(example = "wh0123456789abcdef")]
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `whsec_…`: the key of `Boxoffice-Signature` (HMAC-SHA256 of `"{t}.{body}"`, keyed with the
    /// whole string). Shown in this answer only (and to a retry with the same `Idempotency-Key`).
    pub secret: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// An endpoint as `GET /v1/webhooks` lists it: without its secret.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct WebhookJson {
    #[schema(example = "wh0123456789abcdef")]
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

fn event_names(w: &Webhook) -> Vec<String> {
    w.events.iter().map(|e| e.as_str().to_owned()).collect()
}

impl From<&Webhook> for WebhookCreatedJson {
    fn from(w: &Webhook) -> Self {
        WebhookCreatedJson {
            webhook_id: w.webhook_id.to_string(),
            url: w.url.clone(),
            events: event_names(w),
            secret: w.secret.clone(),
            created_at: time_json(w.created_at_ms),
        }
    }
}

impl From<&Webhook> for WebhookJson {
    fn from(w: &Webhook) -> Self {
        WebhookJson {
            webhook_id: w.webhook_id.to_string(),
            url: w.url.clone(),
            events: event_names(w),
            created_at: time_json(w.created_at_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_event_names_are_the_stores() {
        let names: Vec<&str> = WebhookEventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, WEBHOOK_EVENT_NAMES);
    }

    #[test]
    fn events_are_known_and_distinct() {
        let body = |events: &[&str]| WebhookBody {
            url: "https://hooks.example.com".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
        };
        assert_eq!(
            body(&["ticket.checked_in", "order.confirmed"]).checked_events().unwrap(),
            vec![WebhookEventType::TicketCheckedIn, WebhookEventType::OrderConfirmed]
        );
        for bad in [&[][..], &["order.created"], &["order.confirmed", "order.confirmed"]] {
            assert!(body(bad).checked_events().is_err(), "{bad:?}");
        }
        let mut ftp = body(&["order.confirmed"]);
        ftp.url = "ftp://hooks.example.com".into();
        assert!(ftp.checked_events().is_err());
    }
}
