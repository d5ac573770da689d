//! openraft's state machine storage for one group.
//!
//! The applied state has two halves: the hot state in memory ([`Machine`]), which reaches disk in
//! snapshots, and the cold records ([`ColdStore`]: remembered outcomes, the archive), which apply
//! writes to disk as it goes. A restarted node loads its last snapshot and openraft re-applies the
//! committed log after it; the cold store's rules (see `cold.rs`) keep the re-applied entries
//! from seeing their own earlier writes.
//!
//! A snapshot is the encoded machine plus a view of the cold records at its index
//! ([`GroupSnapshot`]): building one copies the machine in O(1) under the lock and encodes it
//! off the runtime; it is written and flushed before openraft may purge the log it covers.

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Semaphore};

use crate::codec;
use crate::cold::{ColdError, ColdStage, ColdStore};
use crate::command::{Answer, Proposal, Query, Refusal};
use crate::ids::GroupId;
use crate::keys;
use crate::kv::{flushed, Batch, Kv, KvTree};
use crate::machine::Machine;
use crate::raft_types::{Entry, LogId, Outcomes, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::snapshot::GroupSnapshot;

/// Expired cold records the collector deletes after one snapshot at most; the rest wait for the
/// next one, so a backlog never makes one snapshot slow.
const COLLECT_RECORDS_PER_SNAPSHOT_MAX: usize = 200_000;

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

/// What apply has produced so far.
pub struct Applied {
    pub machine: Machine,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// The applied state of one group, shared between openraft's apply and the node's readers.
pub struct GroupState {
    group: GroupId,
    applied: RwLock<Applied>,
    cold: Arc<ColdStore>,
    /// The last applied log index, for readers that wait for their write to be applied.
    applied_index: watch::Sender<u64>,
    /// The newest snapshot, shared with the state machine store that keeps it.
    latest: Arc<Mutex<Option<Latest>>>,
}

impl GroupState {
    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        // Apply never panics while holding the lock except on a broken invariant, which already
        // stops the node; readers may still look.
        self.applied.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The group's cold records: where a snapshot received from a peer or a backup is staged.
    pub fn cold(&self) -> &Arc<ColdStore> {
        &self.cold
    }

    /// Answers `query` from the applied state (see [`Machine::query`]).
    pub fn query(&self, query: &Query, passed_ms: i64) -> Result<Answer, ColdError> {
        self.read().machine.query(query, passed_ms, self.cold.as_ref())
    }

    /// The refusal apply would certainly give `proposal` next (see [`Machine::refusal`]).
    pub fn refusal(&self, proposal: &Proposal, now_ms: i64, passed_ms: i64) -> Result<Option<Refusal>, ColdError> {
        self.read().machine.refusal(proposal, now_ms, passed_ms, self.cold.as_ref())
    }

    /// Follows the last applied log index.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    /// The newest snapshot (built here or installed), to hand to a backup. Its cold records stay
    /// readable while it lives.
    pub fn latest_snapshot(&self) -> Option<GroupSnapshot> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let index = latest.meta.last_log_id.map_or(0, |l| l.index);
        Some(GroupSnapshot::new(latest.meta, latest.time_ms, latest.hot, self.cold.view(index, latest.time_ms)))
    }
}

/// A snapshot as kept in the group's tree. Its cold half is the generation the tree names.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    time_ms: i64,
    hot: Vec<u8>,
}

/// The newest snapshot's metadata and hot half, kept so handing it to a peer reads no disk.
#[derive(Clone)]
struct Latest {
    meta: SnapshotMeta,
    time_ms: i64,
    hot: Arc<Vec<u8>>,
}

impl Latest {
    fn snapshot(&self, cold: &ColdStore) -> Snapshot {
        let index = self.meta.last_log_id.map_or(0, |l| l.index);
        let data =
            GroupSnapshot::new(self.meta.clone(), self.time_ms, self.hot.clone(), cold.view(index, self.time_ms));
        Snapshot { meta: self.meta.clone(), snapshot: Box::new(data) }
    }
}

pub struct StateMachineStore {
    state: Arc<GroupState>,
    kv: Arc<dyn Kv>,
    tree: Arc<dyn KvTree>,
    latest: Arc<Mutex<Option<Latest>>>,
    /// Snapshot builds that may run at once; shared by a node's groups (see [`Self::sharing_builds`]).
    slots: Arc<Semaphore>,
}

