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
    }
}
