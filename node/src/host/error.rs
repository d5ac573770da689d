//! How the host's calls fail, one enum per boundary: [`NodeError`] for starting a node,
//! [`ProposeError`] for every call on a running one, [`IdentityError`] for the identity kept in
//! its data directory.
//!
//! A `ProposeError` that leaves the process becomes a [`WireError`], which carries text because it
//! must serialize. Each variant shows the message its `WireError` shows, so a failure reads the
//! same in this node's log, in the caller's, and in the operator's CLI.

use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::metrics::WaitError;
use raft_store::{Answer, CodecError, GroupId, KvError, NodeAddr, NodeId, Outcome, SnapshotError, StorageError};

use crate::wire::{NodeReply, TransportError, WireError};

/// The error of a task openraft runs: a cancelled or panicked task of its runtime.
type JoinError = <raft_store::Runtime as openraft::AsyncRuntime>::JoinError;

/// Why a node did not start, or a node alone could not set itself up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Identity(#[from] IdentityError),
    #[error("storage: {0}")]
    Storage(#[from] KvError),
    #[error("raft: {0}")]
    RaftConfig(#[source] Box<openraft::ConfigError>),
    /// A node alone could not join its own cluster.
    #[error("{0}")]
    Join(#[source] ProposeError),
    /// A node alone could not start one of its groups.
    #[error("raft: {source}")]
    InitGroup {
        group: GroupId,
        #[source]
        source: ProposeError,
    },
    /// A node alone could not record its layout.
    #[error("raft: {0}")]
    InitLayout(#[source] ProposeError),
    #[error("raft: unexpected layout outcome {0:?}")]
    UnexpectedOutcome(Box<Outcome>),
    #[error("timed out: {group} has no leader: {source}")]
    NoLeader {
        group: GroupId,
        #[source]
        source: WaitError,
    },
}

/// Why the identity in a data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("storage: {0}")]
    Storage(#[from] KvError),
    /// The stored record does not decode, or the new one does not encode.
    #[error("storage: {0}")]
    Record(#[from] CodecError),
    #[error("this data directory belongs to node {stored}, not node {given}")]
    OtherNode { stored: NodeId, given: NodeId },
}

/// What this node will not do, whoever asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("a cluster has 1 to {} shards", raft_store::SHARDS_MAX)]
    ShardCountOutOfRange { asked: u32 },
    #[error("this node is in a cluster of {stored} shards")]
    OtherShardCount { stored: u32 },
    #[error("node {node} is not a voter of {group}")]
    NotVoter { node: NodeId, group: GroupId },
}

/// Why a proposal, a read or an operation did not happen here.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader of {group}; leader is {leader:?} at {leader_addr:?}")]
    NotLeader { group: GroupId, leader: Option<NodeId>, leader_addr: Option<String> },
    #[error("this node does not host {0}")]
    UnknownGroup(GroupId),
    #[error("this node has not joined a cluster")]
    NotJoined,
    #[error("refused: {0}")]
    Invalid(#[from] InvalidRequest),
    #[error("{0}")]
    Identity(#[from] IdentityError),
    #[error("{0}")]
    Storage(#[from] KvError),
    /// A group's cold records (remembered outcomes, the archive) could not be read.
    #[error("{0}")]
    Cold(#[from] raft_store::ColdError),
    /// A group's state machine could not be opened.
    #[error("{0}")]
    StateMachine(#[source] Box<StorageError>),
    /// openraft stopped, or could not start.
    #[error("{0}")]
    Raft(#[source] Box<Fatal<NodeId>>),
    #[error("{0}")]
    Initialize(#[source] Box<RaftError<NodeId, InitializeError<NodeId, NodeAddr>>>),
    /// A log entry (a batch of proposals, or a membership change) was not committed.
    #[error("{0}")]
    Write(#[source] Box<RaftError<NodeId, ClientWriteError<NodeId, NodeAddr>>>),
    /// A group's Raft instance did not shut down cleanly.
    #[error("{0}")]
    Shutdown(#[source] JoinError),
    #[error("the batcher of {0} stopped")]
    BatcherStopped(GroupId),
    #[error("the read barrier of {0} stopped")]
    BarrierStopped(GroupId),
    /// A task panicked while holding one of the node's locks.
    #[error("poisoned lock: another task failed inside")]
    LockPoisoned,
    #[error("unexpected answer {0:?}")]
    UnexpectedAnswer(Box<Answer>),
    #[error("node {node} cannot open {group}: {source}")]
    OpenOnPeer {
        node: NodeId,
        group: GroupId,
        #[source]
        source: TransportError,
    },
    #[error("node {node} answered {reply:?}")]
    PeerAnswered { node: NodeId, reply: Box<NodeReply> },
    /// Another node refused; its error is passed on as it is.
    #[error("{source}")]
    Peer {
        node: NodeId,
        #[source]
        source: WireError,
    },
    /// A snapshot transfer, a backup or a restore could not go on.
    #[error("{0}")]
    Transfer(#[from] TransferError),
}

/// Why a snapshot's chunk was refused, a backup could not be read, or a restore not taken.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("a snapshot of {group} refused: {source}")]
    Refused {
        group: GroupId,
        #[source]
        source: SnapshotError,
    },
    #[error("{group}: this node already receives {max} snapshots; try again later")]
    Busy { group: GroupId, max: usize },
    #[error("no snapshot transfer {transfer} into {group} expects chunk {seq}")]
    Unexpected { group: GroupId, transfer: u64, seq: u64 },
    #[error("snapshot transfer {transfer} into {group} was superseded")]
    Superseded { group: GroupId, transfer: u64 },
    #[error("{group} already holds data on this node: a restore goes into a new cluster's empty nodes")]
    Occupied { group: GroupId },
    #[error("no backup {transfer} of {group} is open on this node")]
    NoBackup { group: GroupId, transfer: u64 },
    #[error("{max} backups are open on this node already; try again later")]
    TooManyBackups { max: usize },
    #[error("{group} has no snapshot to back up")]
    NoSnapshot { group: GroupId },
    #[error("{group}'s snapshot was not built in time: {source}")]
    SnapshotWait {
        group: GroupId,
        #[source]
        source: WaitError,
    },
    #[error("{group}'s copy on this node is damaged: {error}")]
    Damaged { group: GroupId, error: String },
}

impl ProposeError {
    pub(crate) fn not_leader(group: GroupId, leader: Option<NodeId>, node: Option<NodeAddr>) -> ProposeError {
        ProposeError::NotLeader { group, leader, leader_addr: node.map(|n| n.addr) }
    }
}

impl From<openraft::ConfigError> for NodeError {
    fn from(e: openraft::ConfigError) -> NodeError {
        NodeError::RaftConfig(Box::new(e))
    }
}

impl From<StorageError> for ProposeError {
    fn from(e: StorageError) -> ProposeError {
        ProposeError::StateMachine(Box::new(e))
    }
}

impl From<Fatal<NodeId>> for ProposeError {
    fn from(e: Fatal<NodeId>) -> ProposeError {
        ProposeError::Raft(Box::new(e))
    }
}

impl From<ProposeError> for WireError {
    fn from(e: ProposeError) -> WireError {
        match e {
            ProposeError::NotLeader { group, leader, leader_addr } => {
                WireError::NotLeader { group, leader, leader_addr }
            }
            ProposeError::UnknownGroup(group) => WireError::UnknownGroup(group),
            // The group is shutting down on this node (a replica removed, a node stopping): not
            // a failure of the request, which its caller retries at the group's other replicas.
            ProposeError::BatcherStopped(group) | ProposeError::BarrierStopped(group) => {
                WireError::NotLeader { group, leader: None, leader_addr: None }
            }
            ProposeError::NotJoined => WireError::NotJoined,
            ProposeError::Invalid(why) => WireError::Invalid(why.to_string()),
            ProposeError::Peer { source, .. } => source,
            other => WireError::Fatal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<ProposeError> {
        let group = GroupId::shard(3);
        vec![
            ProposeError::not_leader(group, Some(2), Some(NodeAddr { addr: "10.0.0.2:7000".into() })),
            ProposeError::UnknownGroup(group),
            ProposeError::NotJoined,
            InvalidRequest::ShardCountOutOfRange { asked: 0 }.into(),
            InvalidRequest::OtherShardCount { stored: 4 }.into(),
            InvalidRequest::NotVoter { node: 2, group }.into(),
            IdentityError::Storage(KvError::FlusherStopped).into(),
            KvError::Io("disk full".into()).into(),
            Fatal::<NodeId>::Stopped.into(),
            ProposeError::BatcherStopped(group),
            ProposeError::OpenOnPeer { node: 2, group, source: TransportError::Timeout("10.0.0.2:7000".into()) },
            ProposeError::PeerAnswered { node: 2, reply: Box::new(NodeReply::Done) },
            ProposeError::Peer { node: 2, source: WireError::Invalid("no".into()) },
        ]
    }

    #[test]
    fn a_propose_error_reads_the_same_after_it_crosses_the_wire() {
        // A group stopping here is told as "not the leader": the caller's cue to go elsewhere.
        let stopping =
            |e: &ProposeError| matches!(e, ProposeError::BatcherStopped(_) | ProposeError::BarrierStopped(_));
        for e in samples().into_iter().filter(|e| !stopping(e)) {
            let text = e.to_string();
            assert_eq!(WireError::from(e).to_string(), text);
        }
    }

    #[test]
    fn errors_can_be_sent_between_tasks_and_boxed() {
        fn sendable<T: std::error::Error + Send + Sync + 'static>() {}
        sendable::<NodeError>();
        sendable::<ProposeError>();
        sendable::<IdentityError>();
    }

    #[test]
    fn only_a_local_failure_becomes_a_fatal_wire_error() {
        let kinds: Vec<WireError> = samples().into_iter().map(WireError::from).collect();
        assert!(matches!(kinds[0], WireError::NotLeader { leader: Some(2), .. }));
        assert!(matches!(kinds[3], WireError::Invalid(_)));
        assert!(matches!(kinds[7], WireError::Fatal(_)));
        assert!(matches!(kinds[9], WireError::NotLeader { leader: None, .. }), "a stopped group is retried elsewhere");
        assert_eq!(kinds[12], WireError::Invalid("no".into()), "a peer's refusal is passed on as it is");
    }
}