impl StateMachineStore {
    /// Opens a group's state machine: from its last snapshot if there is one, else empty. A
    /// snapshot that does not decode is an error: the caller reports the group as damaged and
    /// leaves it stopped, never starts it empty.
    pub fn open(
        kv: Arc<dyn Kv>,
        tree: Arc<dyn KvTree>,
        group: GroupId,
        shard_count: u32,
    ) -> Result<StateMachineStore, StorageError> {
        let cold = ColdStore::open(kv.clone(), tree.as_ref(), group).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let (applied, latest) = match read_snapshot(tree.as_ref())? {
            Some(stored) => {
                let machine = Machine::decode(&stored.hot).map_err(|e| snap_err(ErrorVerb::Read, e))?;
                if machine.group() != group {
                    let e =
                        std::io::Error::other(format!("snapshot of {} found in the tree of {group}", machine.group()));
                    return Err(snap_err(ErrorVerb::Read, e));
                }
                cold.snapshot_durable(stored.time_ms);
                let applied = Applied {
                    machine,
                    last_applied: stored.meta.last_log_id,
                    membership: stored.meta.last_membership.clone(),
                };
                let latest = Latest { meta: stored.meta, time_ms: stored.time_ms, hot: Arc::new(stored.hot) };
                (applied, Some(latest))
            }
            None => {
                let applied = Applied {
                    machine: Machine::new(group, shard_count),
                    last_applied: None,
                    membership: StoredMembership::default(),
                };
                (applied, None)
            }
        };
        let index = applied.last_applied.map_or(0, |l| l.index);
        let latest = Arc::new(Mutex::new(latest));
        let state = Arc::new(GroupState {
            group,
            applied: RwLock::new(applied),
            cold: Arc::new(cold),
            applied_index: watch::channel(index).0,
            latest: latest.clone(),
        });
        Ok(StateMachineStore { state, kv, tree, latest, slots: Arc::new(Semaphore::new(1)) })
    }

    /// Builds this group's snapshots only while it holds one of `slots`, which the node's other
    /// groups share. Groups under the same load reach their snapshot points together; building
    /// all of them at once puts a thread per group encoding megabytes on two cores and leaves
    /// the runtime's workers, which serve every group's appends, a fraction of the CPU.
    pub fn sharing_builds(mut self, slots: Arc<Semaphore>) -> Self {
        self.slots = slots;
        self
    }

    /// Writes a restored group's first state — a rebased snapshot received whole, its cold records
    /// staged in `cold` (see `restore.rs`) — into the group's tree, which must hold no snapshot
    /// yet (the caller checks that the group's log, in its own store, is empty): the snapshot record and the name of its cold generation, durable
    /// together. The group then opens from it as from any snapshot.
    pub async fn seed(
        kv: &dyn Kv,
        tree: &dyn KvTree,
        cold: &ColdStore,
        snapshot: &GroupSnapshot,
    ) -> Result<(), StorageError> {
        if tree.get(&[keys::SNAPSHOT]).map_err(|e| snap_err(ErrorVerb::Write, e))?.is_some() {
            let e = std::io::Error::other(format!("{} already holds data", cold.group()));
            return Err(snap_err(ErrorVerb::Write, e));
        }
        let hot = snapshot.hot().clone();
        let machine = off_runtime(move || Machine::decode(&hot)).await?.map_err(|e| snap_err(ErrorVerb::Read, e))?;
        if machine.group() != cold.group() {
            let e = std::io::Error::other(format!("a restored {} sent to {}", machine.group(), cold.group()));
            return Err(snap_err(ErrorVerb::Write, e));
        }
        let stage = snapshot.take_stage().ok_or_else(|| {
            snap_err(ErrorVerb::Write, std::io::Error::other("a restored snapshot arrives with its records staged"))
        })?;
        let mut batch = Batch::default();
        cold.name_generation(&stage, &mut batch).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let stored =
            StoredSnapshot { meta: snapshot.meta().clone(), time_ms: snapshot.time_ms(), hot: snapshot.hot().to_vec() };
        write_snapshot(kv, tree, &stored, batch).await?;
        let old = cold.switch(stage);
        cold.drop_generation(old).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        tracing::info!(group = %cold.group(), snapshot = %stored.meta.snapshot_id, "restored state written");
        Ok(())
    }

    /// Marks the group's tree as hosted here (see `keys::HOSTED`), durably, unless it is already.
    pub async fn mark_hosted(kv: &dyn Kv, tree: &dyn KvTree) -> Result<(), StorageError> {
        if tree.get(&[keys::HOSTED]).map_err(|e| sm_err(ErrorVerb::Read, e))?.is_some() {
            return Ok(());
        }
        let mut batch = Batch::default();
        batch.put(vec![keys::HOSTED], vec![1]);
        tree.write(batch).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        flushed(kv).await.map_err(|e| sm_err(ErrorVerb::Write, e))
    }

