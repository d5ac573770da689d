//! What a node is started with.

use std::sync::Arc;

use openraft::SnapshotPolicy;
use raft_store::{Kv, NodeId};

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
    /// Build a snapshot (and compact the log) after this many applied entries.
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
