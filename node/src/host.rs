//! A node: the Raft groups one process hosts on one database, and the leader's duties.
//!
//! A node hosts the replicas it is given: the meta group and any number of event shards. Groups
//! start when a cluster is initialized, when a peer first sends Raft traffic for a group this node
//! was added to, or at start-up from their trees on disk; they stop when moved away.
//!
//! Architecture invariant: the node stamps a command's time when it proposes it as leader, and
//! nowhere else; apply (in raft-store) reads no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState, SnapshotPolicy};
use raft_store::{
    Answer, ChangesPage, Command, GroupId, GroupState, Kv, LogStore, NodeId, Outcome, Proposal, Query, Raft, Refusal,
    Request, StateMachineStore,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::admission::{Controller, ADMISSION_TICK};
use crate::clock::Clock;
use crate::network::NetworkFactory;
use crate::wire::{GroupStatus, LeaderHint, NodeClient, NodeStatusReply, WireError};

/// How often each shard's leader looks for due holds to expire.
const EXPIRE_TICK_MS: u64 = 500;
/// A follower answers a browsing (non-linearizable) read only if it heard from its leader within
/// this long: the bound on how stale such a read can be, beyond the follower's apply lag.
pub const STALE_READ_BOUND_MS: i64 = 2_000;
/// How often group and storage gauges are refreshed.
const TELEMETRY_TICK_MS: u64 = 2_000;
/// Proposals in one log entry at most.
const ENTRY_PROPOSALS_MAX: usize = 512;
/// Proposals waiting for an entry, per group; a full queue makes proposers wait.
const PROPOSAL_QUEUE_MAX: usize = 16_384;
/// Entries a group's batcher has proposed and not yet seen applied. While they are in flight, new
/// proposals gather into the next entry: that is how one flush carries many commands.
const ENTRIES_IN_FLIGHT_MAX: usize = 2;

/// Raft timing and compaction. Defaults suit nodes on one network.
#[derive(Clone, Debug)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot (and compact the log) after this many applied entries.
    pub snapshot_every_logs: u64,
    /// Entries kept in the log behind the snapshot, so lagging followers catch up without one.
    pub logs_kept_after_snapshot: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 150,
            election_min_ms: 600,
            election_max_ms: 1_200,
            snapshot_every_logs: 20_000,
            logs_kept_after_snapshot: 2_000,
        }
    }
}

pub struct NodeSetup {
    pub node_id: NodeId,
    /// The address other nodes reach this one at.
    pub advertise_addr: String,
    pub kv: Arc<dyn Kv>,
    pub client: Arc<dyn NodeClient>,
    pub tuning: RaftTuning,
    pub clock: Clock,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("{0}")]
    Identity(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Why a proposal, a read or an operation did not happen here.
pub type ProposeError = WireError;

/// What a node was created as; checked at every start so a data directory is never reused by
/// another node. The shard count is set once, when the node joins a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NodeIdentity {
    node_id: NodeId,
    shard_count: Option<u32>,
}

pub struct Group {
    pub id: GroupId,
    pub raft: Raft,
    pub state: Arc<GroupState>,
    batcher: mpsc::Sender<Pending>,
    /// Waiters for the next confirmation of leadership (see `run_read_barrier`).
    barrier: mpsc::Sender<oneshot::Sender<Result<(), ProposeError>>>,
    /// What the last confirmation of leadership still vouches for.
    lease: Arc<ReadLease>,
    tasks: Vec<JoinHandle<()>>,
    /// When this replica last accepted an append (heartbeats included) from a leader.
    last_leader_contact_ms: std::sync::atomic::AtomicI64,
}

/// A proposal waiting for its group's next log entry, and where its outcome goes.
struct Pending {
    proposal: Proposal,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
}

pub struct Node {
    id: NodeId,
    advertise_addr: String,
    kv: Arc<dyn Kv>,
    client: Arc<dyn NodeClient>,
    config: Arc<openraft::Config>,
    clock: Clock,
    identity: Mutex<NodeIdentity>,
    groups: RwLock<BTreeMap<GroupId, Arc<Group>>>,
    /// Serializes group creation and removal.
    group_lock: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Until then, this node answers no vote request: see [`Node::start`].
    votes_embargoed_until: tokio::time::Instant,
}

fn storage_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Storage(e.to_string())
}

fn fatal(e: impl std::fmt::Display) -> WireError {
    WireError::Fatal(e.to_string())
}

pub(crate) fn not_leader(group: GroupId, leader: Option<NodeId>, node: Option<BasicNode>) -> ProposeError {
    WireError::NotLeader { group, leader, leader_addr: node.map(|n| n.addr) }
}

