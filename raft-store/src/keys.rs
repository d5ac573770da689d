//! Key spaces of a group's tree. Each is a fixed one-byte prefix; integers are big-endian so keys
//! sort in numeric order. A retired prefix stays listed here, reserved, and is never reused.

/// Log entries: `LOG ++ index`.
pub const LOG: u8 = 0x01;
/// The last vote: a single key.
pub const VOTE: u8 = 0x02;
/// The last known committed log id: a single key.
pub const COMMITTED: u8 = 0x03;
/// The last purged log id: a single key.
pub const PURGED: u8 = 0x04;
/// The current snapshot (metadata and data): a single key.
pub const SNAPSHOT: u8 = 0x05;
/// The generation of the group's cold tree in use: a single key (absent: generation 0).
pub const COLD_GENERATION: u8 = 0x06;
/// Present while the node hosts the group: written (and flushed) before the group first opens, so
/// a node finds its groups in the state machines' store whatever the log's store holds.
pub const HOSTED: u8 = 0x07;

/// The node tree's key for what the node was created as (id, shard count).
pub const NODE_IDENTITY: u8 = 0x10;

/// Name of the tree holding one group's log, vote and snapshot.
pub fn group_tree(group: crate::ids::GroupId) -> String {
    format!("group/{:08}", group.0)
}

/// The group whose tree has this name, if it is a group's tree.
pub fn parse_group_tree(name: &str) -> Option<crate::ids::GroupId> {
    let digits = name.strip_prefix("group/")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(crate::ids::GroupId)
}

/// Name of generation `generation` of the tree holding one group's cold records (see `cold.rs`).
/// A snapshot installed from a peer or a backup fills a new generation and then switches to it.
pub fn cold_tree(group: crate::ids::GroupId, generation: u64) -> String {
    format!("{}/cold/{generation:08}", group_tree(group))
}

/// The generation of a cold tree of `group`, if `name` is one.
pub fn parse_cold_tree(group: crate::ids::GroupId, name: &str) -> Option<u64> {
    let digits = name.strip_prefix(&group_tree(group))?.strip_prefix("/cold/")?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// Key spaces of a cold tree. Records apply writes, each under its own prefix, below
/// [`COLD_INDEX`]; the store's own index of records by expiry lives at and above it.
pub mod cold {
    /// An outcome remembered for a request id: `DEDUP ++ request id`.
    pub const DEDUP: u8 = 0x20;
    /// An archived event: `ARCHIVED_EVENT ++ event id`.
    pub const ARCHIVED_EVENT: u8 = 0x30;
    /// An archived order: `ARCHIVED_ORDER ++ event id ++ seq`.
    pub const ARCHIVED_ORDER: u8 = 0x31;
    /// A user's archived order, newest first: `ARCHIVED_USER_ORDER ++ user ++ 0 ++ !created_ms ++
    /// !event id ++ !seq` (`!` inverts the big-endian bytes so keys sort newest first).
    pub const ARCHIVED_USER_ORDER: u8 = 0x32;
    /// A user's place in an event's waiting room, newest first: `QUEUE_PLACE ++ event id ++ user
    /// ++ 0 ++ !index` (the index of the entry that wrote it, inverted). Expires when the event
    /// starts.
    pub const QUEUE_PLACE: u8 = 0x40;
    /// A ticket's state after its order confirmed it (holder, code version, admission), kept as
    /// versions: `TICKET_MARK ++ event id ++ order seq ++ ticket n ++ !index`.
    pub const TICKET_MARK: u8 = 0x50;
    /// An order in which a user was given a ticket by transfer, newest first, laid out as
    /// `ARCHIVED_USER_ORDER`: `TICKET_RECEIVED ++ user ++ 0 ++ !created_ms ++ !event id ++ !seq`.
    pub const TICKET_RECEIVED: u8 = 0x51;
    /// How many tickets of an event a user holds by transfer (for the per-user limit), kept as
    /// versions: `TICKETS_RECEIVED_COUNT ++ event id ++ user ++ 0 ++ !index`.
    pub const TICKETS_RECEIVED_COUNT: u8 = 0x52;
    /// An ended hold (released, expired or checked out) as it ended: `ENDED_HOLD ++ event id ++
    /// seq`. Written by the apply that ends it, which drops it from memory; expires
    /// `HOLD_RETENTION_MS` after it ended, and reads find it until then.
    pub const ENDED_HOLD: u8 = 0x60;
    /// The store's index of records that expire: `EXPIRY ++ expires_ms ++ record key`.
    pub const COLD_INDEX: u8 = 0xf0;
    pub const EXPIRY: u8 = 0xf0;
}

/// Name of the tree holding node-level records.
pub const NODE_TREE: &str = "node";

pub fn log_key(index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = LOG;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

pub fn log_index(key: &[u8]) -> Option<u64> {
    match key {
        [LOG, rest @ ..] if rest.len() == 8 => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// The key just past every log key.
pub const LOG_END: [u8; 1] = [LOG + 1];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::GroupId;

    #[test]
    fn group_tree_names_round_trip() {
        for g in [GroupId::META, GroupId::shard(0), GroupId::shard(1023)] {
            assert_eq!(parse_group_tree(&group_tree(g)), Some(g));
        }
        for bad in ["node", "group/1", "group/0000000x", "groups/00000001", "__sled__default"] {
            assert_eq!(parse_group_tree(bad), None, "{bad}");
        }
        let g = GroupId::shard(3);
        assert_eq!(parse_cold_tree(g, &cold_tree(g, 7)), Some(7));
        assert_eq!(parse_group_tree(&cold_tree(g, 7)), None, "a cold tree is not a group's tree");
        assert_eq!(parse_cold_tree(GroupId::shard(4), &cold_tree(g, 7)), None);
    }
}
