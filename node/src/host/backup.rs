//! Backups and restores, on the node's side.
//!
//! A backup of a group is read from its leader: `backup_open` confirms the lead and that every
//! write acknowledged before the call is applied (as a linearizable read does), has openraft build
//! a fresh snapshot at or after that index, and opens it; `backup_next` hands its chunks out one a
//! call. The table of open backups is bounded (`BACKUPS_MAX`), and one not read for
//! `BACKUP_IDLE_MS` is dropped: while open, a backup's view holds the collection of its cold
//! records back.
//!
//! A restore seeds a group this node does not host yet with a restored stream
//! (`raft_store::Rebaser`), taken chunk by chunk like a Raft snapshot (`transfer.rs`); at its end
//! the state is written ([`raft_store::StateMachineStore::seed`]) and the group starts from it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft_store::{ColdStore, GroupId, SnapshotChunk, SnapshotReader};
use tokio::time::Instant;

use super::error::{ProposeError, TransferError};
use super::transfer::{Chunk, Purpose, Taken};
use super::Node;

/// Backups open at once at most.
const BACKUPS_MAX: usize = 16;
/// A backup not read for this long is dropped.
const BACKUP_IDLE_MS: u64 = 120_000;
/// How long a backup waits for its fresh snapshot to be built.
const BACKUP_SNAPSHOT_WAIT_MS: u64 = 600_000;

struct OpenBackup {
    group: GroupId,
    /// Out of the table while a chunk is read.
    reader: Option<SnapshotReader>,
    touched: Instant,
}

/// The backups open on this node, by transfer id.
#[derive(Default)]
pub(super) struct Backups {
    open: BTreeMap<u64, OpenBackup>,
    next_id: u64,
}

impl Node {
    fn backups(&self) -> std::sync::MutexGuard<'_, Backups> {
        self.backups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a backup of `group`, as its leader: a fresh snapshot that holds every write
    /// acknowledged before this call. Returns its id, log index and term.
    pub async fn backup_open(&self, group: GroupId) -> Result<(u64, u64, u64), ProposeError> {
        let target = self.hosted(group)?;
        target.barrier.confirm(&target.raft).await?;
        let applied = target.state.read().last_applied.map_or(0, |l| l.index);
        target.raft.trigger().snapshot().await?;
        target
            .raft
            .wait(Some(Duration::from_millis(BACKUP_SNAPSHOT_WAIT_MS)))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "a snapshot for the backup")
            .await
            .map_err(|source| TransferError::SnapshotWait { group, source })?;
        let snapshot = target.state.latest_snapshot().ok_or(TransferError::NoSnapshot { group })?;
        let last = snapshot.meta().last_log_id;
        let (index, term) = last.map_or((0, 0), |l| (l.index, l.leader_id.term));
        let now = Instant::now();
        let mut backups = self.backups();
        let idle = Duration::from_millis(BACKUP_IDLE_MS);
        backups.open.retain(|_, b| now.saturating_duration_since(b.touched) < idle);
        if backups.open.len() >= BACKUPS_MAX {
            return Err(TransferError::TooManyBackups { max: BACKUPS_MAX }.into());
        }
        backups.next_id += 1;
        let id = backups.next_id;
        backups.open.insert(id, OpenBackup { group, reader: Some(snapshot.reader()), touched: now });
        tracing::info!(%group, index, term, backup = id, "backup opened");
        Ok((id, index, term))
    }

    /// The next chunk of an open backup; the backup is closed once its end is handed out.
    pub async fn backup_next(&self, group: GroupId, id: u64) -> Result<Option<SnapshotChunk>, ProposeError> {
        let reader = {
            let mut backups = self.backups();
            let open = backups.open.get_mut(&id).filter(|b| b.group == group);
            open.and_then(|b| b.reader.take()).ok_or(TransferError::NoBackup { group, transfer: id })?
        };
        let read = reader.next_chunk_off_runtime().await;
        let mut backups = self.backups();
        match read {
            Ok((_, Some(chunk @ SnapshotChunk::End { .. }))) => {
                // Closed at its end: its view no longer holds the collector back.
                backups.open.remove(&id);
                Ok(Some(chunk))
            }
            Ok((reader, Some(chunk))) => {
                if let Some(b) = backups.open.get_mut(&id) {
                    b.reader = Some(reader);
                    b.touched = Instant::now();
                }
                Ok(Some(chunk))
            }
            Ok((_, None)) => {
                backups.open.remove(&id);
                Ok(None)
            }
            Err(source) => {
                backups.open.remove(&id);
                Err(TransferError::Refused { group, source }.into())
            }
        }
    }

    /// Takes one chunk of a restored stream for `group`, which this node must not host; at the
    /// end, writes the restored state and starts the group from it. `true` once started.
    pub async fn restore_chunk(
        self: &Arc<Self>,
        group: GroupId,
        transfer: u64,
        seq: u64,
        chunk: SnapshotChunk,
    ) -> Result<bool, ProposeError> {
        let shard_count = self.shard_count().ok_or(ProposeError::NotJoined)?;
        if group.as_shard().is_some_and(|s| s >= shard_count) {
            return Err(ProposeError::UnknownGroup(group));
        }
        if self.group(group).is_some() {
            return Err(TransferError::Occupied { group }.into());
        }
        let kv = self.kv.clone();
        let cold = move || -> Result<Arc<ColdStore>, ProposeError> {
            let tree = kv.tree(&raft_store::group_tree(group))?;
            Ok(Arc::new(ColdStore::open(kv.clone(), tree.as_ref(), group)?))
        };
        let chunk = Chunk { group, transfer, seq, purpose: Purpose::Restore, chunk };
        match self.take_chunk(chunk, cold).await? {
            Taken::More => Ok(false),
            Taken::Whole(snapshot, cold) => {
                let cold = cold.ok_or(TransferError::Occupied { group })?;
                self.seed_group(group, &cold, &snapshot).await?;
                Ok(true)
            }
        }
    }
}