    pub fn state(&self) -> Arc<GroupState> {
        self.state.clone()
    }

    fn latest(&self) -> Option<Latest> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn read_snapshot(tree: &dyn KvTree) -> Result<Option<StoredSnapshot>, StorageError> {
    match tree.get(&[keys::SNAPSHOT]).map_err(|e| snap_err(ErrorVerb::Read, e))? {
        None => Ok(None),
        Some(bytes) => codec::decode(&bytes).map(Some).map_err(|e| snap_err(ErrorVerb::Read, e)),
    }
}

/// Writes a snapshot record (and `batch`'s other keys) to the group's tree and waits until it is
/// durable.
async fn write_snapshot(
    kv: &dyn Kv,
    tree: &dyn KvTree,
    stored: &StoredSnapshot,
    batch: Batch,
) -> Result<(), StorageError> {
    let bytes = codec::encode(stored).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    write_snapshot_record(kv, tree, bytes, batch).await
}

/// Writes an encoded snapshot record (see [`write_snapshot`]) and waits until it is durable.
async fn write_snapshot_record(
    kv: &dyn Kv,
    tree: &dyn KvTree,
    bytes: Vec<u8>,
    mut batch: Batch,
) -> Result<(), StorageError> {
    batch.put(vec![keys::SNAPSHOT], bytes);
    tree.write(batch).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    flushed(kv).await.map_err(|e| snap_err(ErrorVerb::Write, e))
}

/// Runs CPU-heavy work off the runtime's workers (see `blocking.rs`).
async fn off_runtime<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Result<R, StorageError> {
    crate::blocking::off_runtime(work)
        .await
        .ok_or_else(|| snap_err(ErrorVerb::Write, std::io::Error::other("a blocking task panicked")))
}

/// Runs work no one waits on at once on the low-priority background thread (see `blocking.rs`).
async fn in_background<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Result<R, StorageError> {
    crate::blocking::in_background(work)
        .await
        .ok_or_else(|| snap_err(ErrorVerb::Write, std::io::Error::other("a background task panicked")))
}

/// Copies a snapshot's cold records into a new stage of `cold` (a snapshot that arrived without
/// one: this node's own, handed back).
fn restage(cold: &ColdStore, snapshot: &GroupSnapshot) -> Result<ColdStage, StorageError> {
    let mut stage = cold.stage().map_err(|e| sm_err(ErrorVerb::Write, e))?;
    let mut reader = snapshot.reader();
    while let Some(chunk) = reader.next_chunk().map_err(|e| snap_err(ErrorVerb::Read, e))? {
        if let crate::snapshot::SnapshotChunk::Cold(records) = chunk {
            stage.add(&records).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        }
    }
    Ok(stage)
}

pub struct SnapshotBuilder {
    state: Arc<GroupState>,
    kv: Arc<dyn Kv>,
    tree: Arc<dyn KvTree>,
    latest: Arc<Mutex<Option<Latest>>>,
    slots: Arc<Semaphore>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Once the node's build slot is free, the machine is copied under the read lock and encoded
    /// on the low-priority background thread without it. The copy itself is O(1): the machine's collections are persistent and shared with it, and
    /// apply's next writes copy only the paths they touch. Once the snapshot is durable, cold
    /// records that expired before its time are collected (a bounded number per snapshot).
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let waited = tokio::time::Instant::now();
        // Closed never: the semaphore lives as long as any store holding it.
        let _slot = self.slots.acquire().await.map_err(|e| snap_err(ErrorVerb::Write, std::io::Error::other(e)))?;
        let started = tokio::time::Instant::now();
        let (machine, last_applied, membership) = {
            let applied = self.state.read();
            (applied.machine.clone(), applied.last_applied, applied.membership.clone())
        };
        let copied = started.elapsed();
        let time_ms = machine.last_time_ms();
        let snapshot_id = match last_applied {
            // One leader per term (openraft's `single-term-leader`): the term names the leader.
            Some(l) => format!("{}-{}", l.leader_id.term, l.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        // The machine and then the record holding it are encoded on the low-priority background
        // thread: megabytes each, which on a runtime worker, or on a thread of equal priority,
        // would take the CPU from every group's appends.
        let (stored, record) = in_background(move || {
            let hot = machine.encode()?;
            let stored = StoredSnapshot { meta, time_ms, hot };
            let record = codec::encode(&stored)?;
            Ok::<_, codec::CodecError>((stored, record))
        })
        .await?
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let encoded = started.elapsed() - copied;
        write_snapshot_record(self.kv.as_ref(), self.tree.as_ref(), record, Batch::default()).await?;
        let hot_bytes = stored.hot.len();
        let latest = Latest { meta: stored.meta, time_ms, hot: Arc::new(stored.hot) };
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(latest.clone());
        let cold = self.state.cold.clone();
        cold.snapshot_durable(time_ms);
        let collected = off_runtime(move || cold.collect_garbage(COLLECT_RECORDS_PER_SNAPSHOT_MAX))
            .await?
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        tracing::info!(
            group = %self.state.group,
            index = last_applied.map_or(0, |l| l.index),
            bytes = hot_bytes,
            waited_ms = (started - waited).as_millis(),
            copied_us = copied.as_micros(),
            encoded_ms = encoded.as_millis(),
            collected,
            total_ms = started.elapsed().as_millis(),
            "snapshot built"
        );
        metrics::histogram!("boxoffice_snapshot_copy_seconds").record(copied.as_secs_f64());
        Ok(latest.snapshot(&self.state.cold))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.state.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    /// Applies entries in order; each entry's cold writes are stored before the next entry is
    /// applied, so it sees them. A cold store that cannot be read or written stops the group.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcomes>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        let last_index = {
            let mut applied = self.state.write();
            for entry in entries {
                let index = entry.log_id.index;
                applied.last_applied = Some(entry.log_id);
                let outcome = match entry.payload {
                    EntryPayload::Blank => {
                        applied.machine.note_index(index);
                        Outcomes::default()
                    }
                    EntryPayload::Normal(request) => {
                        let done = applied
                            .machine
                            .apply(index, &request, self.state.cold.as_ref())
                            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
                        self.state.cold.write(&done.writes).map_err(|e| sm_err(ErrorVerb::Write, e))?;
                        let (expired_holds, expired_orders) = done.expired;
                        Outcomes { outcomes: done.outcomes, expired_holds, expired_orders }
                    }
                    EntryPayload::Membership(membership) => {
                        applied.machine.note_index(index);
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Outcomes::default()
                    }
                };
                outcomes.push(outcome);
            }
            applied.last_applied.map_or(0, |l| l.index)
        };
        self.state.applied_index.send_replace(last_index);
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            state: self.state.clone(),
            kv: self.kv.clone(),
            tree: self.tree.clone(),
            latest: self.latest.clone(),
            slots: self.slots.clone(),
        }
    }

