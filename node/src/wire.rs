//! What nodes, api instances and the operator's CLI say to a node: one request enum, one reply
//! enum, encoded by `raft_store::encode` (bincode with a version byte) over any [`NodeClient`].
//! Raft messages between replicas ([`RaftRpc`]) are part of this vocabulary. It uses nothing else
//! of this crate: the transport (`rpc`), openraft's network (`network`) and the host build on it.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::error::{Fatal, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use raft_store::{
    Answer, ChangesPage, GroupId, Layout, NodeId, Outcome, Proposal, Query, SnapshotChunk, TypeConfig, Vote,
};
use seams::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::version::Version;

#[derive(Debug, Serialize, Deserialize)]
// A request lives for one call, decoded and handled once: its size does not add up anywhere,
// and boxing the common variant (a proposal) would add an allocation to every call.
#[allow(clippy::large_enum_variant)]
pub enum NodeRequest {
    /// Raft traffic between replicas of a group.
    Raft(RaftRpc),
    /// A client command for a group this node should lead.
    Propose {
        group: GroupId,
        proposal: Proposal,
        /// The leader may answer a refusal from its confirmed state without a log entry: the
        /// client sent no `Idempotency-Key` and this is the request's first attempt (a retry must
        /// find the first attempt's outcome, which only the log knows).
        quick_refusal: bool,
    },
    Read {
        group: GroupId,
        query: Query,
        linearizable: bool,
    },
    Changes {
        group: GroupId,
        after_index: u64,
        limit: usize,
        wait_ms: u64,
    },
    /// The layout as this node's meta replica has it, and the leaders of the groups it hosts.
    Routing,
    /// Every group this node hosts, with its Raft state.
    Status,
    /// Makes the node part of a cluster with this many shards (once; the same again is a no-op).
    Join {
        shard_count: u32,
    },
    /// Operator: create a cluster of these nodes, coordinated by the receiving node.
    InitCluster {
        nodes: Vec<(NodeId, String)>,
        shard_count: u32,
        replication: u32,
    },
    /// Starts a group here (if needed) and makes these its first members.
    InitGroup {
        group: GroupId,
        members: BTreeMap<NodeId, String>,
    },
    /// Starts an empty copy of a group here, ready to be added as a learner. A node starts a group
    /// only when told to, never because Raft traffic for it arrived: a stale leader's message for a
    /// group moved away must not bring back an empty copy.
    OpenGroup {
        group: GroupId,
    },
    /// Stand for election in this group (leadership balancing): a replica that is caught up wins
    /// and the old leader steps down.
    Campaign {
        group: GroupId,
    },
    /// As the group's leader: add the missing members as learners, wait for them to catch up,
    /// then make the voters exactly `voters` and drop members in neither set.
    EnsureMembers {
        group: GroupId,
        voters: BTreeMap<NodeId, String>,
        learners: BTreeMap<NodeId, String>,
    },
    /// Stops the group here and deletes its copy (after it was moved away, or to rebuild a
    /// damaged copy from the other replicas).
    DropGroup {
        group: GroupId,
    },
    /// Backups: as the group's leader, builds a fresh snapshot that holds every write acknowledged
    /// before this call, and opens it for reading (`BackupNext`).
    BackupOpen {
        group: GroupId,
    },
    /// The next chunk of an opened backup; `None` after its end.
    BackupNext {
        group: GroupId,
        transfer: u64,
    },
    /// Restores: one chunk of a restored group's stream (`raft_store::Rebaser`), with which this
    /// node seeds its copy of a group it does not host yet. Chunks travel in order, each answered
    /// before the next; at the end the group starts from it.
    RestoreChunk {
        group: GroupId,
        transfer: u64,
        seq: u64,
        chunk: SnapshotChunk,
    },
    /// Operator, to the group's leader: hand the leadership to `to` (another voter), or to the
    /// most up-to-date other voter. Answered `Leader` with the new leader once it is elected.
    TransferLeader {
        group: GroupId,
        to: Option<NodeId>,
    },
    /// The node's version and disk ([`NodeInfo`]). A kind of its own rather than more fields in
    /// [`NodeStatusReply`], so that status stays readable between versions: a node older than
    /// this kind refuses it, and its caller reports the version as unknown.
    Info,
}

