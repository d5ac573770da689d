//! Identifiers and the event → shard map.
//!
//! Event and venue ids are opaque to clients but have a fixed shape here: a two-letter kind and 16
//! hex digits. Hold, order and ticket ids embed the event id, so any node can route them to the
//! event's shard without a lookup.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's id: a positive number, unique in the cluster, never reused.
pub type NodeId = u64;

/// Length of the random or derived part of event and venue ids, in hex digits.
const ID_HEX_LEN: usize = 16;
/// Longest user id accepted from a token's `sub` claim, in bytes.
pub const USER_ID_LEN_MAX: usize = 128;

fn is_hex_id(s: &str, prefix: &str) -> bool {
    s.len() == prefix.len() + ID_HEX_LEN
        && s.starts_with(prefix)
        && s[prefix.len()..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex_id(prefix: &str, value: u64) -> String {
    format!("{prefix}{value:016x}")
}

macro_rules! hex_id_type {
    ($name:ident, $prefix:literal) => {
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Builds the id from 64 bits, random or derived from an idempotency key.
            pub fn from_u64(value: u64) -> Self {
                Self(hex_id($prefix, value))
            }

            /// Parses an id from a path or body; `None` if it does not have the id's shape.
            pub fn parse(s: &str) -> Option<Self> {
                is_hex_id(s, $prefix).then(|| Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

hex_id_type!(EventId, "ev");
hex_id_type!(VenueId, "ve");
// An outgoing webhook endpoint (meta group).
hex_id_type!(WebhookId, "wh");

/// The user a request acts for: a token's `sub` claim, never a request body.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserId(String);

impl UserId {
    /// `None` for an empty, oversized or control-character id.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty() && s.len() <= USER_ID_LEN_MAX && !s.chars().any(char::is_control);
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! event_scoped_id {
    ($name:ident, $prefix:literal) => {
        /// An id minted by the state machine: the event it belongs to and a per-shard sequence.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name {
            pub event_id: EventId,
            pub seq: u64,
        }

        impl $name {
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix(concat!($prefix, "-"))?;
                let (event, seq) = rest.split_once('-')?;
                let event_id = EventId::parse(event)?;
                if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(Self { event_id, seq: seq.parse().ok()? })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "-{}-{}"), self.event_id, self.seq)
            }
        }
    };
}

event_scoped_id!(HoldId, "ho");
event_scoped_id!(OrderId, "or");

/// A ticket: the `n`-th admission of an order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TicketId {
    pub order: OrderId,
    pub n: u32,
}

impl TicketId {
    /// `tk-EVENT-SEQ-N`, as [`fmt::Display`] writes it.
    pub fn parse(s: &str) -> Option<TicketId> {
        let rest = s.strip_prefix("tk-")?;
        let (order, n) = rest.rsplit_once('-')?;
        if n.is_empty() || n.len() > 10 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(TicketId { order: OrderId::parse(&format!("or-{order}"))?, n: n.parse().ok()? })
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tk-{}-{}-{}", self.order.event_id, self.order.seq, self.n)
    }
}

/// Identifies one client request across retries: derived from the `Idempotency-Key` and the user,
/// or chosen at random by the api for a request without a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub [u8; 16]);

/// A Raft group: the meta group, or one shard of the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u32);

impl GroupId {
    pub const META: GroupId = GroupId(0);

    pub fn shard(shard: u32) -> GroupId {
        GroupId(shard + 1)
    }

    /// The group a name such as `meta` or `shard-3` (its `Display`) names.
    pub fn parse_name(name: &str) -> Option<GroupId> {
        if name == "meta" {
            return Some(GroupId::META);
        }
        let digits = name.strip_prefix("shard-")?;
        if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u32>().ok().filter(|s| *s < u32::MAX).map(GroupId::shard)
    }

    /// The shard number, or `None` for the meta group.
    pub fn as_shard(self) -> Option<u32> {
        self.0.checked_sub(1)
    }

    pub fn is_meta(self) -> bool {
        self == Self::META
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_shard() {
            None => f.write_str("meta"),
            Some(s) => write!(f, "shard-{s}"),
        }
    }
}

/// 64-bit FNV-1a: tiny, fixed forever, and good enough to spread ids over shards. It is written
/// here rather than taken from a crate because its output is part of the on-disk format.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The shard that owns an event. Stable: it depends only on the id and the shard count, which is
/// fixed when the cluster is created.
pub fn shard_of(event_id: &EventId, shard_count: u32) -> u32 {
    assert!(shard_count > 0, "a cluster has at least one shard");
    (fnv1a64(event_id.as_str().as_bytes()) % u64::from(shard_count)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_round_trips_and_rejects_other_shapes() {
        let id = EventId::from_u64(0xdead_beef);
        assert_eq!(id.as_str(), "ev00000000deadbeef");
        assert_eq!(EventId::parse(id.as_str()), Some(id));
        for bad in ["", "ev", "ev00000000deadbee", "ev00000000DEADBEEF", "ve00000000deadbeef", "ev00000000deadbeef0"] {
            assert_eq!(EventId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn hold_id_embeds_its_event_and_rejects_garbage() {
        let hold = HoldId { event_id: EventId::from_u64(7), seq: 42 };
        let text = hold.to_string();
        assert_eq!(text, "ho-ev0000000000000007-42");
        assert_eq!(HoldId::parse(&text), Some(hold));
        for bad in [
            "ho-ev0000000000000007-",
            "ho-ev0000000000000007-x",
            "or-ev0000000000000007-1",
            "ho-ev0000000000000007-99999999999999999999999",
        ] {
            assert_eq!(HoldId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ticket_id_round_trips_and_rejects_garbage() {
        let ticket = TicketId { order: OrderId { event_id: EventId::from_u64(7), seq: 42 }, n: 3 };
        let text = ticket.to_string();
        assert_eq!(text, "tk-ev0000000000000007-42-3");
        assert_eq!(TicketId::parse(&text), Some(ticket));
        for bad in [
            "tk-ev0000000000000007-42",
            "tk-ev0000000000000007-42-",
            "tk-ev0000000000000007--3",
            "or-ev0000000000000007-42-3",
            "tk-ev0000000000000007-42-99999999999",
        ] {
            assert_eq!(TicketId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn group_names_parse_back() {
        for g in [GroupId::META, GroupId::shard(0), GroupId::shard(1023)] {
            assert_eq!(GroupId::parse_name(&g.to_string()), Some(g));
        }
        for bad in ["", "shard-", "shard-x", "shard--1", "Meta", "shard-99999999999", "group/1"] {
            assert_eq!(GroupId::parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn shard_map_is_stable() {
        // The map is part of the on-disk format: these values must never change.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let spread: std::collections::BTreeSet<u32> = (0..64).map(|i| shard_of(&EventId::from_u64(i), 8)).collect();
        assert_eq!(spread.len(), 8, "64 ids should reach all 8 shards");
    }

    #[test]
    fn user_ids_reject_control_characters_and_oversize() {
        assert!(UserId::parse("u1").is_some());
        assert!(UserId::parse("").is_none());
        assert!(UserId::parse("a\nb").is_none());
        assert!(UserId::parse(&"x".repeat(USER_ID_LEN_MAX + 1)).is_none());
    }
}
