//! Starting and stopping a node, and the groups on it: opening a group (its Raft instance and the
//! tasks that serve it), initializing its first membership, dropping a copy moved away.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;
use raft_store::{
    ColdStore, Command, GroupId, GroupSnapshot, LogStore, NodeId, Outcome, Proposal, Raft, StateMachineStore,
};

use super::barrier::ReadBarrier;
use super::batcher::Batcher;
use super::duties::{admission_duty, archive_duty, election_nudge, expire_duty, LeaderDuty};
use super::error::{NodeError, ProposeError, TransferError};
use super::handoff::Handoff;
use super::identity::IdentityStore;
use super::setup::{group_config, NodeSetup};
use super::status::telemetry_duty;
use super::{Group, Node};
use crate::network::NetworkFactory;

/// How long a node alone waits for its groups' first leaders.
const BOOTSTRAP_LEADER_WAIT_MS: u64 = 30_000;
/// How often `storage_failure` looks at the storage.
const STORAGE_CHECK_MS: u64 = 250;

/// Whether the logs have a store of their own (production), not the state's (tests, simulation).
fn separate(kv: &Arc<dyn raft_store::Kv>, log_kv: &Arc<dyn raft_store::Kv>) -> bool {
    !std::ptr::addr_eq(Arc::as_ptr(kv), Arc::as_ptr(log_kv))
}

