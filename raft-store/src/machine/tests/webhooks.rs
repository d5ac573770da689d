//! Outgoing webhook endpoints in the meta group: register, list, delete; retries by id; the
//! limits apply enforces; and the registry in a snapshot.

use super::*;
use crate::ids::WebhookId;
use crate::limits::{WEBHOOKS_MAX, WEBHOOK_URL_LEN_MAX};
use crate::webhook::{Webhook, WebhookEventType};

use WebhookEventType::{OrderCancelled, OrderConfirmed, TicketCheckedIn};

/// The meta group with its cold store (remembered outcomes), applying one entry at a time.
struct Meta {
    m: Machine,
    cold: crate::cold::MemCold,
    index: u64,
}

impl Meta {
    fn new() -> Meta {
        Meta { m: Machine::new(GroupId::META, SHARDS), cold: crate::cold::MemCold::default(), index: 0 }
    }

    fn run_keyed(
        &mut self,
        time_ms: i64,
        request_id: Option<RequestId>,
        fingerprint: u64,
        command: Command,
    ) -> Outcome {
        self.index += 1;
        let proposal = Proposal { request_id, fingerprint, keyed: request_id.is_some(), command };
        let applied = self.m.apply(self.index, &Request::single(time_ms, proposal), &self.cold).expect("cold reads");
        self.cold.write(applied.writes);
        applied.outcomes.into_iter().next().expect("one outcome")
    }

    fn register(&mut self, time_ms: i64, id: u64, url: &str, events: &[WebhookEventType]) -> Outcome {
        self.run_keyed(time_ms, None, 0, register(id, url, events, "whsec_first"))
    }

    fn list(&self) -> Vec<Webhook> {
        match self.m.query(&Query::Webhooks, T0, &self.cold).expect("cold reads") {
            Answer::Webhooks(list) => list,
            other => panic!("expected webhooks, got {other:?}"),
        }
    }
}

fn register(id: u64, url: &str, events: &[WebhookEventType], secret: &str) -> Command {
    Command::RegisterWebhook {
        webhook_id: WebhookId::from_u64(id),
        url: url.into(),
        events: events.to_vec(),
        secret: secret.into(),
        created_by: user("admin"),
    }
}

fn webhook(out: Outcome) -> Webhook {
    match out {
        Outcome::Webhook(w) => w,
        other => panic!("expected a webhook, got {other:?}"),
    }
}

const URL: &str = "https://hooks.example.com/boxoffice";

#[test]
fn an_endpoint_is_registered_listed_and_deleted() {
    let mut meta = Meta::new();
    let created = webhook(meta.register(T0, 1, URL, &[TicketCheckedIn, OrderConfirmed, OrderConfirmed]));
    assert_eq!(created.webhook_id, WebhookId::from_u64(1));
    assert_eq!(created.events, vec![OrderConfirmed, TicketCheckedIn], "distinct, in the fixed order");
    assert_eq!((created.secret.as_str(), created.created_at_ms), ("whsec_first", T0), "stamped with log time");
    webhook(meta.register(T0 + 1, 2, "http://127.0.0.1:9000/hook", &[OrderCancelled]));
    let ids: Vec<WebhookId> = meta.list().into_iter().map(|w| w.webhook_id).collect();
    assert_eq!(ids, vec![WebhookId::from_u64(1), WebhookId::from_u64(2)]);

    let deleted = webhook(meta.run_keyed(T0 + 2, None, 0, Command::DeleteWebhook { webhook_id: created.webhook_id }));
    assert_eq!(deleted.url, URL);
    assert_eq!(meta.list().len(), 1);
    let again = meta.run_keyed(T0 + 3, None, 0, Command::DeleteWebhook { webhook_id: WebhookId::from_u64(1) });
    assert!(matches!(refusal(again), Refusal::NotFound { .. }));
}

