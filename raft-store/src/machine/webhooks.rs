//! The meta group's registry of outgoing webhook endpoints (`raft_store::Webhook`): registered
//! and deleted by admins, read by the dispatchers. Empty in every shard.
//!
//! Added in format 3: a snapshot of format 2 has no registry (see `Machine::decode`).

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use super::ctx::Ctx;
use crate::command::{Command, Outcome, Refusal};
use crate::ids::{UserId, WebhookId};
use crate::limits::WEBHOOKS_MAX;
use crate::webhook::{check_webhook_secret, check_webhook_url, Webhook, WebhookEventType};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Webhooks {
    #[serde(deserialize_with = "crate::cautious::ord_map")]
    endpoints: OrdMap<WebhookId, Arc<Webhook>>,
}

fn invalid(detail: impl Into<String>) -> Outcome {
    Outcome::Refused(Refusal::Invalid { detail: detail.into() })
}

impl Webhooks {
    pub(crate) fn apply(&mut self, ctx: Ctx, command: &Command) -> Outcome {
        match command {
            Command::RegisterWebhook { webhook_id, url, events, secret, created_by } => {
                self.register(ctx, webhook_id, url, events, secret, created_by)
            }
            Command::DeleteWebhook { webhook_id } => match self.endpoints.remove(webhook_id) {
                Some(removed) => Outcome::Webhook(Webhook::clone(&removed)),
                None => Outcome::Refused(Refusal::not_found(format!("webhook {webhook_id}"))),
            },
            _ => Outcome::Refused(Refusal::WrongGroup),
        }
    }

    /// Registers an endpoint. Registering an id again with the same URL and events answers the
    /// endpoint as it is (its first secret): the id derives from the admin's idempotency key, so
    /// this is a retry that outlived the remembered outcome. With another URL or events it is a
    /// conflict.
    fn register(
        &mut self,
        ctx: Ctx,
        webhook_id: &WebhookId,
        url: &str,
        events: &[WebhookEventType],
        secret: &str,
        created_by: &UserId,
    ) -> Outcome {
        if let Err(detail) = check_webhook_url(url) {
            return invalid(detail);
        }
        if let Err(detail) = check_webhook_secret(secret) {
            return invalid(detail);
        }
        // Distinct and in a fixed order, whatever order the admin named them in.
        let events: Vec<WebhookEventType> = WebhookEventType::ALL.into_iter().filter(|t| events.contains(t)).collect();
        if events.is_empty() {
            return invalid("a webhook subscribes to at least one event type");
        }
        if let Some(existing) = self.endpoints.get(webhook_id) {
            if existing.url == url && existing.events == events {
                return Outcome::Webhook(Webhook::clone(existing));
            }
            return Outcome::Refused(Refusal::Conflict {
                detail: format!("webhook {webhook_id} exists with another URL or events"),
            });
        }
        if self.endpoints.len() >= WEBHOOKS_MAX {
            return invalid(format!("a cluster has at most {WEBHOOKS_MAX} webhook endpoints; delete one first"));
        }
        let webhook = Webhook {
            webhook_id: webhook_id.clone(),
            url: url.to_owned(),
            events,
            secret: secret.to_owned(),
            created_at_ms: ctx.now_ms,
            created_by: created_by.clone(),
        };
        self.endpoints.insert(webhook_id.clone(), Arc::new(webhook.clone()));
        debug_assert!(self.endpoints.len() <= WEBHOOKS_MAX);
        Outcome::Webhook(webhook)
    }

    /// Every endpoint, by id.
    pub(crate) fn list(&self) -> Vec<Webhook> {
        self.endpoints.values().map(|w| Webhook::clone(w)).collect()
    }
}
