//! A node: the Raft groups one process hosts on one database, and the leader's duties.
//!
//! A node hosts the replicas it is given: the meta group and any number of event shards. Groups
//! start when a cluster is initialized, when the node is told to open one (`OpenGroup`, before it
//! is added as a learner), or at start-up from their trees on disk; they stop when moved away.
//! Raft traffic for a group not hosted here never starts it.
//!
//! Architecture invariant: the node stamps a command's time when it proposes it as leader, and
//! nowhere else; apply (in raft-store) reads no clock.
//!
//! - `lifecycle`: start, shutdown, opening and dropping groups, a node alone's bootstrap.
//! - `requests`: proposals, linearizable and local reads, the change-feed long-poll, Raft traffic.
//! - `membership`: a group leader's membership changes, and standing for election.
//! - `status`: leader hints, status, health and gauges.
//! - `transfer`: snapshots arriving in chunks (from a leader, or a restore); `backup`: backups
//!   read from a group's leader, and restores that seed a group.
//! - `batcher`: each group's queue of proposals, turned into log entries.
//! - `lease` and `barrier`: confirming leadership for reads, and the lease a confirmation grants.
//! - `duties`: the shard leader's `Expire` and admission, and the election nudge.
//! - `gauges`: gauges sampled on a timer (the data directory's disk; replica lag and waiting
//!   rooms of the groups led here).
//! - `identity`: the node's id and shard count, kept in its data directory.
//! - `setup` and `error`: what a node starts with, and how its calls fail.
//!
//! Imports go one way: the modules that add methods to [`Node`] use the types declared here and
//! the leaf modules (`batcher`, `barrier`, `lease`, `duties`, `identity`, `setup`, `error`);
//! the leaf modules never use [`Node`] or [`Group`].

mod backup;
mod barrier;
mod batcher;
mod duties;
mod error;
#[cfg(not(madsim))]
mod gauges;
mod handoff;
mod identity;
mod lease;
mod lifecycle;
mod membership;
mod requests;
mod setup;
mod status;
mod transfer;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};

use raft_store::{GroupId, GroupState, Kv, NodeId, Raft};
use tokio::task::JoinHandle;

use self::barrier::ReadBarrier;
use self::batcher::Batcher;
pub use self::error::{IdentityError, InvalidRequest, NodeError, ProposeError, TransferError};
use self::handoff::Handoff;
use self::identity::IdentityStore;
pub use self::membership::HAND_OVER_TIMEOUT_MS;
pub use self::setup::{NodeSetup, RaftTuning, ARCHIVE_AFTER_MS_DEFAULT};
use crate::clock::Clock;
use crate::wire::NodeClient;

/// One group hosted here: its Raft instance, its applied state, and the tasks that serve it.
pub struct Group {
    pub id: GroupId,
    pub raft: Raft,
    pub state: Arc<GroupState>,
    /// Where proposals queue for the group's next log entry.
    batcher: Batcher,
    /// Confirms leadership for linearizable reads and quick refusals, and keeps the lease a
    /// confirmation grants.
    barrier: ReadBarrier,
    tasks: Vec<JoinHandle<()>>,
    /// When this replica last accepted an append (heartbeats included) from a leader.
    last_leader_contact_ms: AtomicI64,
    /// Set while this replica hands its leadership over (`membership.rs`).
    handoff: Handoff,
}

pub struct Node {
    id: NodeId,
    advertise_addr: String,
    kv: Arc<dyn Kv>,
    log_kv: Arc<dyn Kv>,
    client: Arc<dyn NodeClient>,
    config: Arc<openraft::Config>,
    /// See [`RaftTuning::archive_after_ms`].
    archive_after_ms: i64,
    clock: Clock,
    identity: IdentityStore,
    groups: RwLock<BTreeMap<GroupId, Arc<Group>>>,
    /// Groups on disk that did not open, and why: stopped, reported, until rebuilt or repaired.
    damaged: RwLock<BTreeMap<GroupId, String>>,
    /// Serializes group creation and removal.
    group_lock: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Until then, this node answers no vote request: see [`Node::start`].
    votes_embargoed_until: tokio::time::Instant,
    /// Snapshots arriving in chunks (`transfer.rs`).
    transfers: Mutex<transfer::Transfers>,
    /// Backups being read (`backup.rs`).
    backups: Mutex<backup::Backups>,
    /// The disk under the data directory, as the gauges last sampled it.
    disk: Mutex<Option<crate::wire::DiskUsage>>,
    /// One snapshot build at a time on this node, whichever group it is for (see
    /// `StateMachineStore::sharing_builds`).
    snapshot_builds: Arc<tokio::sync::Semaphore>,
}

impl Node {
    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn advertise_addr(&self) -> &str {
        &self.advertise_addr
    }

    pub fn client(&self) -> Arc<dyn NodeClient> {
        self.client.clone()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The cluster's shard count, once this node has joined one.
    pub fn shard_count(&self) -> Option<u32> {
        self.identity.shard_count()
    }

    /// Makes this node part of a cluster with `shard_count` shards. Joining the same count again
    /// changes nothing; another count is refused.
    pub async fn join(&self, shard_count: u32) -> Result<(), ProposeError> {
        self.identity.join(shard_count).await
    }

    pub fn group(&self, id: GroupId) -> Option<Arc<Group>> {
        self.groups.read().ok()?.get(&id).cloned()
    }

    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.read().map(|g| g.keys().copied().collect()).unwrap_or_default()
    }

    fn hosted(&self, group: GroupId) -> Result<Arc<Group>, ProposeError> {
        self.group(group).ok_or(ProposeError::UnknownGroup(group))
    }
}
