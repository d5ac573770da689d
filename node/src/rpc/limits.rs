//! The node port's limits: how long a connection may take to prove itself and may sit idle, and
//! how many connections it may have, in all, per address, and still proving themselves.
//!
//! A connection is *pending* from its accept until it has shown which protocol it speaks and,
//! for ours, finished the TLS handshake and the hello; then it is *established*. Pending
//! connections cost the node a task and a timer and prove nothing yet: they are capped
//! separately and tighter, so that a flood of idle or slow connections (from one address, or
//! many) fills the pending places, not the node's, and closes at once beyond them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a connection may take to show its protocol, finish TLS and send its hello.
pub const HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// How long an established connection may go without a frame while no call of it is in flight.
/// Nodes' heartbeats keep theirs busy; a client whose connection idled out opens a new one.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);
/// Open connections in all. A cluster's own processes need a few per peer.
pub const CONNECTIONS_MAX_DEFAULT: usize = 4_096;
/// Open connections per remote address.
pub const CONNECTIONS_PER_ADDRESS_MAX_DEFAULT: usize = 256;
/// Connections still proving themselves, in all.
const PENDING_MAX: usize = 256;
/// Connections still proving themselves, per remote address. A process opens two connections
/// per node (control and bulk) and a restart of a few processes on one host a few dozen.
const PENDING_PER_ADDRESS_MAX: usize = 32;
/// Calls in flight on one connection: beyond it the node stops reading that connection until
/// replies are written (an api instance multiplexes all its calls to a leader on one).
pub(super) const CALLS_IN_FLIGHT_MAX: usize = 4_096;
/// Bytes of requests in flight on one connection, counted from their headers before their bodies
/// are read (a single larger frame waits for the whole budget).
pub(super) const BYTES_IN_FLIGHT_MAX: usize = 64 << 20;

/// The node port's settings (`boxoffice node --handshake-timeout …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortLimits {
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub connections_max: usize,
    pub connections_per_address_max: usize,
}

