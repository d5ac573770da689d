//! Request identity for exactly-once writes (DESIGN.md, rule 4).
//!
//! The state machine remembers outcomes by request id and refuses a known id with another
//! fingerprint. The api derives both: the id from the user and the `Idempotency-Key` (random
//! without a key), the fingerprint from what was asked (method, path and canonical body). Ids of
//! new venues and events are derived the same way, so a retry lands on the same group and is
//! deduplicated there.

use raft_store::{OrderId, RequestId, UserId};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Header that makes a write idempotent.
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Longest accepted `Idempotency-Key`, in bytes.
pub(crate) const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

// Domain tags keep the hashes of different uses apart; changing one changes every derived id.
const REQUEST_TAG: &[u8] = b"boxoffice/request-id/v1";
const FINGERPRINT_TAG: &[u8] = b"boxoffice/fingerprint/v1";
const PAYMENT_TAG: &[u8] = b"boxoffice/payment/v1";
const STRIPE_EVENT_TAG: &[u8] = b"boxoffice/stripe-event/v1";

/// A validated `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdempotencyKey(String);

impl IdempotencyKey {
    pub(crate) fn parse(raw: &[u8]) -> Result<IdempotencyKey, ApiError> {
        let visible = raw.iter().all(|b| b.is_ascii_graphic());
        if raw.is_empty() || raw.len() > IDEMPOTENCY_KEY_LEN_MAX || !visible {
            return Err(ApiError::BadRequest(format!(
                "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} visible ASCII characters"
            )));
        }
        Ok(IdempotencyKey(String::from_utf8_lossy(raw).into_owned()))
    }
}

/// What a derived id is for; part of the hash so a venue and an event never share bits.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IdKind {
    Venue,
    Event,
    Webhook,
}

impl IdKind {
    fn tag(self) -> &'static [u8] {
        match self {
            IdKind::Venue => b"boxoffice/venue-id/v1",
            IdKind::Event => b"boxoffice/event-id/v1",
            IdKind::Webhook => b"boxoffice/webhook-id/v1",
        }
    }
}

/// Hashes the parts with a length in front of each, so no two part lists collide by concatenation.
pub(crate) fn digest(tag: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in std::iter::once(&tag).chain(parts) {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

pub(crate) fn first_16(bytes: [u8; 32]) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&bytes[..16]);
    out
}

fn first_u64(bytes: [u8; 32]) -> u64 {
    let mut out = [0; 8];
    out.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(out)
}

/// The request id of a write: derived from the user and the key, or random without a key.
pub(crate) fn request_id(user: &UserId, key: Option<&IdempotencyKey>) -> RequestId {
    match key {
        Some(key) => RequestId(first_16(digest(REQUEST_TAG, &[user.as_str().as_bytes(), key.0.as_bytes()]))),
        None => RequestId(rand::random()),
    }
}

/// The 64 bits of a new venue, event or webhook id: derived from the user and the key, or random.
pub(crate) fn new_id_bits(kind: IdKind, user: &UserId, key: Option<&IdempotencyKey>) -> u64 {
    match key {
        Some(key) => first_u64(digest(kind.tag(), &[user.as_str().as_bytes(), key.0.as_bytes()])),
        None => rand::random(),
    }
}

/// The one request id under which an order's payment result is recorded. It depends on the
/// order alone, so concurrent or retried checkouts never record two results.
pub(crate) fn payment_request_id(order_id: &OrderId) -> RequestId {
    RequestId(first_16(digest(PAYMENT_TAG, &[order_id.to_string().as_bytes()])))
}

/// The request id under which a Stripe event's payment result is recorded: from the event's id
/// alone, so an event Stripe delivers again (it retries until it gets a 2xx) is applied once.
/// Another event about the same payment is another request: the state machine orders them.
pub(crate) fn stripe_event_request_id(event_id: &str) -> RequestId {
    RequestId(first_16(digest(STRIPE_EVENT_TAG, &[event_id.as_bytes()])))
}

/// Fingerprint of a request: method, path and the body with object keys sorted and whitespace
/// dropped, so two spellings of the same JSON are the same request.
pub(crate) fn fingerprint(method: &str, path: &str, body: &Value) -> u64 {
    let mut canonical = Vec::new();
    write_canonical(body, &mut canonical);
    first_u64(digest(FINGERPRINT_TAG, &[method.as_bytes(), path.as_bytes(), &canonical]))
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_key_order_and_whitespace_but_not_values() {
        let a: Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": 1}], "a": "s"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":"s","b":[1,{"x":1,"y":2}]}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"a":"t","b":[1,{"x":1,"y":2}]}"#).unwrap();
        assert_eq!(fingerprint("POST", "/p", &a), fingerprint("POST", "/p", &b));
        assert_ne!(fingerprint("POST", "/p", &a), fingerprint("POST", "/p", &c));
        assert_ne!(fingerprint("POST", "/p", &a), fingerprint("POST", "/q", &a));
    }

    #[test]
    fn request_ids_are_per_user_and_key() {
        let key = IdempotencyKey::parse(b"k-1").unwrap();
        let (u1, u2) = (UserId::parse("u1").unwrap(), UserId::parse("u2").unwrap());
        assert_eq!(request_id(&u1, Some(&key)), request_id(&u1, Some(&key)));
        assert_ne!(request_id(&u1, Some(&key)), request_id(&u2, Some(&key)));
        assert_ne!(request_id(&u1, None), request_id(&u1, None));
    }

    #[test]
    fn stripe_event_ids_have_their_own_request_ids() {
        assert_eq!(stripe_event_request_id("evt_1"), stripe_event_request_id("evt_1"));
        assert_ne!(stripe_event_request_id("evt_1"), stripe_event_request_id("evt_2"));
        let order = OrderId { event_id: raft_store::EventId::from_u64(1), seq: 1 };
        assert_ne!(stripe_event_request_id(&order.to_string()), payment_request_id(&order));
    }

    #[test]
    fn idempotency_keys_must_be_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse(b"abc-123_~").is_ok());
        assert!(IdempotencyKey::parse(b"").is_err());
        assert!(IdempotencyKey::parse(b"a b").is_err());
        assert!(IdempotencyKey::parse("é".as_bytes()).is_err());
        assert!(IdempotencyKey::parse(&[b'k'; IDEMPOTENCY_KEY_LEN_MAX]).is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; IDEMPOTENCY_KEY_LEN_MAX + 1]).is_err());
    }
}
