//! Starting and stopping a node, and the groups on it: opening a group (its Raft instance and the
//! tasks that serve it), initializing its first membership, dropping a copy moved away.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;
use raft_store::{Command, GroupId, LogStore, NodeId, Outcome, Proposal, Raft, StateMachineStore};

use super::barrier::ReadBarrier;
use super::batcher::Batcher;
use super::duties::{admission_duty, archive_duty, election_nudge, expire_duty, LeaderDuty};
use super::error::{NodeError, ProposeError};
use super::identity::IdentityStore;
use super::setup::NodeSetup;
use super::status::telemetry_duty;
use super::{Group, Node};
use crate::network::NetworkFactory;

/// How long a node alone waits for its groups' first leaders.
const BOOTSTRAP_LEADER_WAIT_MS: u64 = 30_000;

impl Node {
    /// Opens the node's database and starts every group found on it.
    pub async fn start(setup: NodeSetup) -> Result<Arc<Node>, NodeError> {
        let identity = IdentityStore::load(setup.kv.clone(), setup.node_id).await?;
        let config = setup.tuning.raft_config()?;
        // Before it stopped, this node may have acknowledged a heartbeat that a leader now counts
        // on for its read lease; the promise not to vote for another leader that came with it was
        // kept in memory and is gone. Keeping it from the restart on, for as long as a follower
        // keeps it, leaves every such lease sound (see `ReadLease`).
        let restarted = identity.shard_count().is_some();
        let votes_embargoed_until = tokio::time::Instant::now()
            + if restarted { Duration::from_millis(config.election_timeout_max) } else { Duration::ZERO };
        let node = Arc::new(Node {
            id: setup.node_id,
            advertise_addr: setup.advertise_addr,
            kv: setup.kv,
            client: setup.client,
            config,
            archive_after_ms: setup.tuning.archive_after_ms,
            clock: setup.clock,
            identity,
            groups: RwLock::new(BTreeMap::new()),
            group_lock: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            votes_embargoed_until,
        });
        node.open_stored_groups().await?;
        node.spawn(telemetry_duty(Arc::downgrade(&node)));
        tracing::info!(node = node.id, shards = ?node.shard_count(), groups = node.group_ids().len(), "node started");
        Ok(node)
    }

    /// Starts every group whose tree is on disk, once this node has joined a cluster.
    async fn open_stored_groups(self: &Arc<Self>) -> Result<(), NodeError> {
        if self.shard_count().is_none() {
            return Ok(());
        }
        for name in self.kv.tree_names()? {
            if let Some(group) = raft_store::parse_group_tree(&name) {
                self.ensure_group(group).await.map_err(|source| NodeError::OpenGroup { group, source })?;
            }
        }
        Ok(())
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(handle);
        }
    }

    /// The group, started here if it is not yet (empty, waiting for its leader or an init).
    pub async fn ensure_group(self: &Arc<Self>, id: GroupId) -> Result<Arc<Group>, ProposeError> {
        if let Some(group) = self.group(id) {
            return Ok(group);
        }
        let shard_count = self.shard_count().ok_or(ProposeError::NotJoined)?;
        if id.as_shard().is_some_and(|s| s >= shard_count) {
            return Err(ProposeError::UnknownGroup(id));
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
        let tree = self.kv.tree(&raft_store::group_tree(id))?;
        let log = LogStore::new(self.kv.clone(), tree.clone());
        let sm = StateMachineStore::open(self.kv.clone(), tree, id, shard_count)?;
        let state = sm.state();
        let network = NetworkFactory::new(id, self.client.clone());
        let raft = Raft::new(self.id, self.config.clone(), network, log, sm).await?;
        // Spawned in this order (batcher, barrier, duties, nudge): a recorded simulation seed
        // replays the same run only while tasks are spawned in the same order.
        let (batcher, batching) = Batcher::spawn(id, raft.clone(), self.clock.clone());
        let (barrier, confirming) = ReadBarrier::spawn(id, self.id, raft.clone(), &self.config);
        let mut tasks = vec![batching, confirming];
        if !id.is_meta() {
            let duty = LeaderDuty {
                node_id: self.id,
                raft: raft.clone(),
                state: state.clone(),
                batcher: batcher.clone(),
                clock: self.clock.clone(),
                archive_after_ms: self.archive_after_ms,
            };
            tasks.push(tokio::spawn(expire_duty(duty.clone())));
            tasks.push(tokio::spawn(archive_duty(duty.clone())));
            tasks.push(tokio::spawn(admission_duty(duty)));
        }
        let election_max = Duration::from_millis(self.config.election_timeout_max);
        tasks.push(tokio::spawn(election_nudge(self.id, raft.clone(), election_max)));
        let last_leader_contact_ms = AtomicI64::new(i64::MIN);
        Ok(Arc::new(Group { id, raft, state, batcher, barrier, tasks, last_leader_contact_ms }))
    }

    /// Starts the group here and makes `members` its first membership, unless it already has one.
    pub async fn init_group(
        self: &Arc<Self>,
        id: GroupId,
        members: BTreeMap<NodeId, String>,
    ) -> Result<(), ProposeError> {
        let group = self.ensure_group(id).await?;
        if group.raft.is_initialized().await? {
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> =
            members.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
        match group.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another member initialized it first: that is the same outcome.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ProposeError::Initialize(Box::new(e))),
        }
    }

    /// Stops a group here and deletes its copy. Called after the group was moved away.
    pub async fn drop_group(&self, id: GroupId) -> Result<(), ProposeError> {
        let _removing = self.group_lock.lock().await;
        let group = self.groups.write().map_err(|_| ProposeError::LockPoisoned)?.remove(&id);
        if let Some(group) = group {
            for task in &group.tasks {
                task.abort();
            }
            group.raft.shutdown().await.map_err(ProposeError::Shutdown)?;
            self.kv.drop_tree(&raft_store::group_tree(id))?;
            raft_store::ColdStore::drop_all(self.kv.as_ref(), id)?;
            raft_store::flushed(self.kv.as_ref()).await?;
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
                self.join(shard_count).await.map_err(NodeError::Join)?;
                shard_count
            }
        };
        let me = BTreeMap::from([(self.id, self.advertise_addr.clone())]);
        let groups = std::iter::once(GroupId::META).chain((0..shard_count).map(GroupId::shard));
        for group in groups {
            self.init_group(group, me.clone()).await.map_err(|source| NodeError::InitGroup { group, source })?;
        }
        self.wait_for_leaders(Duration::from_millis(BOOTSTRAP_LEADER_WAIT_MS)).await?;
        let layout =
            Command::InitLayout { shard_count, replication: 1, nodes: vec![(self.id, self.advertise_addr.clone())] };
        match self.propose(GroupId::META, Proposal::internal(layout), false).await {
            Ok(Outcome::Layout(_)) => Ok(()),
            Ok(other) => Err(NodeError::UnexpectedOutcome(Box::new(other))),
            Err(e) => Err(NodeError::InitLayout(e)),
        }
    }

    /// Waits until every group hosted here has a leader.
    pub async fn wait_for_leaders(&self, timeout: Duration) -> Result<(), NodeError> {
        for group in self.group_ids() {
            let Some(g) = self.group(group) else { continue };
            g.raft
                .wait(Some(timeout))
                .metrics(|m| m.current_leader.is_some(), "leader elected")
                .await
                .map_err(|source| NodeError::NoLeader { group, source })?;
        }
        Ok(())
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
}
