//! The openraft type configuration shared by every group on every node.

use crate::command::{Outcome, Request};

/// What applying one log entry yields: one outcome per proposal (none for blank and membership
/// entries), and what the entry's expiry pass ended before its proposals ran — holds and
/// payments that came due end in whichever entry first sees them, not only in `Expire`'s.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcomes {
    pub outcomes: Vec<Outcome>,
    /// Holds this entry expired.
    pub expired_holds: u32,
    /// Orders whose payment window this entry closed.
    pub expired_orders: u32,
}

use crate::ids::NodeId;

/// What the Raft layer knows of a node: the address its peers reach it at.
pub type NodeAddr = openraft::BasicNode;

/// Real tokio in production; the simulation's runtime under `--cfg madsim`.
#[cfg(not(madsim))]
pub type Runtime = openraft::TokioRuntime;
#[cfg(madsim)]
pub type Runtime = crate::sim_runtime::SimRuntime;

openraft::declare_raft_types!(
    /// One log entry carries one [`Request`] (a batch of proposals); applying it yields one
    /// [`Outcome`] per proposal. A snapshot is a `GroupSnapshot`: the encoded machine and the
    /// cold records at its index, streamed in chunks.
    pub TypeConfig:
        D = Request,
        R = Outcomes,
        NodeId = NodeId,
        Node = NodeAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot::GroupSnapshot,
        AsyncRuntime = Runtime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeAddr>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeAddr>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