#[test]
fn a_retried_registration_answers_the_first_endpoint_and_its_secret() {
    let mut meta = Meta::new();
    let id = RequestId([7; 16]);
    let first = webhook(meta.run_keyed(T0, Some(id), 11, register(1, URL, &[OrderConfirmed], "whsec_first")));
    // The api draws a new secret for each attempt: the remembered outcome keeps the first.
    let retry = webhook(meta.run_keyed(T0 + 1, Some(id), 11, register(1, URL, &[OrderConfirmed], "whsec_again")));
    assert_eq!(retry, first);
    // The same key for another request is refused.
    let reused = meta.run_keyed(T0 + 2, Some(id), 12, register(1, URL, &[OrderCancelled], "whsec_x"));
    assert_eq!(refusal(reused), Refusal::IdempotencyKeyReused);
    // Past the remembered outcome (a new request id), the same id and endpoint answer it as it is;
    // another URL or event list under the id is a conflict.
    let late = webhook(meta.run_keyed(T0 + 3, None, 0, register(1, URL, &[OrderConfirmed], "whsec_late")));
    assert_eq!(late, first);
    let other = meta.run_keyed(T0 + 4, None, 0, register(1, "https://other.example.com", &[OrderConfirmed], "s"));
    assert!(matches!(refusal(other), Refusal::Conflict { .. }));
    assert_eq!(meta.list(), vec![first]);
}

#[test]
fn bad_endpoints_and_too_many_are_refused_and_change_nothing() {
    let mut meta = Meta::new();
    let long = format!("https://example.com/{}", "a".repeat(WEBHOOK_URL_LEN_MAX));
    for (url, events, secret) in [
        ("http://hooks.example.com/x", vec![OrderConfirmed], "whsec_a"),
        ("ftp://hooks.example.com/x", vec![OrderConfirmed], "whsec_a"),
        (long.as_str(), vec![OrderConfirmed], "whsec_a"),
        (URL, vec![], "whsec_a"),
        (URL, vec![OrderConfirmed], ""),
    ] {
        let out = meta.run_keyed(T0, None, 0, register(1, url, &events, secret));
        assert!(matches!(refusal(out), Refusal::Invalid { .. }), "{url} {events:?} {secret:?}");
    }
    assert!(meta.list().is_empty());
    for id in 0..WEBHOOKS_MAX as u64 {
        webhook(meta.register(T0, id, URL, &[OrderConfirmed]));
    }
    let over = meta.register(T0, WEBHOOKS_MAX as u64, URL, &[OrderConfirmed]);
    assert!(matches!(refusal(over), Refusal::Invalid { .. }));
    assert_eq!(meta.list().len(), WEBHOOKS_MAX);
    // An existing one is still answered; after a delete there is room again.
    webhook(meta.register(T0, 0, URL, &[OrderConfirmed]));
    webhook(meta.run_keyed(T0, None, 0, Command::DeleteWebhook { webhook_id: WebhookId::from_u64(0) }));
    webhook(meta.register(T0, WEBHOOKS_MAX as u64, URL, &[OrderConfirmed]));
}

#[test]
fn shards_keep_no_endpoints_and_refuse_webhook_commands() {
    let mut h = Harness::new();
    let out = h.run(T0, register(1, URL, &[OrderConfirmed], "whsec_a"));
    assert_eq!(refusal(out), Refusal::WrongGroup);
    assert_eq!(h.q(&Query::Webhooks, T0), Answer::WrongGroup);
}

#[test]
fn the_registry_survives_a_snapshot() {
    let mut meta = Meta::new();
    webhook(meta.register(T0, 1, URL, &[OrderConfirmed, TicketCheckedIn]));
    webhook(meta.register(T0, 2, "http://localhost:8080/hook", &[OrderCancelled]));
    let bytes = meta.m.encode().expect("encodes");
    let restored = Machine::decode(&bytes).expect("decodes");
    assert_eq!(restored, meta.m);
    let Answer::Webhooks(list) = query_bare(&restored, &Query::Webhooks, T0) else { panic!("no webhooks") };
    assert_eq!(list, meta.list());
}
