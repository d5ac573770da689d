//! The waiting room's signed tokens and the shuffle of early arrivals: what lets any api instance
//! honour any other's tokens without sharing anything but the signing secret.
//!
//! - A **queue token** proves "user U holds sequence number S in event E's queue". Sequence
//!   numbers come from the store, one place per user (see `waiting_room.rs`).
//! - A sequence number becomes a **position** (the admission order): sequences leased before the
//!   sale opened (below the store's `early_bound`) are shuffled among themselves by a keyed
//!   permutation, so joining early gives no edge over joining on time; later ones keep their order.
//! - An **access token** proves "position P of E was admitted, for user U, until T". The store
//!   records each redeemed pass by its id (a hash of user, event and position), so a shared or
//!   replayed token buys nothing twice.
//!
//! Each kind is signed with its own key derived from the api secret, so one kind can never be
//! passed off as another, or as a bearer token.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use raft_store::{AccessPass, EventId, UserId, PASS_TTL_MS};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::identity::{digest, first_16};

const QUEUE_KEY_TAG: &[u8] = b"boxoffice/queue-token-key/v1";
const ACCESS_KEY_TAG: &[u8] = b"boxoffice/access-token-key/v1";
const SHUFFLE_KEY_TAG: &[u8] = b"boxoffice/queue-shuffle-key/v1";
const SHUFFLE_ROUND_TAG: &[u8] = b"boxoffice/queue-shuffle-round/v1";
const PASS_ID_TAG: &[u8] = b"boxoffice/access-pass/v1";
/// Feistel rounds of the shuffle; four make a keyed pseudo-random permutation.
const SHUFFLE_ROUNDS: u8 = 4;
/// Clock skew tolerated between api instances, in seconds.
const TOKEN_LEEWAY_S: u64 = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueClaims {
    pub sub: String,
    pub evt: String,
    pub seq: u64,
    /// Unix seconds: the event's start, after which the queue is of no use.
    pub exp: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccessClaims {
    pub sub: String,
    pub evt: String,
    pub pos: u64,
    /// Unix seconds, for generic JWT tooling; `exp_ms` is what the store checks.
    pub exp: u64,
    pub exp_ms: i64,
}

/// Signs and verifies queue and access tokens and places sequence numbers. Built once from the
/// api secret, which every instance shares.
pub(crate) struct QueueKeys {
    queue: (EncodingKey, DecodingKey),
    access: (EncodingKey, DecodingKey),
    shuffle: [u8; 32],
    validation: Validation,
}

fn key_pair(tag: &[u8], secret: &str) -> (EncodingKey, DecodingKey) {
    let key = digest(tag, &[secret.as_bytes()]);
    (EncodingKey::from_secret(&key), DecodingKey::from_secret(&key))
}

impl QueueKeys {
    pub(crate) fn new(secret: &str) -> QueueKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = TOKEN_LEEWAY_S;
        QueueKeys {
            queue: key_pair(QUEUE_KEY_TAG, secret),
            access: key_pair(ACCESS_KEY_TAG, secret),
            shuffle: digest(SHUFFLE_KEY_TAG, &[secret.as_bytes()]),
            validation,
        }
    }

    pub(crate) fn queue_token(&self, claims: &QueueClaims) -> String {
        // HS256 over plain claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.queue.0).unwrap_or_default()
    }

    /// The claims of a valid queue token of this user for this event; 403 `queue_required`
    /// for anything else.
    pub(crate) fn verify_queue(&self, token: &str, user: &UserId, event_id: &EventId) -> Result<QueueClaims, ApiError> {
        let claims = jsonwebtoken::decode::<QueueClaims>(token, &self.queue.1, &self.validation)
            .map_err(|_| queue_required("the queue token is invalid or has expired: join the queue again"))?
            .claims;
        if claims.sub != user.as_str() || claims.evt != event_id.as_str() {
            return Err(queue_required("this queue token belongs to another user or event"));
        }
        Ok(claims)
    }

    /// The access token of an admitted position, valid for the pass lifetime after its admission.
    pub(crate) fn access_token(&self, user: &UserId, event_id: &EventId, position: u64, admitted_at_ms: i64) -> String {
        let exp_ms = admitted_at_ms + PASS_TTL_MS;
        let claims = AccessClaims {
            sub: user.as_str().to_owned(),
            evt: event_id.as_str().to_owned(),
            pos: position,
            exp: u64::try_from(exp_ms.div_euclid(1_000)).unwrap_or(0),
            exp_ms,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.access.0).unwrap_or_default()
    }

    /// The store's pass for a valid access token of this user for this event; 403
    /// `queue_required` for anything else. Expiry to the millisecond is the store's to check.
    pub(crate) fn verify_access(&self, token: &str, user: &UserId, event_id: &EventId) -> Result<AccessPass, ApiError> {
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &self.access.1, &self.validation)
            .map_err(|_| queue_required("the access token is invalid or has expired: join the queue again"))?
            .claims;
        if claims.sub != user.as_str() || claims.evt != event_id.as_str() {
            return Err(queue_required("this access token belongs to another user or event"));
        }
        Ok(AccessPass { pass_id: pass_id(user, event_id, claims.pos), expires_at_ms: claims.exp_ms })
    }

    /// Where sequence `seq` stands in the admission order, once the early group is closed
    /// (`early_bound` known): `None` before the sale opens.
    pub(crate) fn position(&self, event_id: &EventId, seq: u64, early_bound: Option<u64>) -> Option<u64> {
        let bound = early_bound?;
        if seq >= bound {
            return Some(seq);
        }
        Some(shuffle(&self.shuffle, event_id, seq, bound))
    }
}