    /// Snapshots arrive whole through `Raft::install_full_snapshot` (the node's transport
    /// streams them into a `SnapshotWriter`); openraft's own chunked receiving is not used. This
    /// hands out an empty snapshot for callers that replace it with a whole one (openraft's
    /// storage test suite does).
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<GroupSnapshot>, StorageError> {
        let empty = GroupSnapshot::new(SnapshotMeta::default(), 0, Arc::new(Vec::new()), self.state.cold.view(0, 0));
        Ok(Box::new(empty))
    }

    /// Switches the group to a received snapshot: its cold records (staged while they arrived)
    /// become the group's generation and its machine the applied state. The snapshot record and
    /// the generation's name are durable together before anything in memory changes.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<GroupSnapshot>,
    ) -> Result<(), StorageError> {
        let hot = snapshot.hot().clone();
        let decoded = hot.clone();
        let machine =
            off_runtime(move || Machine::decode(&decoded)).await?.map_err(|e| snap_err(ErrorVerb::Read, e))?;
        if machine.group() != self.state.group {
            let e = std::io::Error::other(format!("snapshot of {} sent to {}", machine.group(), self.state.group));
            return Err(sm_err(ErrorVerb::Write, e));
        }
        let stage = match snapshot.take_stage() {
            Some(stage) => stage,
            None => restage(&self.state.cold, &snapshot)?,
        };
        let mut batch = Batch::default();
        self.state.cold.name_generation(&stage, &mut batch).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let time_ms = snapshot.time_ms();
        let stored = StoredSnapshot { meta: meta.clone(), time_ms, hot: hot.to_vec() };
        write_snapshot(self.kv.as_ref(), self.tree.as_ref(), &stored, batch).await?;
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let old = {
            let mut applied = self.state.write();
            *applied = Applied { machine, last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
            self.state.cold.switch(stage)
        };
        self.state.cold.snapshot_durable(time_ms);
        self.state.cold.drop_generation(old).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(Latest { meta: meta.clone(), time_ms, hot });
        self.state.applied_index.send_replace(index);
        tracing::info!(group = %self.state.group, index, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.latest().map(|latest| latest.snapshot(&self.state.cold)))
    }
}
