//! Connection caps: open connections in all and per client address.
//!
//! A connection beyond a cap is closed at once, before a byte of it is read, rather than answered
//! 503: an answer would mean reading the request (or the client sees a reset anyway, the 413
//! problem of `body.rs`), and a flood of connections would then cost the server the very work the
//! cap is there to spare. A refused client sees its connection closed and retries later; the
//! refusal is counted in `api_connections_refused_total`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::ServeConfig;
use crate::limits::client_key;

/// Why a connection was refused; the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CapRefusal {
    /// The instance has `connections_max` open.
    Total,
    /// The client's address has `connections_per_address_max` open.
    Address,
}

impl CapRefusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            CapRefusal::Total => "total",
            CapRefusal::Address => "address",
        }
    }
}

pub(crate) struct ConnectionCaps {
    max: usize,
    /// 0 = off.
    per_address_max: usize,
    open: Mutex<Open>,
}

/// At most `max` entries in `per_address`: each holds at least one open connection.
#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl ConnectionCaps {
    pub(crate) fn new(config: &ServeConfig) -> Arc<ConnectionCaps> {
        assert!(config.connections_max > 0, "a validated configuration has a positive connection cap");
        Arc::new(ConnectionCaps {
            max: config.connections_max,
            per_address_max: config.connections_per_address_max,
            open: Mutex::new(Open::default()),
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        // Plain counters: a panic elsewhere cannot leave them half-updated.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection from `ip`, released when the slot is dropped.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, CapRefusal> {
        let key = client_key(ip);
        let mut open = self.open();
        if open.total >= self.max {
            return Err(CapRefusal::Total);
        }
        let from_address = open.per_address.get(&key).copied().unwrap_or(0);
        if self.per_address_max > 0 && from_address >= self.per_address_max {
            return Err(CapRefusal::Address);
        }
        open.total += 1;
        open.per_address.insert(key, from_address + 1);
        assert!(open.total <= self.max && open.per_address.len() <= open.total);
        metrics::gauge!("api_connections_open").set(open.total as f64);
        Ok(ConnectionSlot { caps: self.clone(), key })
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let open = self.open();
        (open.total, open.per_address.len())
    }
}

/// One open connection's place under the caps.
pub(crate) struct ConnectionSlot {
    caps: Arc<ConnectionCaps>,
    key: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.caps.open();
        open.total -= 1;
        if let Some(n) = open.per_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.per_address.remove(&self.key);
            }
        }
        metrics::gauge!("api_connections_open").set(open.total as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(max: usize, per_address_max: usize) -> Arc<ConnectionCaps> {
        ConnectionCaps::new(&ServeConfig {
            connections_max: max,
            connections_per_address_max: per_address_max,
            ..ServeConfig::default()
        })
    }

    #[test]
    fn an_address_gets_its_share_and_the_total_is_capped() {
        let caps = caps(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err(), Some(CapRefusal::Address));
        let _third = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).err(), Some(CapRefusal::Total));
        drop(first);
        assert!(caps.admit(a).is_ok(), "a closed connection frees its slot");
        assert_eq!(caps.counts(), (2, 2));
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_zero_turns_the_address_cap_off() {
        let one_each = caps(10, 1);
        let _one = one_each.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(one_each.admit("2001:db8:1:2::ffff".parse().unwrap()).err(), Some(CapRefusal::Address));
        assert!(one_each.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let open = caps(10, 0);
        let slots: Vec<_> = (0..10).map(|_| open.admit("10.0.0.1".parse().unwrap()).unwrap()).collect();
        assert_eq!(slots.len(), 10);
    }
}