impl Default for PortLimits {
    fn default() -> PortLimits {
        PortLimits {
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            connections_per_address_max: CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortLimitsError {
    #[error("{0} must be positive")]
    Zero(&'static str),
}

impl PortLimits {
    pub fn validate(&self) -> Result<(), PortLimitsError> {
        let zero = [
            ("handshake_timeout", self.handshake_timeout.is_zero()),
            ("idle_timeout", self.idle_timeout.is_zero()),
            ("connections_max", self.connections_max == 0),
            ("connections_per_address_max", self.connections_per_address_max == 0),
        ];
        match zero.into_iter().find(|(_, is_zero)| *is_zero) {
            Some((name, _)) => Err(PortLimitsError::Zero(name)),
            None => Ok(()),
        }
    }
}

/// Why a connection was closed before it was served; the label of
/// `boxoffice_rpc_refused_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    ConnectionsMax,
    PerAddressMax,
    PendingMax,
    PendingPerAddressMax,
    HandshakeTimeout,
    Tls,
    NoRole,
    Preamble,
    PlaintextRpc,
    Secret,
    FrameTooLarge,
    BadFrame,
}

impl Refusal {
    pub(super) fn label(self) -> &'static str {
        match self {
            Refusal::ConnectionsMax => "connections_max",
            Refusal::PerAddressMax => "connections_per_address_max",
            Refusal::PendingMax => "pending_max",
            Refusal::PendingPerAddressMax => "pending_per_address_max",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::Tls => "tls",
            Refusal::NoRole => "no_role",
            Refusal::Preamble => "preamble",
            Refusal::PlaintextRpc => "plaintext_rpc",
            Refusal::Secret => "secret",
            Refusal::FrameTooLarge => "frame_too_large",
            Refusal::BadFrame => "bad_frame",
        }
    }

    pub(super) fn count(self) {
        metrics::counter!("boxoffice_rpc_refused_total", "reason" => self.label()).increment(1);
    }
}

/// Connections by address: open (pending included) and pending.
#[derive(Default)]
struct Counts {
    open: usize,
    pending: usize,
    /// (open, pending) of each address with at least one open connection.
    by_address: HashMap<IpAddr, (usize, usize)>,
}

pub(super) struct ConnectionCaps {
    limits: PortLimits,
    counts: Mutex<Counts>,
}

impl ConnectionCaps {
    pub(super) fn new(limits: PortLimits) -> Arc<ConnectionCaps> {
        Arc::new(ConnectionCaps { limits, counts: Mutex::new(Counts::default()) })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Plain counters: a panic elsewhere cannot leave them half-updated.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pending place for a new connection from `ip`, or why there is none.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut counts = self.counts();
        let (open, pending) = counts.by_address.get(&ip).copied().unwrap_or((0, 0));
        let refusal = if counts.open >= self.limits.connections_max {
            Some(Refusal::ConnectionsMax)
        } else if open >= self.limits.connections_per_address_max {
            Some(Refusal::PerAddressMax)
        } else if counts.pending >= PENDING_MAX {
            Some(Refusal::PendingMax)
        } else if pending >= PENDING_PER_ADDRESS_MAX {
            Some(Refusal::PendingPerAddressMax)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        counts.open += 1;
        counts.pending += 1;
        counts.by_address.insert(ip, (open + 1, pending + 1));
        assert!(counts.open <= self.limits.connections_max && counts.pending <= PENDING_MAX);
        metrics::gauge!("boxoffice_rpc_connections_open").set(counts.open as f64);
        Ok(Slot { caps: self.clone(), ip, pending: true })
    }

    #[cfg(test)]
    pub(super) fn totals(&self) -> (usize, usize) {
        let counts = self.counts();
        (counts.open, counts.pending)
    }
}

/// A connection's place under the caps, released when dropped.
pub(super) struct Slot {
    caps: Arc<ConnectionCaps>,
    ip: IpAddr,
    pending: bool,
}

impl Slot {
    /// The connection has proved itself: it leaves the pending places.
    pub(super) fn establish(&mut self) {
        if !std::mem::replace(&mut self.pending, false) {
            return;
        }
        let mut counts = self.caps.counts();
        counts.pending -= 1;
        if let Some((_, pending)) = counts.by_address.get_mut(&self.ip) {
            *pending -= 1;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.caps.counts();
        counts.open -= 1;
        counts.pending -= usize::from(self.pending);
        if let Some((open, pending)) = counts.by_address.get_mut(&self.ip) {
            *open -= 1;
            *pending -= usize::from(self.pending);
            if *open == 0 {
                counts.by_address.remove(&self.ip);
            }
        }
        metrics::gauge!("boxoffice_rpc_connections_open").set(counts.open as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(max: usize, per_address_max: usize) -> Arc<ConnectionCaps> {
        ConnectionCaps::new(PortLimits {
            connections_max: max,
            connections_per_address_max: per_address_max,
            ..PortLimits::default()
        })
    }

    #[test]
    fn pending_connections_are_capped_per_address_and_established_ones_free_their_pending_place() {
        let caps = caps(1_000, 100);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut slots: Vec<Slot> = (0..PENDING_PER_ADDRESS_MAX).map(|_| caps.admit(a).unwrap()).collect();
        assert_eq!(caps.admit(a).err(), Some(Refusal::PendingPerAddressMax));
        assert!(caps.admit("10.0.0.2".parse().unwrap()).is_ok(), "another address still gets in");
        for slot in &mut slots {
            slot.establish();
        }
        assert_eq!(caps.totals(), (PENDING_PER_ADDRESS_MAX, 0));
        assert!(caps.admit(a).is_ok(), "established connections leave the pending places");
        drop(slots);
        assert_eq!(caps.totals(), (0, 0));
    }

    #[test]
    fn the_total_and_each_address_are_capped() {
        let caps = caps(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err(), Some(Refusal::PerAddressMax));
        let _third = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).err(), Some(Refusal::ConnectionsMax));
        drop(first);
        assert!(caps.admit(a).is_ok(), "a closed connection frees its place");
    }

    #[test]
    fn limits_must_be_positive() {
        assert_eq!(PortLimits::default().validate(), Ok(()));
        let zero = PortLimits { idle_timeout: Duration::ZERO, ..PortLimits::default() };
        assert_eq!(zero.validate(), Err(PortLimitsError::Zero("idle_timeout")));
    }
}
