//! What a node is started with.

use std::sync::Arc;

use openraft::SnapshotPolicy;
use raft_store::{GroupId, Kv, NodeId};

use super::error::NodeError;
use crate::clock::Clock;
use crate::wire::NodeClient;

/// How long after an event starts its shard's leader archives it (see `Command::Archive`) unless
/// configured: a week covers late refunds, check-in and disputes from memory.
pub const ARCHIVE_AFTER_MS_DEFAULT: i64 = 7 * 24 * 3_600_000;

/// Raft timing, compaction and the archive's delay. Defaults suit nodes on one network.
#[derive(Clone, Debug)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot (and compact the log) after this many applied entries; each group uses
    /// its own multiple of it, 1 to 2 times (see [`group_config`]).
    pub snapshot_every_logs: u64,
    /// Entries kept in the log behind the snapshot, so lagging followers catch up without one.
    pub logs_kept_after_snapshot: u64,
    /// An event moves from memory to its shard's archive this long after it starts.
    pub archive_after_ms: i64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 150,
            election_min_ms: 600,
            election_max_ms: 1_200,
            snapshot_every_logs: 20_000,
            logs_kept_after_snapshot: 2_000,
            archive_after_ms: ARCHIVE_AFTER_MS_DEFAULT,
        }
    }
}

impl RaftTuning {
    /// The openraft configuration every group of the node shares.
    pub(super) fn raft_config(&self) -> Result<Arc<openraft::Config>, NodeError> {
        let config = openraft::Config {
            cluster_name: "boxoffice".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_logs),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            ..Default::default()
        };
        Ok(Arc::new(config.validate()?))
    }
}

/// How many different snapshot intervals a node's groups are spread over (see [`group_config`]).
const SNAPSHOT_SPREAD: u32 = 8;

/// The openraft configuration of one group: the node's, with the group's own snapshot interval.
/// Groups under the same load would otherwise reach their snapshot points in the same second
/// and build together; group `g` snapshots every `N·(1 + (g mod 8)/8)` entries instead (`N` the
/// node's `snapshot_every_logs`), so the first points spread over `N..2N` and later ones drift
/// apart. A node still builds one snapshot at a time (`StateMachineStore::sharing_builds`).
pub(super) fn group_config(node: &Arc<openraft::Config>, group: GroupId) -> Arc<openraft::Config> {
    let SnapshotPolicy::LogsSinceLast(every) = node.snapshot_policy else { return node.clone() };
    let spread = u64::from(group.0 % SNAPSHOT_SPREAD);
    let every = every.saturating_add(every.saturating_mul(spread) / u64::from(SNAPSHOT_SPREAD));
    Arc::new(openraft::Config { snapshot_policy: SnapshotPolicy::LogsSinceLast(every), ..(**node).clone() })
}

pub struct NodeSetup {
    pub node_id: NodeId,
    /// The address other nodes reach this one at.
    pub advertise_addr: String,
    /// The state machines' store (snapshots, cold records, the node's identity).
    pub kv: Arc<dyn Kv>,
    /// The Raft logs' store: production's segment files, or `kv` itself (tests, the simulation).
    /// Logs a node kept in `kv` before are moved here at start (`raft_store::move_logs`).
    pub log_kv: Arc<dyn Kv>,
    pub client: Arc<dyn NodeClient>,
    pub tuning: RaftTuning,
    pub clock: Clock,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_snapshot_at_intervals_spread_over_one_to_two_times_the_node_s() {
        let node = RaftTuning { snapshot_every_logs: 800, ..RaftTuning::default() }.raft_config().expect("config");
        let every = |g: u32| match group_config(&node, GroupId(g)).snapshot_policy {
            SnapshotPolicy::LogsSinceLast(n) => n,
            SnapshotPolicy::Never => 0,
        };
        let first_eight: Vec<u64> = (0..8).map(every).collect();
        assert_eq!(first_eight, vec![800, 900, 1_000, 1_100, 1_200, 1_300, 1_400, 1_500]);
        assert_eq!(every(8), 800, "the ninth group shares the first one's interval");
        let config = group_config(&node, GroupId(3));
        assert_eq!(config.heartbeat_interval, node.heartbeat_interval, "the rest is the node's");
        assert_eq!(config.max_in_snapshot_log_to_keep, node.max_in_snapshot_log_to_keep);
    }
}
