//! A node: the Raft groups one process hosts on one database — the meta group and a fixed number
//! of event shards — and the leader's periodic duties.
//!
//! Architecture invariant: the node stamps a command's time when it proposes it as leader, and
//! nowhere else; apply (in raft-store) reads no clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use raft_store::{
    Answer, ChangesPage, Command, GroupId, GroupState, Kv, LogStore, NodeId, Outcome, Proposal, Query, Raft, Request,
    RequestId, StateMachineStore,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::network::{NetworkFactory, RaftRpc, RaftRpcReply, Transport};

/// How often each shard's leader looks for due holds to expire.
const EXPIRE_TICK_MS: u64 = 500;
/// Proposals in one log entry at most.
const ENTRY_PROPOSALS_MAX: usize = 512;
/// Proposals waiting for an entry, per group; a full queue makes proposers wait.
const PROPOSAL_QUEUE_MAX: usize = 16_384;
/// Entries a group's batcher has proposed and not yet seen applied. While they are in flight, new
/// proposals gather into the next entry: that is how one flush carries many commands.
const ENTRIES_IN_FLIGHT_MAX: usize = 2;
/// How often group and storage gauges are refreshed.
const TELEMETRY_TICK_MS: u64 = 2_000;

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
    /// Used when the node is created; afterwards the stored value wins.
    pub shard_count: u32,
    pub kv: Arc<dyn Kv>,
    pub transport: Arc<dyn Transport>,
    pub tuning: RaftTuning,
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

/// Why a proposal or a linearizable read did not happen here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader of {group}; leader is {leader:?}")]
    NotLeader { group: GroupId, leader: Option<NodeId>, leader_addr: Option<String> },
    #[error("this node does not host {0}")]
    UnknownGroup(GroupId),
    #[error("raft stopped: {0}")]
    Fatal(String),
}

/// What a node was created as; checked at every start so a data directory is never reused by
/// another node or with another shard count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NodeIdentity {
    node_id: NodeId,
    shard_count: u32,
}

pub struct Group {
    pub id: GroupId,
    pub raft: Raft,
    pub state: Arc<GroupState>,
    batcher: mpsc::Sender<Pending>,
}

/// A proposal waiting for its group's next log entry, and where its outcome goes.
struct Pending {
    proposal: Proposal,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
}

pub struct Node {
    id: NodeId,
    advertise_addr: String,
    shard_count: u32,
    kv: Arc<dyn Kv>,
    groups: BTreeMap<GroupId, Group>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn storage_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Storage(e.to_string())
}