impl NodeRequest {
    pub fn kind(&self) -> RequestKind {
        match self {
            NodeRequest::Raft(RaftRpc::Append { .. }) => RequestKind::RaftAppend,
            NodeRequest::Raft(RaftRpc::Vote { .. }) => RequestKind::RaftVote,
            NodeRequest::Raft(RaftRpc::SnapshotChunk { .. }) => RequestKind::RaftSnapshot,
            NodeRequest::Propose { .. } => RequestKind::Propose,
            NodeRequest::Read { .. } => RequestKind::Read,
            NodeRequest::Changes { .. } => RequestKind::Changes,
            NodeRequest::Routing => RequestKind::Routing,
            NodeRequest::Status => RequestKind::Status,
            NodeRequest::Join { .. } => RequestKind::Join,
            NodeRequest::InitCluster { .. } => RequestKind::InitCluster,
            NodeRequest::InitGroup { .. } => RequestKind::InitGroup,
            NodeRequest::OpenGroup { .. } => RequestKind::OpenGroup,
            NodeRequest::Campaign { .. } => RequestKind::Campaign,
            NodeRequest::EnsureMembers { .. } => RequestKind::EnsureMembers,
            NodeRequest::DropGroup { .. } => RequestKind::DropGroup,
            NodeRequest::BackupOpen { .. } => RequestKind::BackupOpen,
            NodeRequest::BackupNext { .. } => RequestKind::BackupNext,
            NodeRequest::RestoreChunk { .. } => RequestKind::RestoreChunk,
            NodeRequest::TransferLeader { .. } => RequestKind::TransferLeader,
            NodeRequest::Info => RequestKind::Info,
        }
    }
}

/// The words with which a node refuses a request of a kind it does not know (a newer node's):
/// its caller tells that refusal from others by them. Never reworded: older nodes send them.
pub const UNKNOWN_KIND_REFUSAL: &str = "is unknown to this node";

/// What a request is, without its contents: the metric label, the tag a frame carries ahead of
/// its body (so that a node knows the size a frame may have, and whether its sender may send it
/// at all, before it reads the body), and the row of the authorization table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    RaftAppend,
    RaftVote,
    RaftSnapshot,
    Propose,
    Read,
    Changes,
    Routing,
    Status,
    Join,
    InitCluster,
    InitGroup,
    OpenGroup,
    Campaign,
    EnsureMembers,
    DropGroup,
    BackupOpen,
    BackupNext,
    RestoreChunk,
    TransferLeader,
    Info,
}

impl RequestKind {
    pub const ALL: [RequestKind; 20] = [
        RequestKind::RaftAppend,
        RequestKind::RaftVote,
        RequestKind::RaftSnapshot,
        RequestKind::Propose,
        RequestKind::Read,
        RequestKind::Changes,
        RequestKind::Routing,
        RequestKind::Status,
        RequestKind::Join,
        RequestKind::InitCluster,
        RequestKind::InitGroup,
        RequestKind::OpenGroup,
        RequestKind::Campaign,
        RequestKind::EnsureMembers,
        RequestKind::DropGroup,
        RequestKind::BackupOpen,
        RequestKind::BackupNext,
        RequestKind::RestoreChunk,
        RequestKind::TransferLeader,
        RequestKind::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::RaftAppend => "raft_append",
            RequestKind::RaftVote => "raft_vote",
            RequestKind::RaftSnapshot => "raft_snapshot",
            RequestKind::Propose => "propose",
            RequestKind::Read => "read",
            RequestKind::Changes => "changes",
            RequestKind::Routing => "routing",
            RequestKind::Status => "status",
            RequestKind::Join => "join",
            RequestKind::InitCluster => "init_cluster",
            RequestKind::InitGroup => "init_group",
            RequestKind::OpenGroup => "open_group",
            RequestKind::Campaign => "campaign",
            RequestKind::EnsureMembers => "ensure_members",
            RequestKind::DropGroup => "drop_group",
            RequestKind::BackupOpen => "backup_open",
            RequestKind::BackupNext => "backup_next",
            RequestKind::RestoreChunk => "restore_chunk",
            RequestKind::TransferLeader => "transfer_leader",
            RequestKind::Info => "info",
        }
    }

    /// The tag of this kind in a frame header: its place in [`RequestKind::ALL`].
    pub fn tag(self) -> u8 {
        // ALL lists every kind once, in declaration order; 19 fits a byte.
        self as u8
    }

    pub fn from_tag(tag: u8) -> Option<RequestKind> {
        RequestKind::ALL.get(usize::from(tag)).copied()
    }
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Raft message for one group of the receiving node: one message type for every group, so many
/// groups share the connections between two nodes.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    Append {
        group: GroupId,
        req: AppendEntriesRequest<TypeConfig>,
    },
    Vote {
        group: GroupId,
        req: VoteRequest<NodeId>,
    },
    /// One chunk of a snapshot stream (see `raft_store::SnapshotChunk`) from the group's leader.
    /// A transfer's chunks travel in order (`seq` from 0), each answered before the next is sent;
    /// the last is answered with the installation's result.
    SnapshotChunk {
        group: GroupId,
        /// Names the transfer; a new one for the same group supersedes it.
        transfer: u64,
        seq: u64,
        vote: Vote,
        chunk: SnapshotChunk,
    },
}