impl Node {
    /// Opens the node's database and starts every group found on it.
    pub async fn start(setup: NodeSetup) -> Result<Arc<Node>, NodeError> {
        if separate(&setup.kv, &setup.log_kv) {
            let moved = raft_store::move_logs(setup.kv.as_ref(), setup.log_kv.as_ref()).await?;
            if moved > 0 {
                tracing::info!(node = setup.node_id, records = moved, "Raft logs moved out of the database");
            }
        }
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
            log_kv: setup.log_kv,
            client: setup.client,
            config,
            archive_after_ms: setup.tuning.archive_after_ms,
            clock: setup.clock,
            identity,
            groups: RwLock::new(BTreeMap::new()),
            damaged: RwLock::new(BTreeMap::new()),
            group_lock: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            votes_embargoed_until,
            transfers: Mutex::default(),
            backups: Mutex::default(),
            disk: Mutex::default(),
            snapshot_builds: Arc::new(tokio::sync::Semaphore::new(1)),
        });
        node.open_stored_groups().await?;
        node.drop_orphaned_logs().await?;
        node.spawn(telemetry_duty(Arc::downgrade(&node)));
        tracing::info!(node = node.id, shards = ?node.shard_count(), groups = node.group_ids().len(), "node started");
        Ok(node)
    }

    /// Starts every group whose tree is on disk, once this node has joined a cluster. A group
    /// that does not open (a damaged record) stays stopped and is reported (`damaged_groups`); the
    /// others start. Its other replicas serve it meanwhile, and `boxoffice cluster repair` rebuilds
    /// this copy from them.
    async fn open_stored_groups(self: &Arc<Self>) -> Result<(), NodeError> {
        if self.shard_count().is_none() {
            return Ok(());
        }
        for name in self.kv.tree_names()? {
            if let Some(group) = raft_store::parse_group_tree(&name) {
                if let Err(e) = self.ensure_group(group).await {
                    tracing::error!(
                        node = self.id,
                        %group,
                        error = %e,
                        "this copy of the group is damaged and stays stopped; rebuild it from the other \
                         replicas with `boxoffice cluster repair --id {} --group {group}`",
                        self.id
                    );
                }
            }
        }
        Ok(())
    }

    /// Drops the logs of groups this node no longer hosts: a crash between the two halves of
    /// `drop_group` (state first, then log) leaves one behind.
    async fn drop_orphaned_logs(&self) -> Result<(), NodeError> {
        if !separate(&self.kv, &self.log_kv) {
            return Ok(());
        }
        let hosted: Vec<String> = self.kv.tree_names()?;
        let mut dropped = false;
        for name in self.log_kv.tree_names()? {
            if raft_store::parse_group_tree(&name).is_some() && !hosted.contains(&name) {
                tracing::info!(node = self.id, tree = %name, "dropping the log of a group no longer hosted here");
                self.log_kv.drop_tree(&name)?;
                dropped = true;
            }
        }
        if dropped {
            raft_store::flushed(self.log_kv.as_ref()).await?;
        }
        Ok(())
    }

    /// The groups whose copy here did not open, and why.
    pub fn damaged_groups(&self) -> BTreeMap<GroupId, String> {
        self.damaged.read().map(|d| d.clone()).unwrap_or_default()
    }

    /// Resolves once the node's storage has failed a flush. It then refuses every later flush, so
    /// nothing written from then on can become durable: the process should stop, and its
    /// supervisor restart it (a restart finds what was durable).
    pub async fn storage_failure(&self) -> String {
        loop {
            if let Some(e) = self.kv.failure().or_else(|| self.log_kv.failure()) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(STORAGE_CHECK_MS)).await;
        }
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
        let group = match self.open_group(id, shard_count).await {
            Ok(group) => group,
            Err(e) => {
                if let Ok(mut damaged) = self.damaged.write() {
                    damaged.insert(id, e.to_string());
                }
                return Err(e);
            }
        };
        self.insert_group(group.clone());
        Ok(group)
    }

    fn insert_group(&self, group: Arc<Group>) {
        if let Ok(mut damaged) = self.damaged.write() {
            damaged.remove(&group.id);
        }
        if let Ok(mut groups) = self.groups.write() {
            groups.insert(group.id, group.clone());
        }
        tracing::info!(node = self.id, group = %group.id, "group started");
    }

    /// Writes a restored group's first state (see `backup.rs`) and starts the group from it.
    pub(super) async fn seed_group(
        self: &Arc<Self>,
        id: GroupId,
        cold: &ColdStore,
        snapshot: &GroupSnapshot,
    ) -> Result<(), ProposeError> {
        let shard_count = self.shard_count().ok_or(ProposeError::NotJoined)?;
        let _creating = self.group_lock.lock().await;
        if self.group(id).is_some() {
            return Err(TransferError::Occupied { group: id }.into());
        }
        let log = LogStore::new(self.log_kv.clone(), self.log_kv.tree(&raft_store::group_tree(id))?);
        if !log.is_empty()? {
            return Err(TransferError::Occupied { group: id }.into());
        }
        let tree = self.kv.tree(&raft_store::group_tree(id))?;
        StateMachineStore::seed(self.kv.as_ref(), tree.as_ref(), cold, snapshot).await?;
        let group = self.open_group(id, shard_count).await?;
        self.insert_group(group);
        Ok(())
    }

    async fn open_group(self: &Arc<Self>, id: GroupId, shard_count: u32) -> Result<Arc<Group>, ProposeError> {
        let tree = self.kv.tree(&raft_store::group_tree(id))?;
        StateMachineStore::mark_hosted(self.kv.as_ref(), tree.as_ref()).await?;
        let log = LogStore::new(self.log_kv.clone(), self.log_kv.tree(&raft_store::group_tree(id))?);
        let sm = StateMachineStore::open(self.kv.clone(), tree, id, shard_count)?
            .sharing_builds(self.snapshot_builds.clone());
        let state = sm.state();
        let network = NetworkFactory::new(id, self.client.clone());
        let raft = Raft::new(self.id, group_config(&self.config, id), network, log, sm).await?;
        // Spawned in this order (batcher, barrier, duties, nudge): a recorded simulation seed
        // replays the same run only while tasks are spawned in the same order.
        let handoff = Handoff::default();
        let (batcher, batching) = Batcher::spawn(id, raft.clone(), self.clock.clone(), handoff.clone());
        let (barrier, confirming) = ReadBarrier::spawn(id, self.id, raft.clone(), &self.config, handoff.clone());
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
        Ok(Arc::new(Group { id, raft, state, batcher, barrier, tasks, last_leader_contact_ms, handoff }))
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

    /// Stops a group here and deletes its copy: after the group was moved away, or to rebuild a
    /// damaged copy from the other replicas.
    pub async fn drop_group(&self, id: GroupId) -> Result<(), ProposeError> {
        let _removing = self.group_lock.lock().await;
        self.abandon_transfer(id);
        let group = self.groups.write().map_err(|_| ProposeError::LockPoisoned)?.remove(&id);
        let damaged = self.damaged.write().map_err(|_| ProposeError::LockPoisoned)?.remove(&id).is_some();
        if let Some(group) = &group {
            for task in &group.tasks {
                task.abort();
            }
            group.raft.shutdown().await.map_err(ProposeError::Shutdown)?;
        }
        if group.is_some() || damaged {
            // The state first (with its `HOSTED` mark): a crash in between leaves a log the next
            // start drops (`drop_orphaned_logs`), never a group that opens half dropped.
            self.kv.drop_tree(&raft_store::group_tree(id))?;
            raft_store::ColdStore::drop_all(self.kv.as_ref(), id)?;
            raft_store::flushed(self.kv.as_ref()).await?;
            self.log_kv.drop_tree(&raft_store::group_tree(id))?;
            raft_store::flushed(self.log_kv.as_ref()).await?;
            tracing::info!(node = self.id, group = %id, damaged, "group dropped");
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
        let damaged = self.damaged_groups();
        let groups = std::iter::once(GroupId::META).chain((0..shard_count).map(GroupId::shard));
        // A damaged group has no other replica to be rebuilt from: it stays stopped, reported.
        for group in groups.filter(|g| !damaged.contains_key(g)) {
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
