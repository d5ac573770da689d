//! Caps on server-sent-event streams (the seat stream, the waiting room's): per client address,
//! per user, and per instance.
//!
//! A stream holds a connection and a feed subscription for as long as its client stays, so an
//! anonymous client opening hundreds would take them from everyone else. Beyond a client's own
//! cap the answer is 429 `rate_limited` (that client is asking for too much; it gets a slot back
//! when it closes a stream, hence `Retry-After`); beyond the instance's cap it is 503
//! `unavailable` (the instance is full through no fault of this client; another instance, or
//! this one later, can serve it). Both codes are API.md's.
//!
//! A stream's permit is held by its response body, so it is released when the client goes (or
//! the edge drops a connection that does not read).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use raft_store::UserId;

use crate::config::StreamsConfig;
use crate::error::ApiError;
use crate::limits::client_key;

/// `Retry-After` of a stream refused by a client's own cap: a slot frees only when one of the
/// client's streams closes, so a reconnecting client should not come back at once.
const STREAM_REFUSED_RETRY_AFTER_S: u64 = 10;

pub(crate) struct StreamSlots {
    config: StreamsConfig,
    open: Mutex<Open>,
}

/// Each map holds only keys with at least one open stream: at most `config.max` entries.
#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, u32>,
    by_user: HashMap<UserId, u32>,
}

impl StreamSlots {
    pub(crate) fn new(config: &StreamsConfig) -> Arc<StreamSlots> {
        Arc::new(StreamSlots { config: config.clone(), open: Mutex::new(Open::default()) })
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A permit for one more stream of this client (its address, when known; its user, when it
    /// sent a valid token), or the refusal.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        address: Option<IpAddr>,
        user: Option<&UserId>,
    ) -> Result<StreamPermit, ApiError> {
        let address = address.map(client_key);
        let mut open = self.open();
        if let Some(ip) = &address {
            if over(&open.by_address, ip, self.config.per_address_max) {
                return Err(refused("address", "too many streams from this address"));
            }
        }
        if let Some(user) = user {
            if over(&open.by_user, user, self.config.per_user_max) {
                return Err(refused("user", "too many streams for this user"));
            }
        }
        if open.total >= self.config.max {
            metrics::counter!("api_streams_refused_total", "limit" => "total").increment(1);
            return Err(ApiError::Overloaded("this instance serves as many streams as it can; retry shortly".into()));
        }
        open.total += 1;
        if let Some(ip) = address {
            *open.by_address.entry(ip).or_default() += 1;
        }
        if let Some(user) = user {
            *open.by_user.entry(user.clone()).or_default() += 1;
        }
        assert!(open.total <= self.config.max);
        metrics::gauge!("api_streams_open").set(open.total as f64);
        Ok(StreamPermit { slots: self.clone(), address, user: user.cloned() })
    }

    #[cfg(test)]
    pub(crate) fn open_streams(&self) -> usize {
        self.open().total
    }
}

/// Whether `key` already has `max` streams (`max` 0: the cap is off).
fn over<K: Eq + Hash>(counts: &HashMap<K, u32>, key: &K, max: u32) -> bool {
    max > 0 && counts.get(key).copied().unwrap_or(0) >= max
}

fn refused(limit: &'static str, detail: &str) -> ApiError {
    metrics::counter!("api_streams_refused_total", "limit" => limit).increment(1);
    ApiError::RateLimited { detail: detail.to_owned(), retry_after_s: STREAM_REFUSED_RETRY_AFTER_S }
}

fn release<K: Eq + Hash>(counts: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// One open stream's place under the caps; dropping it frees the place.
pub(crate) struct StreamPermit {
    slots: Arc<StreamSlots>,
    address: Option<IpAddr>,
    user: Option<UserId>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.slots.open();
        open.total -= 1;
        if let Some(ip) = &self.address {
            release(&mut open.by_address, ip);
        }
        if let Some(user) = &self.user {
            release(&mut open.by_user, user);
        }
        metrics::gauge!("api_streams_open").set(open.total as f64);
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn slots(max: usize, per_address_max: u32, per_user_max: u32) -> Arc<StreamSlots> {
        StreamSlots::new(&StreamsConfig { max, per_address_max, per_user_max })
    }

    fn status(result: Result<StreamPermit, ApiError>) -> StatusCode {
        result.err().map_or(StatusCode::OK, |e| e.problem().status)
    }

    #[test]
    fn a_client_over_its_cap_gets_429_and_a_full_instance_503() {
        let slots = slots(4, 2, 1);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let alice = UserId::parse("alice").unwrap();
        let first = slots.acquire(Some(a), None).unwrap();
        let _second = slots.acquire(Some(a), Some(&alice)).unwrap();
        assert_eq!(status(slots.acquire(Some(a), None)), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status(slots.acquire(Some(b), Some(&alice))), StatusCode::TOO_MANY_REQUESTS);
        let _third = slots.acquire(Some(b), None).unwrap();
        let _fourth = slots.acquire(None, None).unwrap();
        assert_eq!(status(slots.acquire(None, None)), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        assert_eq!(slots.open_streams(), 3);
        assert!(slots.acquire(Some(a), None).is_ok(), "a closed stream frees its places");
    }

    #[test]
    fn zero_turns_the_per_client_caps_off() {
        let slots = slots(100, 0, 0);
        let alice = UserId::parse("alice").unwrap();
        let permits: Vec<_> =
            (0..100).map(|_| slots.acquire(Some("10.0.0.1".parse().unwrap()), Some(&alice)).unwrap()).collect();
        assert_eq!(permits.len(), 100);
    }
}