impl RaftRpc {
    pub fn group(&self) -> GroupId {
        match self {
            RaftRpc::Append { group, .. } | RaftRpc::Vote { group, .. } | RaftRpc::SnapshotChunk { group, .. } => {
                *group
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpcReply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// The last chunk of a snapshot: the installation's result.
    Snapshot(Result<SnapshotResponse<NodeId>, Fatal<NodeId>>),
    /// A chunk before the last was taken.
    ChunkTaken,
    /// The receiving node does not host this group (not yet, or no longer).
    UnknownGroup,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum NodeReply {
    Raft(RaftRpcReply),
    Outcome(Outcome),
    Answer(Answer),
    Changes(ChangesPage),
    Routing(RoutingReply),
    Status(NodeStatusReply),
    Layout(Option<Box<Layout>>),
    Done,
    Error(WireError),
    /// A backup was opened: its snapshot's log index and term.
    BackupOpened {
        transfer: u64,
        index: u64,
        term: u64,
    },
    /// The next chunk of a backup; `None` after its end.
    BackupChunk(Option<SnapshotChunk>),
    /// The group's leader after a `TransferLeader`.
    Leader {
        group: GroupId,
        leader: NodeId,
    },
    Info(NodeInfo),
}

/// Why a call to a node failed, as the caller hears it. It travels between processes, so what a
/// typed error on the node carries (a source, its context) arrives as text: `Invalid` for what the
/// node will not do, `Fatal` for what it could not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    #[error("not the leader of {group}; leader is {leader:?} at {leader_addr:?}")]
    NotLeader { group: GroupId, leader: Option<NodeId>, leader_addr: Option<String> },
    #[error("this node does not host {0}")]
    UnknownGroup(GroupId),
    #[error("this node has not joined a cluster")]
    NotJoined,
    #[error("refused: {0}")]
    Invalid(String),
    #[error("{0}")]
    Fatal(String),
    /// The caller's role (from its certificate) may not send this kind of request, or this
    /// command; nothing was done.
    #[error("forbidden: the {role} role may not send {what}")]
    Forbidden { role: String, what: String },
}

/// What a node knows about routing: the layout from its meta replica (if it hosts one), and the
/// leader of each group it hosts as its own Raft instance sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RoutingReply {
    pub node_id: NodeId,
    pub layout: Option<Box<Layout>>,
    pub leaders: Vec<LeaderHint>,
    /// Addresses of the members of the groups this node hosts: where to ask next when this node
    /// holds no meta replica.
    pub peers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    pub group: GroupId,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// The reporting node leads the group and heard from a quorum recently: the only hint that
    /// says the group can take writes right now. (A leader cut off from its quorum goes on
    /// calling itself leader until it hears of a newer term.)
    pub confirmed: bool,
    pub last_applied_index: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatusReply {
    pub node_id: NodeId,
    pub addr: String,
    pub shard_count: Option<u32>,
    pub groups: Vec<GroupStatus>,
    /// Groups whose copy here did not open (a damaged record): stopped, until rebuilt from the
    /// other replicas (`boxoffice cluster repair`) or the disk is repaired.
    pub damaged: Vec<DamagedGroup>,
}

/// What a node runs and where it keeps it: the answer to [`NodeRequest::Info`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: NodeId,
    pub version: Version,
    /// The disk format versions it reads (`raft_store::FORMAT_VERSION_MIN..=FORMAT_VERSION`).
    pub formats: (u8, u8),
    /// The disk under the data directory, as last sampled (`None` before the first sample).
    pub disk: Option<DiskUsage>,
}

/// The disk a node's data directory is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Available to the node's user.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// What the data directory's files take (`None` until it was first measured).
    pub data_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedGroup {
    pub group: GroupId,
    /// Why it did not open.
    pub error: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupStatus {
    pub group: GroupId,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied_index: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// On the leader: how far each follower's replicated log is (its matched index).
    pub matched: Vec<(NodeId, u64)>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("node at {0} is unreachable: {1}")]
    Unreachable(String, String),
    #[error("call to {0} timed out")]
    Timeout(String),
    #[error("bad reply from {0}: {1}")]
    BadReply(String, String),
}

/// Calls a node: over the framed TCP protocol of `rpc.rs` between processes, over madsim's
/// network in the simulation.
pub trait NodeClient: Send + Sync + 'static {
    fn call(
        &self,
        addr: &str,
        request: NodeRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<NodeReply, TransportError>>;

    /// A call that carries bulk data (a snapshot's chunk): over a connection of its own where the
    /// transport has connections, so it never queues in front of heartbeats and appends.
    fn call_bulk(
        &self,
        addr: &str,
        request: NodeRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<NodeReply, TransportError>> {
        self.call(addr, request, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::RequestKind;

    #[test]
    fn every_kind_has_its_own_tag_and_name() {
        for (i, kind) in RequestKind::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(kind.tag()), i, "{kind}");
            assert_eq!(RequestKind::from_tag(kind.tag()), Some(kind));
        }
        let names: std::collections::BTreeSet<&str> = RequestKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), RequestKind::ALL.len());
        assert_eq!(RequestKind::from_tag(RequestKind::ALL.len() as u8), None);
    }
}