impl Node {
    /// Opens every group of the node from its database and starts their Raft instances.
    pub async fn start(setup: NodeSetup) -> Result<Arc<Node>, NodeError> {
        let identity = load_identity(setup.kv.as_ref(), setup.node_id, setup.shard_count).await?;
        let config = raft_config(&setup.tuning)?;
        let mut groups = BTreeMap::new();
        let mut batchers = Vec::new();
        let group_ids = std::iter::once(GroupId::META).chain((0..identity.shard_count).map(GroupId::shard));
        for id in group_ids {
            let tree = setup.kv.tree(&raft_store::group_tree(id)).map_err(storage_err)?;
            let log = LogStore::new(setup.kv.clone(), tree.clone());
            let sm = StateMachineStore::open(setup.kv.clone(), tree, id, identity.shard_count).map_err(storage_err)?;
            let state = sm.state();
            let network = NetworkFactory::new(id, setup.transport.clone());
            let raft = Raft::new(setup.node_id, config.clone(), network, log, sm)
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))?;
            let (batcher, queue) = mpsc::channel(PROPOSAL_QUEUE_MAX);
            batchers.push(tokio::spawn(run_batcher(id, raft.clone(), queue)));
            groups.insert(id, Group { id, raft, state, batcher });
        }
        let node = Arc::new(Node {
            id: setup.node_id,
            advertise_addr: setup.advertise_addr,
            shard_count: identity.shard_count,
            kv: setup.kv,
            groups,
            tasks: Mutex::new(batchers),
        });
        node.spawn_duties();
        tracing::info!(node = node.id, shards = node.shard_count, "node started");
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    pub fn group(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(&id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Makes this node the only member of every group not yet initialized (a new single-node
    /// cluster, or `boxoffice dev`). Safe to call on every start.
    pub async fn bootstrap_single(&self) -> Result<(), NodeError> {
        let members = BTreeMap::from([(self.id, BasicNode { addr: self.advertise_addr.clone() })]);
        for group in self.groups.values() {
            let initialized = group.raft.is_initialized().await.map_err(|e| NodeError::Raft(e.to_string()))?;
            if !initialized {
                group.raft.initialize(members.clone()).await.map_err(|e| NodeError::Raft(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Waits until every group has a leader.
    pub async fn wait_for_leaders(&self, timeout: Duration) -> Result<(), NodeError> {
        for group in self.groups.values() {
            group
                .raft
                .wait(Some(timeout))
                .metrics(|m| m.current_leader.is_some(), "leader elected")
                .await
                .map_err(|e| NodeError::Timeout(format!("{} has no leader: {e}", group.id)))?;
        }
        Ok(())
    }

    fn raft(&self, group: GroupId) -> Result<&Raft, ProposeError> {
        self.groups.get(&group).map(|g| &g.raft).ok_or(ProposeError::UnknownGroup(group))
    }

    fn not_leader(&self, group: GroupId, leader: Option<NodeId>, node: Option<BasicNode>) -> ProposeError {
        not_leader(group, leader, node)
    }

    /// Proposes a command as this group's leader and waits for its outcome. The command joins the
    /// group's next log entry, which the leader stamps with its clock.
    pub async fn propose(
        &self,
        group: GroupId,
        request_id: Option<RequestId>,
        fingerprint: u64,
        command: Command,
    ) -> Result<Outcome, ProposeError> {
        let batcher = &self.groups.get(&group).ok_or(ProposeError::UnknownGroup(group))?.batcher;
        let name = command.name();
        let started = std::time::Instant::now();
        let (reply, outcome) = oneshot::channel();
        let pending = Pending { proposal: Proposal { request_id, fingerprint, command }, reply };
        if batcher.send(pending).await.is_err() {
            return Err(ProposeError::Fatal(format!("the batcher of {group} stopped")));
        }
        let result =
            outcome.await.unwrap_or_else(|_| Err(ProposeError::Fatal(format!("the batcher of {group} stopped"))));
        metrics::histogram!("boxoffice_propose_seconds", "command" => name).record(started.elapsed().as_secs_f64());
        result
    }

    /// Reads from a group's applied state; `linearizable` first confirms leadership and waits for
    /// everything committed before the read to be applied.
    pub async fn read(&self, group: GroupId, query: &Query, linearizable: bool) -> Result<Answer, ProposeError> {
        let raft = self.raft(group)?;
        if linearizable {
            if let Err(e) = raft.ensure_linearizable().await {
                return Err(match e.into_api_error() {
                    Some(openraft::error::CheckIsLeaderError::ForwardToLeader(f)) => {
                        self.not_leader(group, f.leader_id, f.leader_node)
                    }
                    Some(other) => self.not_leader(group, None, None).with_detail(other.to_string()),
                    None => ProposeError::Fatal("raft stopped".into()),
                });
            }
        }
        let state = &self.groups[&group].state;
        let applied = state.read();
        Ok(applied.machine.query(query, now_ms()))
    }

    /// Change records of a shard after `after_index`, waiting up to `wait` for one to be applied.
    pub async fn changes(
        &self,
        group: GroupId,
        after_index: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangesPage, ProposeError> {
        let state = &self.groups.get(&group).ok_or(ProposeError::UnknownGroup(group))?.state;
        let mut applied = state.watch_applied();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let page = match state.read().machine.query(&Query::Changes { after_index, limit }, now_ms()) {
                Answer::Changes(page) => page,
                other => return Err(ProposeError::Fatal(format!("unexpected answer {other:?}"))),
            };
            let empty = matches!(&page, ChangesPage::Records { changes, .. } if changes.is_empty());
            if !empty {
                return Ok(page);
            }
            if tokio::time::timeout_at(deadline, applied.changed()).await.is_err() {
                return Ok(page);
            }
        }
    }

    /// Dispatches a Raft message from a peer to the group it is for.
    pub async fn handle_rpc(&self, rpc: RaftRpc) -> RaftRpcReply {
        let Some(group) = self.groups.get(&rpc.group()) else { return RaftRpcReply::UnknownGroup };
        match rpc {
            RaftRpc::Append { req, .. } => RaftRpcReply::Append(group.raft.append_entries(req).await),
            RaftRpc::Vote { req, .. } => RaftRpcReply::Vote(group.raft.vote(req).await),
            RaftRpc::Snapshot { vote, meta, data, .. } => {
                let snapshot = raft_store::Snapshot { meta, snapshot: Box::new(data) };
                RaftRpcReply::Snapshot(group.raft.install_full_snapshot(vote, snapshot).await)
            }
        }
    }

    /// Leader and applied index of every group, as this node sees them.
    pub fn health(&self) -> Vec<api::GroupHealth> {
        self.groups
            .values()
            .map(|g| {
                let metrics = g.raft.metrics().borrow().clone();
                api::GroupHealth {
                    group: g.id,
                    leader: metrics.current_leader,
                    last_applied_index: metrics.last_applied.map_or(0, |l| l.index),
                }
            })
            .collect()
    }

    /// Stops the periodic duties and every Raft instance. The database flushes when dropped.
    pub async fn shutdown(&self) {
        for task in self.tasks.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default() {
            task.abort();
        }
        for group in self.groups.values() {
            if let Err(e) = group.raft.shutdown().await {
                tracing::warn!(group = %group.id, error = %e, "raft shutdown");
            }
        }
        tracing::info!(node = self.id, "node stopped");
    }

    fn spawn_duties(self: &Arc<Self>) {
        let mut tasks = Vec::new();
        for group in self.groups.keys().filter(|g| !g.is_meta()) {
            tasks.push(tokio::spawn(expire_duty(Arc::downgrade(self), *group)));
        }
        tasks.push(tokio::spawn(telemetry_duty(Arc::downgrade(self))));
        if let Ok(mut t) = self.tasks.lock() {
            t.extend(tasks);
        }
    }

    fn is_leader(&self, group: GroupId) -> bool {
        self.groups.get(&group).is_some_and(|g| g.raft.metrics().borrow().state == ServerState::Leader)
    }

    fn record_telemetry(&self) {
        for g in self.groups.values() {
            let m = g.raft.metrics().borrow().clone();
            let group = g.id.to_string();
            metrics::gauge!("boxoffice_raft_is_leader", "group" => group.clone())
                .set(f64::from(u8::from(m.state == ServerState::Leader)));
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

impl ProposeError {
    fn with_detail(self, detail: String) -> ProposeError {
        tracing::debug!(%detail, "read refused");
        self
    }
}

fn not_leader(group: GroupId, leader: Option<NodeId>, node: Option<BasicNode>) -> ProposeError {
    ProposeError::NotLeader { group, leader, leader_addr: node.map(|n| n.addr) }
}

/// Turns the proposals queued for a group into log entries: it takes every proposal waiting (up
/// to a bound) into one entry, stamps it with this node's clock, and proposes it. At most
/// `ENTRIES_IN_FLIGHT_MAX` entries are in flight; while they are, the next one fills up.
async fn run_batcher(group: GroupId, raft: Raft, mut queue: mpsc::Receiver<Pending>) {
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
        tokio::spawn(async move {
            let (proposals, replies): (Vec<Proposal>, Vec<_>) =
                batch.into_iter().map(|p| (p.proposal, p.reply)).unzip();
            let count = proposals.len();
            let result = raft.client_write(Request { time_ms: now_ms(), proposals }).await;
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
                        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                            ProposeError::Fatal(e.to_string())
                        }
                        RaftError::Fatal(e) => ProposeError::Fatal(e.to_string()),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

/// Proposes `Expire` whenever this node leads the shard and a hold or payment is due, so expired
/// seats reach the change feed even when no other command arrives.
async fn expire_duty(node: std::sync::Weak<Node>, group: GroupId) {
    loop {
        tokio::time::sleep(Duration::from_millis(EXPIRE_TICK_MS)).await;
        let Some(node) = node.upgrade() else { return };
        if !node.is_leader(group) {
            continue;
        }
        let due = node.groups[&group].state.read().machine.has_due_deadlines(now_ms());
        if due {
            match node.propose(group, None, 0, Command::Expire).await {
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

async fn load_identity(kv: &dyn Kv, node_id: NodeId, shard_count: u32) -> Result<NodeIdentity, NodeError> {
    let tree = kv.tree(raft_store::NODE_TREE).map_err(storage_err)?;
    let key = [raft_store::NODE_IDENTITY];
    if let Some(bytes) = tree.get(&key).map_err(storage_err)? {
        let stored: NodeIdentity = raft_store::decode(&bytes).map_err(storage_err)?;
        if stored.node_id != node_id {
            return Err(NodeError::Identity(format!(
                "this data directory belongs to node {}, not node {node_id}",
                stored.node_id
            )));
        }
        if stored.shard_count != shard_count {
            tracing::warn!(
                stored = stored.shard_count,
                asked = shard_count,
                "shard count is fixed at creation; using the stored one"
            );
        }
        return Ok(stored);
    }
    if shard_count == 0 {
        return Err(NodeError::Identity("a cluster needs at least one shard".into()));
    }
    let identity = NodeIdentity { node_id, shard_count };
    let mut batch = raft_store::Batch::default();
    batch.put(key.to_vec(), raft_store::encode(&identity).map_err(storage_err)?);
    tree.write(batch).map_err(storage_err)?;
    raft_store::flushed(kv).await.map_err(storage_err)?;
    Ok(identity)
}