impl Node {
    /// Opens the node's database and starts every group found on it.
    pub async fn start(setup: NodeSetup) -> Result<Arc<Node>, NodeError> {
        let identity = load_identity(setup.kv.as_ref(), setup.node_id).await?;
        let config = raft_config(&setup.tuning)?;
        // Before it stopped, this node may have acknowledged a heartbeat that a leader now counts
        // on for its read lease; the promise not to vote for another leader that came with it was
        // kept in memory and is gone. Keeping it from the restart on, for as long as a follower
        // keeps it, leaves every such lease sound (see `ReadLease`).
        let restarted = identity.shard_count.is_some();
        let votes_embargoed_until = tokio::time::Instant::now()
            + if restarted { Duration::from_millis(config.election_timeout_max) } else { Duration::ZERO };
        let node = Arc::new(Node {
            id: setup.node_id,
            advertise_addr: setup.advertise_addr,
            kv: setup.kv,
            client: setup.client,
            config,
            clock: setup.clock,
            identity: Mutex::new(identity),
            groups: RwLock::new(BTreeMap::new()),
            group_lock: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            votes_embargoed_until,
        });
        if node.shard_count().is_some() {
            for name in node.kv.tree_names().map_err(storage_err)? {
                if let Some(group) = raft_store::parse_group_tree(&name) {
                    node.ensure_group(group).await.map_err(|e| NodeError::Raft(e.to_string()))?;
                }
            }
        }
        node.spawn(telemetry_duty(Arc::downgrade(&node)));
        tracing::info!(node = node.id, shards = ?node.shard_count(), groups = node.group_ids().len(), "node started");
        Ok(node)
    }

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
        self.identity.lock().map(|i| i.shard_count).unwrap_or(None)
    }

    pub fn group(&self, id: GroupId) -> Option<Arc<Group>> {
        self.groups.read().ok()?.get(&id).cloned()
    }

    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.read().map(|g| g.keys().copied().collect()).unwrap_or_default()
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(handle);
        }
    }

    /// Makes this node part of a cluster with `shard_count` shards. Joining the same count again
    /// changes nothing; another count is refused.
    pub async fn join(&self, shard_count: u32) -> Result<(), ProposeError> {
        if shard_count == 0 || shard_count > raft_store::SHARDS_MAX {
            return Err(WireError::Invalid(format!("a cluster has 1 to {} shards", raft_store::SHARDS_MAX)));
        }
        let next = {
            let mut identity = self.identity.lock().map_err(fatal)?;
            match identity.shard_count {
                Some(n) if n == shard_count => return Ok(()),
                Some(n) => return Err(WireError::Invalid(format!("this node is in a cluster of {n} shards"))),
                None => {
                    identity.shard_count = Some(shard_count);
                    identity.clone()
                }
            }
        };
        store_identity(self.kv.as_ref(), &next).await.map_err(fatal)
    }

    /// The group, started here if it is not yet (empty, waiting for its leader or an init).
    pub async fn ensure_group(self: &Arc<Self>, id: GroupId) -> Result<Arc<Group>, ProposeError> {
        if let Some(group) = self.group(id) {
            return Ok(group);
        }
        let shard_count = self.shard_count().ok_or(WireError::NotJoined)?;
        if id.as_shard().is_some_and(|s| s >= shard_count) {
            return Err(WireError::UnknownGroup(id));
        }
        let _creating = self.group_lock.lock().await;
        if let Some(group) = self.group(id) {
            return Ok(group);
        }
        let group = self.open_group(id, shard_count).await?;
        if let Ok(mut groups) = self.groups.write() {
            groups.insert(id, group.clone());
        }
        tracing::info!(node = self.id, group = %id, "group started");
        Ok(group)
    }

    async fn open_group(self: &Arc<Self>, id: GroupId, shard_count: u32) -> Result<Arc<Group>, ProposeError> {
        let tree = self.kv.tree(&raft_store::group_tree(id)).map_err(fatal)?;
        let log = LogStore::new(self.kv.clone(), tree.clone());
        let sm = StateMachineStore::open(self.kv.clone(), tree, id, shard_count).map_err(fatal)?;
        let state = sm.state();
        let network = NetworkFactory::new(id, self.client.clone());
        let raft = Raft::new(self.id, self.config.clone(), network, log, sm).await.map_err(fatal)?;
        let (batcher, queue) = mpsc::channel(PROPOSAL_QUEUE_MAX);
        let (barrier, waiters) = mpsc::channel(PROPOSAL_QUEUE_MAX);
        let lease = Arc::new(ReadLease::new(self.id, &self.config));
        let mut tasks = vec![
            tokio::spawn(run_batcher(id, raft.clone(), queue, self.clock.clone())),
            tokio::spawn(run_read_barrier(id, raft.clone(), waiters, lease.clone())),
        ];
        if !id.is_meta() {
            let duty = LeaderDuty {
                node_id: self.id,
                raft: raft.clone(),
                state: state.clone(),
                batcher: batcher.clone(),
                clock: self.clock.clone(),
            };
            tasks.push(tokio::spawn(expire_duty(duty.clone())));
            tasks.push(tokio::spawn(admission_duty(duty)));
        }
        tasks.push(tokio::spawn(election_nudge(
            self.id,
            raft.clone(),
            Duration::from_millis(self.config.election_timeout_max),
        )));
        Ok(Arc::new(Group {
            id,
            raft,
            state,
            batcher,
            barrier,
            lease,
            tasks,
            last_leader_contact_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
        }))
    }

    /// Starts the group here and makes `members` its first membership, unless it already has one.
    pub async fn init_group(
        self: &Arc<Self>,
        id: GroupId,
        members: BTreeMap<NodeId, String>,
    ) -> Result<(), ProposeError> {
        let group = self.ensure_group(id).await?;
        if group.raft.is_initialized().await.map_err(fatal)? {
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> =
            members.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
        match group.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another member initialized it first: that is the same outcome.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(fatal(e)),
        }
    }

    /// Stops a group here and deletes its copy. Called after the group was moved away.
    pub async fn drop_group(&self, id: GroupId) -> Result<(), ProposeError> {
        let _removing = self.group_lock.lock().await;
        let group = self.groups.write().map_err(fatal)?.remove(&id);
        if let Some(group) = group {
            for task in &group.tasks {
                task.abort();
            }
            group.raft.shutdown().await.map_err(fatal)?;
            self.kv.drop_tree(&raft_store::group_tree(id)).map_err(fatal)?;
            raft_store::flushed(self.kv.as_ref()).await.map_err(fatal)?;
            tracing::info!(node = self.id, group = %id, "group dropped");
        }
        Ok(())
    }

    /// A node alone: joins a cluster of `shard_count` shards made of itself, and starts every group
    /// with itself as the only member (`boxoffice dev`). Safe to call on every start.
    pub async fn bootstrap_single(self: &Arc<Self>, shard_count: u32) -> Result<(), NodeError> {
        let shard_count = match self.shard_count() {
            Some(stored) => {
                if stored != shard_count {
                    tracing::warn!(
                        stored,
                        asked = shard_count,
                        "the shard count is fixed at creation; using the stored one"
                    );
                }
                stored
            }
            None => {
                self.join(shard_count).await.map_err(|e| NodeError::Identity(e.to_string()))?;
                shard_count
            }
        };
        let me = BTreeMap::from([(self.id, self.advertise_addr.clone())]);
        let groups = std::iter::once(GroupId::META).chain((0..shard_count).map(GroupId::shard));
        for id in groups {
            self.init_group(id, me.clone()).await.map_err(|e| NodeError::Raft(e.to_string()))?;
        }
        self.wait_for_leaders(Duration::from_secs(30)).await?;
        let layout =
            Command::InitLayout { shard_count, replication: 1, nodes: vec![(self.id, self.advertise_addr.clone())] };
        match self.propose(GroupId::META, Proposal { request_id: None, fingerprint: 0, command: layout }, false).await {
            Ok(Outcome::Layout(_)) => Ok(()),
            Ok(other) => Err(NodeError::Raft(format!("unexpected layout outcome {other:?}"))),
            Err(e) => Err(NodeError::Raft(e.to_string())),
        }
    }

    /// Waits until every group hosted here has a leader.
    pub async fn wait_for_leaders(&self, timeout: Duration) -> Result<(), NodeError> {
        for id in self.group_ids() {
            let Some(group) = self.group(id) else { continue };
            group
                .raft
                .wait(Some(timeout))
                .metrics(|m| m.current_leader.is_some(), "leader elected")
                .await
                .map_err(|e| NodeError::Timeout(format!("{id} has no leader: {e}")))?;
        }
        Ok(())
    }

    fn hosted(&self, group: GroupId) -> Result<Arc<Group>, ProposeError> {
        self.group(group).ok_or(WireError::UnknownGroup(group))
    }

    /// Proposes a command as this group's leader and waits for its outcome. The command joins the
    /// group's next log entry, which the leader stamps with its clock.
    ///
    /// With `quick_refusal` (the client did not ask for the outcome to be remembered, and this is
    /// the first attempt), a command that the confirmed, current state refuses is answered without
    /// a log entry: the refusal changes nothing, so there is nothing to replicate or flush.
    pub async fn propose(
        &self,
        group: GroupId,
        proposal: Proposal,
        quick_refusal: bool,
    ) -> Result<Outcome, ProposeError> {
        let target = self.hosted(group)?;
        let name = proposal.command.name();
        let started = tokio::time::Instant::now();
        let refused = if quick_refusal { self.confirmed_refusal(&target, &proposal).await? } else { None };
        let (result, path) = match refused {
            Some(refusal) => {
                metrics::counter!("boxoffice_quick_refusals_total", "command" => name).increment(1);
                (Ok(Outcome::Refused(refusal)), "quick")
            }
            None => (submit_to_batcher(&target.batcher, group, proposal).await, "log"),
        };
        metrics::histogram!("boxoffice_propose_seconds", "command" => name, "path" => path)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// The refusal the state machine would give `proposal` as the next command, judged on state
    /// that reflects every write acknowledged before this call (leadership confirmed by a quorum,
    /// everything committed applied): a linearizable read, at the cost of a heartbeat round shared
    /// with every other waiter instead of a log entry and a flush on every replica. The local state
    /// is asked first, so a command it would accept goes straight to the log.
    async fn confirmed_refusal(&self, target: &Group, proposal: &Proposal) -> Result<Option<Refusal>, ProposeError> {
        let refusal = |node: &Node| {
            let clock = &node.clock;
            target.state.read().machine.refusal(proposal, clock.now_ms(), clock.passed_ms())
        };
        if refusal(self).is_none() {
            return Ok(None);
        }
        self.confirm_leadership(target).await?;
        Ok(refusal(self))
    }

    /// Returns once this node has confirmed it still leads `target` and has applied everything
    /// committed before this call: at once while its read lease holds (renewing it in the
    /// background once it is old), else after a heartbeat round that a quorum answered, shared
    /// by every concurrent caller.
    async fn confirm_leadership(&self, target: &Group) -> Result<(), ProposeError> {
        #[cfg(madsim)]
        if raft_store::planted::is_planted(raft_store::planted::Bug::TrustStaleLeader) {
            return Ok(());
        }
        match target.lease.check(&target.raft.metrics().borrow()) {
            LeaseCheck::Holds => return Ok(()),
            LeaseCheck::Aging => {
                if target.lease.start_renewal() {
                    // Nobody waits for this round's answer; the lease it grants is the point.
                    let (reply, _) = oneshot::channel();
                    if target.barrier.try_send(reply).is_err() {
                        target.lease.renewal_done();
                    }
                }
                return Ok(());
            }
            LeaseCheck::Lapsed => {}
        }
        let (reply, confirmed) = oneshot::channel();
        let stopped = || fatal(format!("the read barrier of {} stopped", target.id));
        target.barrier.send(reply).await.map_err(|_| stopped())?;
        confirmed.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Reads from a group's applied state; `linearizable` first confirms leadership and waits for
    /// everything committed before the read to be applied.
    pub async fn read(&self, group: GroupId, query: &Query, linearizable: bool) -> Result<Answer, ProposeError> {
        let target = self.hosted(group)?;
        if linearizable {
            self.confirm_leadership(&target).await?;
        } else {
            self.check_staleness(&target)?;
        }
        let applied = target.state.read();
        Ok(applied.machine.query(query, self.clock.passed_ms()))
    }

    /// A follower that has not heard from a leader lately refuses browsing reads, so the caller
    /// asks another replica: stale reads are bounded by `STALE_READ_BOUND_MS`.
    fn check_staleness(&self, group: &Group) -> Result<(), ProposeError> {
        let m = group.raft.metrics().borrow().clone();
        if m.current_leader == Some(self.id) {
            return Ok(());
        }
        let last = group.last_leader_contact_ms.load(std::sync::atomic::Ordering::Relaxed);
        if self.clock.now_ms().saturating_sub(last) <= STALE_READ_BOUND_MS {
            return Ok(());
        }
        Err(not_leader(group.id, m.current_leader, None))
    }

    /// Change records of a shard after `after_index`, waiting up to `wait` for one to be applied.
    pub async fn changes(
        &self,
        group: GroupId,
        after_index: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangesPage, ProposeError> {
        let target = self.hosted(group)?;
        let mut applied = target.state.watch_applied();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let page =
                match target.state.read().machine.query(&Query::Changes { after_index, limit }, self.clock.passed_ms())
                {
                    Answer::Changes(page) => page,
                    other => return Err(fatal(format!("unexpected answer {other:?}"))),
                };
            let empty = matches!(&page, ChangesPage::Records { changes, .. } if changes.is_empty());
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !empty || tokio::time::timeout(remaining, applied.changed()).await.is_err() {
                return Ok(page);
            }
        }
    }

    /// As this group's leader: adds missing members as learners (waiting for each to catch up),
    /// then makes the voters exactly `voters`, then removes members in neither set.
    pub async fn ensure_members(
        &self,
        group: GroupId,
        voters: BTreeMap<NodeId, String>,
        learners: BTreeMap<NodeId, String>,
    ) -> Result<(), ProposeError> {
        let target = self.hosted(group)?;
        let raft = &target.raft;
        let leader_check = |e: String| -> ProposeError {
            let metrics = raft.metrics().borrow().clone();
            if metrics.current_leader == Some(self.id) {
                fatal(e)
            } else {
                not_leader(group, metrics.current_leader, None)
            }
        };
        if raft.metrics().borrow().current_leader != Some(self.id) {
            return Err(leader_check(String::new()));
        }
        let membership = raft.metrics().borrow().membership_config.membership().clone();
        let present: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        for (id, addr) in voters.iter().chain(learners.iter()) {
            if !present.contains(id) {
                self.open_group_on(*id, addr, group).await?;
                raft.add_learner(*id, BasicNode { addr: addr.clone() }, true)
                    .await
                    .map_err(|e| leader_check(e.to_string()))?;
            }
        }
        let current_voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let wanted: BTreeSet<NodeId> = voters.keys().copied().collect();
        if current_voters != wanted {
            raft.change_membership(wanted.clone(), false).await.map_err(|e| leader_check(e.to_string()))?;
        }
        let membership = raft.metrics().borrow().membership_config.membership().clone();
        let extra: BTreeSet<NodeId> = membership
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| !voters.contains_key(id) && !learners.contains_key(id))
            .collect();
        if !extra.is_empty() {
            raft.change_membership(ChangeMembers::RemoveNodes(extra), false)
                .await
                .map_err(|e| leader_check(e.to_string()))?;
        }
        Ok(())
    }

    /// Has node `id` start an empty copy of `group`, so it can be added as a learner.
    async fn open_group_on(&self, id: NodeId, addr: &str, group: GroupId) -> Result<(), ProposeError> {
        if id == self.id {
            return Ok(());
        }
        let request = crate::wire::NodeRequest::OpenGroup { group };
        match self.client.call(addr, request, Duration::from_secs(10)).await {
            Ok(crate::wire::NodeReply::Done) => Ok(()),
            Ok(crate::wire::NodeReply::Error(e)) => Err(e),
            Ok(other) => Err(fatal(format!("node {id} answered {other:?}"))),
            Err(e) => Err(fatal(format!("node {id} cannot open {group}: {e}"))),
        }
    }

    /// Dispatches a Raft message from a peer to its group. A group not hosted here is not started:
    /// the sender hears "unknown group", which it treats like an unreachable peer.
    pub async fn handle_raft(self: &Arc<Self>, rpc: crate::network::RaftRpc) -> crate::network::RaftRpcReply {
        use crate::network::{RaftRpc, RaftRpcReply};
        let Some(group) = self.group(rpc.group()) else { return RaftRpcReply::UnknownGroup };
        match rpc {
            RaftRpc::Append { req, .. } => {
                let reply = group.raft.append_entries(req).await;
                if matches!(&reply, Ok(r) if r.is_success()) {
                    group.last_leader_contact_ms.store(self.clock.now_ms(), std::sync::atomic::Ordering::Relaxed);
                }
                RaftRpcReply::Append(reply)
            }
            // A candidate hears what an unreachable voter would say.
            RaftRpc::Vote { .. } if tokio::time::Instant::now() < self.votes_embargoed_until => {
                RaftRpcReply::UnknownGroup
            }
            RaftRpc::Vote { req, .. } => RaftRpcReply::Vote(group.raft.vote(req).await),
            RaftRpc::Snapshot { vote, meta, data, .. } => {
                let snapshot = raft_store::Snapshot { meta, snapshot: Box::new(data) };
                RaftRpcReply::Snapshot(group.raft.install_full_snapshot(vote, snapshot).await)
            }
        }
    }

    /// Leader and term of every group hosted here, as this node sees them.
    pub fn leader_hints(&self) -> Vec<LeaderHint> {
        self.group_ids()
            .into_iter()
            .filter_map(|id| self.group(id))
            .map(|g| {
                let m = g.raft.metrics().borrow().clone();
                LeaderHint {
                    group: g.id,
                    leader: m.current_leader,
                    term: m.current_term,
                    confirmed: self.leads_with_quorum(&m),
                    last_applied_index: m.last_applied.map_or(0, |l| l.index),
                }
            })
            .collect()
    }

    /// Whether, by these metrics, this node leads and heard from a quorum within the time an
    /// election would take: a leader cut off from its quorum is not confirmed.
    fn leads_with_quorum(&self, m: &openraft::RaftMetrics<NodeId, raft_store::NodeAddr>) -> bool {
        if !leads(m, self.id) {
            return false;
        }
        let alone = m.membership_config.membership().voter_ids().all(|v| v == self.id);
        let fresh_ms = 2 * self.config.election_timeout_max;
        alone || m.millis_since_quorum_ack.is_some_and(|ms| ms <= fresh_ms)
    }

    /// Stands for election in `group`, if this node is one of its voters.
    pub async fn campaign(&self, group: GroupId) -> Result<(), ProposeError> {
        let target = self.hosted(group)?;
        let voter = target.raft.metrics().borrow().membership_config.membership().voter_ids().any(|v| v == self.id);
        if !voter {
            return Err(WireError::Invalid(format!("node {} is not a voter of {group}", self.id)));
        }
        tracing::info!(node = self.id, %group, "standing for election to balance leadership");
        target.raft.trigger().elect().await.map_err(fatal)
    }

    /// Addresses of every member of every group hosted here, this node's excepted.
    pub fn peer_addrs(&self) -> Vec<String> {
        let mut addrs = BTreeSet::new();
        for id in self.group_ids() {
            let Some(g) = self.group(id) else { continue };
            let m = g.raft.metrics().borrow().membership_config.membership().clone();
            addrs.extend(m.nodes().filter(|(id, _)| **id != self.id).map(|(_, n)| n.addr.clone()));
        }
        addrs.into_iter().collect()
    }

    pub fn status(&self) -> NodeStatusReply {
        let groups = self
            .group_ids()
            .into_iter()
            .filter_map(|id| self.group(id))
            .map(|g| {
                let m = g.raft.metrics().borrow().clone();
                let membership = m.membership_config.membership();
                let voters: Vec<NodeId> = membership.voter_ids().collect();
                let learners: Vec<NodeId> = membership.learner_ids().collect();
                let matched = m
                    .replication
                    .as_ref()
                    .map(|r| r.iter().map(|(id, log)| (*id, log.map_or(0, |l| l.index))).collect())
                    .unwrap_or_default();
                GroupStatus {
                    group: g.id,
                    state: format!("{:?}", m.state),
                    leader: m.current_leader,
                    term: m.current_term,
                    last_log_index: m.last_log_index.unwrap_or(0),
                    last_applied_index: m.last_applied.map_or(0, |l| l.index),
                    voters,
                    learners,
                    matched,
                }
            })
            .collect();
        NodeStatusReply { node_id: self.id, addr: self.advertise_addr.clone(), shard_count: self.shard_count(), groups }
    }

    /// Leader and applied index of every group hosted here, for readiness. A group this node
    /// leads counts as led only while its quorum answers.
    pub fn health(&self) -> Vec<seams::GroupHealth> {
        self.leader_hints()
            .into_iter()
            .map(|h| {
                let leader = if h.leader == Some(self.id) && !h.confirmed { None } else { h.leader };
                seams::GroupHealth { group: h.group, leader, last_applied_index: h.last_applied_index }
            })
            .collect()
    }

    /// Stops the duties and every Raft instance. The database flushes when dropped.
    pub async fn shutdown(&self) {
        for task in self.tasks.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default() {
            task.abort();
        }
        let groups: Vec<Arc<Group>> =
            self.groups.write().map(|mut g| std::mem::take(&mut *g).into_values().collect()).unwrap_or_default();
        for group in groups {
            for task in &group.tasks {
                task.abort();
            }
            if let Err(e) = group.raft.shutdown().await {
                tracing::warn!(group = %group.id, error = %e, "raft shutdown");
            }
        }
        tracing::info!(node = self.id, "node stopped");
    }

    /// Refreshes the Raft and storage gauges (also called before every `/metrics` render).
    pub fn record_telemetry(&self) {
        for id in self.group_ids() {
            let Some(g) = self.group(id) else { continue };
            let m = g.raft.metrics().borrow().clone();
            let group = g.id.to_string();
            let leading = f64::from(u8::from(m.state == ServerState::Leader));
            metrics::gauge!("boxoffice_raft_is_leader", "group" => group.clone()).set(leading);
            metrics::gauge!("boxoffice_raft_term", "group" => group.clone()).set(m.current_term as f64);
            metrics::gauge!("boxoffice_raft_last_applied_index", "group" => group.clone())
                .set(m.last_applied.map_or(0, |l| l.index) as f64);
            metrics::gauge!("boxoffice_raft_last_log_index", "group" => group)
                .set(m.last_log_index.unwrap_or(0) as f64);
        }
        let stats = self.kv.flush_stats();
        metrics::counter!("boxoffice_storage_flushes_total").absolute(stats.flushes);
        metrics::counter!("boxoffice_storage_flush_requests_total").absolute(stats.requests);
    }
}