fn queue_required(detail: &str) -> ApiError {
    ApiError::QueueRequired(detail.to_owned())
}

/// The store's id of the pass of one admitted position.
pub(crate) fn pass_id(user: &UserId, event_id: &EventId, position: u64) -> [u8; 16] {
    first_16(digest(PASS_ID_TAG, &[user.as_str().as_bytes(), event_id.as_str().as_bytes(), &position.to_be_bytes()]))
}

/// A keyed permutation of `0..n` (a balanced Feistel network over the smallest even number of
/// bits that covers `n`, cycle-walking back into range), evaluated at `x`. Each event gets its own
/// permutation; without the key, the order cannot be predicted.
pub(crate) fn shuffle(key: &[u8; 32], event_id: &EventId, x: u64, n: u64) -> u64 {
    debug_assert!(x < n);
    if n <= 1 {
        return x;
    }
    let bits = 64 - (n - 1).leading_zeros();
    let half = bits.div_ceil(2);
    let mask = (1u64 << half) - 1;
    let round = |r: u8, value: u64| -> u64 {
        let h = digest(SHUFFLE_ROUND_TAG, &[key, event_id.as_str().as_bytes(), &[r], &value.to_be_bytes()]);
        u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) & mask
    };
    let mut y = x;
    // The domain is at most 4n, so on average fewer than four walks land back in range; a
    // permutation's cycle through `x` always returns to `0..n`, so the walk ends.
    loop {
        let (mut left, mut right) = (y >> half, y & mask);
        for r in 0..SHUFFLE_ROUNDS {
            (left, right) = (right, left ^ round(r, right));
        }
        y = (left << half) | right;
        if y < n {
            return y;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn ids() -> (UserId, EventId) {
        (UserId::parse("u1").unwrap(), EventId::from_u64(42))
    }

    #[test]
    fn the_shuffle_is_a_permutation_for_every_size() {
        let key = [7; 32];
        let event = EventId::from_u64(1);
        for n in [1, 2, 3, 5, 16, 17, 100, 1_000, 4_097] {
            let seen: BTreeSet<u64> = (0..n).map(|x| shuffle(&key, &event, x, n)).collect();
            assert_eq!(seen.len() as u64, n, "n = {n}");
            assert!(seen.iter().all(|y| *y < n));
        }
    }

    #[test]
    fn the_shuffle_mixes_and_depends_on_the_key_and_the_event() {
        let n = 1_000;
        let order = |key: [u8; 32], event: u64| -> Vec<u64> {
            (0..n).map(|x| shuffle(&key, &EventId::from_u64(event), x, n)).collect()
        };
        let a = order([1; 32], 1);
        let fixed_points = a.iter().enumerate().filter(|(i, y)| *i as u64 == **y).count();
        assert!(fixed_points < 20, "{fixed_points} early arrivals kept their place");
        // The first tenth of arrivals spread over the whole order.
        assert!(a[..100].iter().any(|y| *y >= 900) && a[..100].iter().any(|y| *y < 100));
        assert_ne!(a, order([2; 32], 1));
        assert_ne!(a, order([1; 32], 2));
    }

    #[test]
    fn positions_are_known_once_the_early_group_is_closed() {
        let keys = QueueKeys::new("secret");
        let (_, event) = ids();
        assert_eq!(keys.position(&event, 5, None), None);
        assert_eq!(keys.position(&event, 150, Some(100)), Some(150), "late arrivals keep their order");
        let early: BTreeSet<u64> = (0..100).filter_map(|s| keys.position(&event, s, Some(100))).collect();
        assert_eq!(early, (0..100).collect());
    }

    #[test]
    fn queue_tokens_are_bound_to_user_and_event() {
        let keys = QueueKeys::new("secret");
        let (user, event) = ids();
        let claims = QueueClaims { sub: "u1".into(), evt: event.to_string(), seq: 9, exp: u64::MAX / 2 };
        let token = keys.queue_token(&claims);
        assert_eq!(keys.verify_queue(&token, &user, &event).unwrap(), claims);
        assert!(keys.verify_queue(&token, &UserId::parse("u2").unwrap(), &event).is_err());
        assert!(keys.verify_queue(&token, &user, &EventId::from_u64(43)).is_err());
        assert!(QueueKeys::new("other").verify_queue(&token, &user, &event).is_err());
        // A queue token is not an access token, nor the reverse.
        assert!(keys.verify_access(&token, &user, &event).is_err());
        let access = keys.access_token(&user, &event, 3, crate::dto::now_ms());
        assert!(keys.verify_queue(&access, &user, &event).is_err());
    }

    #[test]
    fn access_tokens_carry_the_pass_of_their_position() {
        let keys = QueueKeys::new("secret");
        let (user, event) = ids();
        let admitted_at = crate::dto::now_ms();
        let token = keys.access_token(&user, &event, 3, admitted_at);
        let pass = keys.verify_access(&token, &user, &event).unwrap();
        assert_eq!(pass, AccessPass { pass_id: pass_id(&user, &event, 3), expires_at_ms: admitted_at + PASS_TTL_MS });
        assert!(keys.verify_access(&token, &UserId::parse("u2").unwrap(), &event).is_err());
        let expired = keys.access_token(&user, &event, 3, admitted_at - PASS_TTL_MS - 60_000);
        assert!(keys.verify_access(&expired, &user, &event).is_err());
        assert_ne!(pass_id(&user, &event, 3), pass_id(&user, &event, 4));
    }
}
