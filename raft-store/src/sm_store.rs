//! openraft's state machine storage for one group.
//!
//! The applied state lives in memory ([`Machine`]); durability comes from the log plus snapshots.
//! A restarted node loads its last snapshot and openraft re-applies the committed log after it.
//! Snapshots are the whole encoded machine, written and flushed before openraft may purge the log
//! they cover.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec;
use crate::ids::GroupId;
use crate::keys;
use crate::kv::{flushed, Batch, Kv, KvTree};
use crate::machine::Machine;
use crate::raft_types::{Entry, LogId, Outcomes, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

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
    /// The last applied log index, for readers that wait for their write to be applied.
    applied_index: watch::Sender<u64>,
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

    /// Follows the last applied log index.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

pub struct StateMachineStore {
    state: Arc<GroupState>,
    kv: Arc<dyn Kv>,
    tree: Arc<dyn KvTree>,
}

impl StateMachineStore {
    /// Opens a group's state machine: from its last snapshot if there is one, else empty.
    pub fn open(
        kv: Arc<dyn Kv>,
        tree: Arc<dyn KvTree>,
        group: GroupId,
        shard_count: u32,
    ) -> Result<StateMachineStore, StorageError> {
        let applied = match read_snapshot(tree.as_ref())? {
            Some(stored) => {
                let machine: Machine = codec::decode(&stored.data).map_err(|e| snap_err(ErrorVerb::Read, e))?;
                if machine.group() != group {
                    let e =
                        std::io::Error::other(format!("snapshot of {} found in the tree of {group}", machine.group()));
                    return Err(snap_err(ErrorVerb::Read, e));
                }
                Applied { machine, last_applied: stored.meta.last_log_id, membership: stored.meta.last_membership }
            }
            None => Applied {
                machine: Machine::new(group, shard_count),
                last_applied: None,
                membership: StoredMembership::default(),
            },
        };
        let index = applied.last_applied.map_or(0, |l| l.index);
        let state =
            Arc::new(GroupState { group, applied: RwLock::new(applied), applied_index: watch::channel(index).0 });
        Ok(StateMachineStore { state, kv, tree })
    }

    pub fn state(&self) -> Arc<GroupState> {
        self.state.clone()
    }
}

fn read_snapshot(tree: &dyn KvTree) -> Result<Option<StoredSnapshot>, StorageError> {
    match tree.get(&[keys::SNAPSHOT]).map_err(|e| snap_err(ErrorVerb::Read, e))? {
        None => Ok(None),
        Some(bytes) => codec::decode(&bytes).map(Some).map_err(|e| snap_err(ErrorVerb::Read, e)),
    }
}

async fn write_snapshot(kv: &dyn Kv, tree: &dyn KvTree, stored: &StoredSnapshot) -> Result<(), StorageError> {
    let bytes = codec::encode(stored).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let mut batch = Batch::default();
    batch.put(vec![keys::SNAPSHOT], bytes);
    tree.write(batch).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    flushed(kv).await.map_err(|e| snap_err(ErrorVerb::Write, e))
}

/// Runs CPU-heavy work on a blocking thread, so it does not hold up a runtime worker. The
/// simulation forbids threads and has no workers to hold up: it runs the work in place.
#[cfg(not(madsim))]
async fn off_runtime<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Result<R, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, std::io::Error::other(e.to_string())))
}

#[cfg(madsim)]
async fn off_runtime<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Result<R, StorageError> {
    Ok(work())
}

pub struct SnapshotBuilder {
    state: Arc<GroupState>,
    kv: Arc<dyn Kv>,
    tree: Arc<dyn KvTree>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// The machine is copied under the read lock and encoded on a blocking thread without it:
    /// encoding a large shard takes hundreds of milliseconds on a loaded machine, and every
    /// replica builds at the same index, so holding the lock meanwhile stopped apply (and every
    /// client write) on all of them at once.
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let started = tokio::time::Instant::now();
        let (machine, last_applied, membership) = {
            let applied = self.state.read();
            (applied.machine.clone(), applied.last_applied, applied.membership.clone())
        };
        let copied = started.elapsed();
        let data = off_runtime(move || codec::encode(&machine)).await?.map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let snapshot_id = match last_applied {
            // One leader per term (openraft's `single-term-leader`): the term names the leader.
            Some(l) => format!("{}-{}", l.leader_id.term, l.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        let encoded = started.elapsed() - copied;
        let stored = StoredSnapshot { meta, data };
        write_snapshot(self.kv.as_ref(), self.tree.as_ref(), &stored).await?;
        tracing::info!(
            group = %self.state.group,
            index = last_applied.map_or(0, |l| l.index),
            bytes = stored.data.len(),
            copied_ms = copied.as_millis(),
            encoded_ms = encoded.as_millis(),
            total_ms = started.elapsed().as_millis(),
            "snapshot built"
        );
        Ok(Snapshot { meta: stored.meta, snapshot: Box::new(stored.data) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.state.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

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
                        Vec::new()
                    }
                    EntryPayload::Normal(request) => applied.machine.apply(index, &request),
                    EntryPayload::Membership(membership) => {
                        applied.machine.note_index(index);
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Vec::new()
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
        SnapshotBuilder { state: self.state.clone(), kv: self.kv.clone(), tree: self.tree.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Vec<u8>>, StorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<Vec<u8>>) -> Result<(), StorageError> {
        let machine: Machine = codec::decode(&snapshot).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        if machine.group() != self.state.group {
            let e = std::io::Error::other(format!("snapshot of {} sent to {}", machine.group(), self.state.group));
            return Err(sm_err(ErrorVerb::Write, e));
        }
        let stored = StoredSnapshot { meta: meta.clone(), data: *snapshot };
        write_snapshot(self.kv.as_ref(), self.tree.as_ref(), &stored).await?;
        let index = meta.last_log_id.map_or(0, |l| l.index);
        {
            let mut applied = self.state.write();
            *applied = Applied { machine, last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        }
        self.state.applied_index.send_replace(index);
        tracing::info!(group = %self.state.group, index, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(read_snapshot(self.tree.as_ref())?.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(s.data) }))
    }
}