async fn submit_to_batcher(
    batcher: &mpsc::Sender<Pending>,
    group: GroupId,
    proposal: Proposal,
) -> Result<Outcome, ProposeError> {
    let (reply, outcome) = oneshot::channel();
    if batcher.send(Pending { proposal, reply }).await.is_err() {
        return Err(fatal(format!("the batcher of {group} stopped")));
    }
    outcome.await.unwrap_or_else(|_| Err(fatal(format!("the batcher of {group} stopped"))))
}

/// Turns the proposals queued for a group into log entries: it takes every proposal waiting (up
/// to a bound) into one entry, stamps it with this node's clock, and proposes it. At most
/// `ENTRIES_IN_FLIGHT_MAX` entries are in flight; while they are, the next one fills up.
async fn run_batcher(group: GroupId, raft: Raft, mut queue: mpsc::Receiver<Pending>, clock: Clock) {
    let in_flight = Arc::new(Semaphore::new(ENTRIES_IN_FLIGHT_MAX));
    while let Some(first) = queue.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < ENTRY_PROPOSALS_MAX {
            match queue.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        metrics::histogram!("boxoffice_entry_proposals").record(batch.len() as f64);
        let raft = raft.clone();
        let time_ms = clock.now_ms();
        tokio::spawn(async move {
            let (proposals, replies): (Vec<Proposal>, Vec<_>) =
                batch.into_iter().map(|p| (p.proposal, p.reply)).unzip();
            let count = proposals.len();
            let result = raft.client_write(Request { time_ms, proposals }).await;
            drop(permit);
            match result {
                Ok(response) => {
                    assert_eq!(response.data.len(), count, "one outcome per proposal");
                    for (reply, outcome) in replies.into_iter().zip(response.data) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    let error = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            not_leader(group, f.leader_id, f.leader_node)
                        }
                        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => fatal(e),
                        RaftError::Fatal(e) => fatal(e),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

/// A leader's lease on linearizable reads, from its last confirmed heartbeat round.
///
/// A round that a quorum answered, started at `t` in term `T`, proves that each of those voters
/// heard from this leader after `t`; openraft's followers then refuse every vote request for
/// `election_timeout_max` (their leader lease), so no other leader can be elected before
/// `t + election_timeout_max` on their clocks. A restarted node forgets that promise, so it
/// answers no vote request for as long after it starts (`Node::start`). Until `t` plus half
/// that lease (the other half is the margin for clock rates and for the metrics this reads, which
/// openraft publishes a moment after it changes state), while this node still leads in term `T`,
/// its applied state reflects every write acknowledged before a read: the round waited for
/// everything committed before it to be applied, and this leader applies each later write before
/// it acknowledges it. Reads then need no round of their own.
struct ReadLease {
    node: NodeId,
    /// The term and the start of the latest confirmed round; none before the first.
    granted: Mutex<Option<(u64, tokio::time::Instant)>>,
    /// How long after its start a confirmed round vouches for reads.
    length: Duration,
    /// Age after which a read also asks for a new round, without waiting for it.
    renew_after: Duration,
    /// A renewal round is queued or running.
    renewing: std::sync::atomic::AtomicBool,
}

#[derive(Debug, PartialEq, Eq)]
enum LeaseCheck {
    /// Reads may be answered now.
    Holds,
    /// Reads may be answered now, and a renewal should start.
    Aging,
    /// Reads must wait for a round.
    Lapsed,
}

impl ReadLease {
    fn new(node: NodeId, config: &openraft::Config) -> ReadLease {
        let length = Duration::from_millis(config.election_timeout_max / 2);
        ReadLease {
            node,
            granted: Mutex::new(None),
            length,
            renew_after: length / 4,
            renewing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the lease vouches for a read now, by the group's latest metrics.
    fn check(&self, m: &openraft::RaftMetrics<NodeId, raft_store::NodeAddr>) -> LeaseCheck {
        self.check_at(m, tokio::time::Instant::now())
    }

    fn check_at(
        &self,
        m: &openraft::RaftMetrics<NodeId, raft_store::NodeAddr>,
        now: tokio::time::Instant,
    ) -> LeaseCheck {
        let Some((term, started)) = *self.granted.lock().unwrap_or_else(|e| e.into_inner()) else {
            return LeaseCheck::Lapsed;
        };
        let age = now.saturating_duration_since(started);
        #[cfg(madsim)]
        let age = if raft_store::planted::is_planted(raft_store::planted::Bug::LeaseNeverExpires) {
            Duration::ZERO
        } else {
            age
        };
        if !leads(m, self.node) || m.current_term != term || age >= self.length {
            LeaseCheck::Lapsed
        } else if age > self.renew_after {
            LeaseCheck::Aging
        } else {
            LeaseCheck::Holds
        }
    }

    /// Records a round confirmed in `term` that started at `started`; an earlier round never
    /// replaces a later one of the same term.
    fn grant(&self, term: u64, started: tokio::time::Instant) {
        let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        if granted.is_none_or(|(t, s)| t != term || s < started) {
            *granted = Some((term, started));
        }
    }

    /// True for the one caller that should queue a renewal.
    fn start_renewal(&self) -> bool {
        !self.renewing.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    fn renewal_done(&self) {
        self.renewing.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Whether these metrics show `node` leading its group.
fn leads(m: &openraft::RaftMetrics<NodeId, raft_store::NodeAddr>, node: NodeId) -> bool {
    m.state == ServerState::Leader && m.current_leader == Some(node)
}

/// Confirms leadership for linearizable reads and refusals. Each round calls openraft's
/// `ensure_linearizable` (a heartbeat to every voter, then waiting for the read index to be
/// applied) for every waiter queued before the round began, so a burst of readers costs one round,
/// not one each; waiters arriving during a round wait for the next, which starts after them. A
/// confirmed round renews `lease`.
async fn run_read_barrier(
    group: GroupId,
    raft: Raft,
    mut waiters: mpsc::Receiver<oneshot::Sender<Result<(), ProposeError>>>,
    lease: Arc<ReadLease>,
) {
    while let Some(first) = waiters.recv().await {
        let mut round = vec![first];
        while let Ok(more) = waiters.try_recv() {
            round.push(more);
        }
        metrics::histogram!("boxoffice_read_barrier_waiters").record(round.len() as f64);
        let term = raft.metrics().borrow().current_term;
        let started = tokio::time::Instant::now();
        let confirmed = raft.ensure_linearizable().await;
        lease.renewal_done();
        if confirmed.is_ok() && raft.metrics().borrow().current_term == term {
            lease.grant(term, started);
        }
        let result = confirmed.map(|_| ()).map_err(|e| match e {
            RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f)) => {
                not_leader(group, f.leader_id, f.leader_node)
            }
            RaftError::APIError(other) => {
                tracing::debug!(%group, error = %other, "leadership not confirmed");
                not_leader(group, None, None)
            }
            RaftError::Fatal(e) => fatal(e),
        });
        for waiter in round {
            let _ = waiter.send(result.clone());
        }
    }
}

/// What a shard leader's periodic duties work with: they act only while this node leads, and
/// propose through the group's batcher like any client command.
#[derive(Clone)]
struct LeaderDuty {
    node_id: NodeId,
    raft: Raft,
    state: Arc<GroupState>,
    batcher: mpsc::Sender<Pending>,
    clock: Clock,
}

impl LeaderDuty {
    fn leading(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        let proposal = Proposal { request_id: None, fingerprint: 0, command };
        submit_to_batcher(&self.batcher, self.state.group(), proposal).await
    }
}

/// Proposes `Expire` whenever this node leads the shard and a hold or payment is due, so expired
/// seats reach the change feed even when no other command arrives.
async fn expire_duty(duty: LeaderDuty) {
    let group = duty.state.group();
    loop {
        tokio::time::sleep(Duration::from_millis(EXPIRE_TICK_MS)).await;
        if !duty.leading() || !duty.state.read().machine.has_due_deadlines(duty.clock.now_ms()) {
            continue;
        }
        match duty.propose(Command::Expire).await {
            Ok(Outcome::Expired { holds, orders }) => {
                tracing::debug!(%group, holds, orders, "expired");
                metrics::counter!("boxoffice_expired_holds_total").increment(u64::from(holds));
                metrics::counter!("boxoffice_expired_orders_total").increment(u64::from(orders));
            }
            Ok(other) => tracing::warn!(%group, ?other, "unexpected expire outcome"),
            Err(e) => tracing::debug!(%group, error = %e, "expire not proposed"),
        }
    }
}

/// Runs the admission controller of every open waiting room of the shard while this node leads
/// it: reads the queue views from the local state (current on the leader) and proposes the
/// advances, feeding each proposal's commit latency back into its event's controller.
async fn admission_duty(duty: LeaderDuty) {
    let group = duty.state.group();
    let mut controllers: BTreeMap<raft_store::EventId, Controller> = BTreeMap::new();
    loop {
        tokio::time::sleep(ADMISSION_TICK).await;
        if !duty.leading() {
            // A new leader starts from the initial rate: it has not measured anything yet.
            controllers.clear();
            continue;
        }
        // The leader's own clock: it judges the queues as the command it proposes will be.
        let now_ms = duty.clock.now_ms();
        let views = match duty.state.read().machine.query(&Query::Queues, now_ms) {
            Answer::Queues(views) => views,
            _ => continue,
        };
        controllers.retain(|id, _| views.iter().any(|v| v.event_id == *id));
        for view in views {
            let controller = controllers.entry(view.event_id.clone()).or_default();
            let Some(to) = controller.next(&view, now_ms) else { continue };
            let command = Command::AdvanceQueue { event_id: view.event_id.clone(), to };
            let started = tokio::time::Instant::now();
            match duty.propose(command).await {
                Ok(Outcome::Queue(after)) => {
                    controller.observe(started.elapsed());
                    metrics::gauge!("boxoffice_queue_watermark", "event" => view.event_id.to_string())
                        .set(after.queue.watermark as f64);
                    tracing::debug!(%group, event_id = %view.event_id, watermark = after.queue.watermark, "admitted");
                }
                Ok(other) => tracing::warn!(%group, ?other, "unexpected advance outcome"),
                Err(e) => tracing::debug!(%group, error = %e, "advance not proposed"),
            }
        }
    }
}

/// Stands for election at a random moment while this replica knows no leader.
///
/// openraft 0.9 draws each replica's election timeout once, when the group starts, and checks it
/// on a tick shared by nothing but the start time. Replicas that start together (a whole cluster
/// restarted at once) can then time out on the same tick, term after term, each voting for
/// itself: the simulation found a meta group leaderless for minutes that way. A nudge at a
/// freshly drawn moment, off the tick, breaks the tie; a replica that hears from a leader never
/// nudges.
async fn election_nudge(node_id: NodeId, raft: Raft, election_max: Duration) {
    use openraft::AsyncRuntime;
    use rand::Rng;
    // The runtime's generator: under the simulation it is the seeded one, so runs replay.
    type Runtime = <raft_store::TypeConfig as openraft::RaftTypeConfig>::AsyncRuntime;
    loop {
        let wait = election_max + election_max.mul_f64(Runtime::thread_rng().gen_range(0.0..1.0));
        tokio::time::sleep(wait).await;
        let m = raft.metrics().borrow().clone();
        let voter = m.membership_config.membership().voter_ids().any(|v| v == node_id);
        if m.current_leader.is_none() && voter && m.state != ServerState::Shutdown {
            tracing::info!(node = node_id, "no leader known: standing for election");
            let _ = raft.trigger().elect().await;
        }
    }
}

async fn telemetry_duty(node: std::sync::Weak<Node>) {
    loop {
        let Some(n) = node.upgrade() else { return };
        n.record_telemetry();
        drop(n);
        tokio::time::sleep(Duration::from_millis(TELEMETRY_TICK_MS)).await;
    }
}

fn raft_config(t: &RaftTuning) -> Result<Arc<openraft::Config>, NodeError> {
    let config = openraft::Config {
        cluster_name: "boxoffice".into(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_min_ms,
        election_timeout_max: t.election_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_every_logs),
        max_in_snapshot_log_to_keep: t.logs_kept_after_snapshot,
        ..Default::default()
    };
    config.validate().map(Arc::new).map_err(|e| NodeError::Raft(e.to_string()))
}

async fn load_identity(kv: &dyn Kv, node_id: NodeId) -> Result<NodeIdentity, NodeError> {
    let tree = kv.tree(raft_store::NODE_TREE).map_err(storage_err)?;
    if let Some(bytes) = tree.get(&[raft_store::NODE_IDENTITY]).map_err(storage_err)? {
        let stored: NodeIdentity = raft_store::decode(&bytes).map_err(storage_err)?;
        if stored.node_id != node_id {
            return Err(NodeError::Identity(format!(
                "this data directory belongs to node {}, not node {node_id}",
                stored.node_id
            )));
        }
        return Ok(stored);
    }
    let identity = NodeIdentity { node_id, shard_count: None };
    store_identity(kv, &identity).await?;
    Ok(identity)
}

async fn store_identity(kv: &dyn Kv, identity: &NodeIdentity) -> Result<(), NodeError> {
    let tree = kv.tree(raft_store::NODE_TREE).map_err(storage_err)?;
    let mut batch = raft_store::Batch::default();
    batch.put(vec![raft_store::NODE_IDENTITY], raft_store::encode(identity).map_err(storage_err)?);
    tree.write(batch).map_err(storage_err)?;
    raft_store::flushed(kv).await.map_err(storage_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader_metrics(node: NodeId, term: u64) -> openraft::RaftMetrics<NodeId, raft_store::NodeAddr> {
        let mut m = openraft::RaftMetrics::new_initial(node);
        m.state = ServerState::Leader;
        m.current_leader = Some(node);
        m.current_term = term;
        m
    }

    fn lease() -> ReadLease {
        let config = openraft::Config { election_timeout_min: 600, election_timeout_max: 1_200, ..Default::default() };
        ReadLease::new(1, &config)
    }

    #[test]
    fn a_lease_holds_only_after_a_round_while_leading_in_its_term() {
        let lease = lease();
        let start = tokio::time::Instant::now();
        let m = leader_metrics(1, 3);
        assert_eq!(lease.check_at(&m, start), LeaseCheck::Lapsed, "no round confirmed yet");
        lease.grant(3, start);
        assert_eq!(lease.check_at(&m, start), LeaseCheck::Holds);
        assert_eq!(lease.check_at(&leader_metrics(1, 4), start), LeaseCheck::Lapsed, "a later term");
        let mut follower = leader_metrics(1, 3);
        follower.state = ServerState::Follower;
        follower.current_leader = Some(2);
        assert_eq!(lease.check_at(&follower, start), LeaseCheck::Lapsed, "no longer leading");
    }

    #[test]
    fn a_lease_ages_then_lapses_within_half_the_followers_lease() {
        let lease = lease();
        let start = tokio::time::Instant::now();
        let m = leader_metrics(1, 3);
        lease.grant(3, start);
        let at = |ms| lease.check_at(&m, start + Duration::from_millis(ms));
        assert_eq!(at(100), LeaseCheck::Holds);
        assert_eq!(at(200), LeaseCheck::Aging, "older than a quarter of its length");
        assert_eq!(at(599), LeaseCheck::Aging);
        assert_eq!(at(600), LeaseCheck::Lapsed, "half of election_timeout_max");
        // A round that started earlier never shortens a later one.
        lease.grant(3, start - Duration::from_millis(300));
        assert_eq!(at(599), LeaseCheck::Aging);
        lease.grant(3, start + Duration::from_millis(500));
        assert_eq!(at(1_000), LeaseCheck::Aging);
    }

    #[test]
    fn one_caller_queues_a_renewal_until_it_is_done() {
        let lease = lease();
        assert!(lease.start_renewal());
        assert!(!lease.start_renewal());
        lease.renewal_done();
        assert!(lease.start_renewal());
    }
}
