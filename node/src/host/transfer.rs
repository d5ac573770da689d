//! Snapshots arriving in chunks: a Raft snapshot from a group's leader, or a restored group's
//! first state from the operator's CLI (see `restore.rs`). Each transfer's chunks arrive in order,
//! each answered before the next is sent; a [`SnapshotWriter`] checks them and stages the cold
//! records as they come, so only the hot part is held in memory.
//!
//! The table of transfers in progress is bounded: one per group (a newer transfer for a group
//! supersedes the older, whose staged records are dropped), `TRANSFERS_MAX` in all, and a
//! transfer that hears nothing for `TRANSFER_IDLE_MS` is dropped. A refused chunk fails its
//! transfer; the sender starts a new one later.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft_store::{ColdStore, GroupId, GroupSnapshot, SnapshotChunk, SnapshotWriter, Vote};
use tokio::time::Instant;

use super::error::{ProposeError, TransferError};
use super::Node;

/// Transfers in progress at most; a new one beyond is refused, and its sender retries later.
const TRANSFERS_MAX: usize = 8;
/// A transfer that hears nothing for this long is dropped, with what it staged.
const TRANSFER_IDLE_MS: u64 = 60_000;

/// What a transfer's snapshot is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Installing through Raft, from the leader of this vote.
    Raft(Vote),
    /// Seeding a group this node does not host yet.
    Restore,
}

struct Transfer {
    id: u64,
    purpose: Purpose,
    next_seq: u64,
    /// Out of the table while one of its chunks is being written.
    writer: Option<SnapshotWriter>,
    /// Where a restore stages its records (the group is not open yet).
    cold: Option<Arc<ColdStore>>,
    touched: Instant,
}

/// The transfers in progress, by group.
#[derive(Default)]
pub(super) struct Transfers {
    by_group: BTreeMap<GroupId, Transfer>,
}

impl Transfers {
    fn drop_idle(&mut self, now: Instant) {
        let idle = Duration::from_millis(TRANSFER_IDLE_MS);
        self.by_group.retain(|group, t| {
            let keep = now.saturating_duration_since(t.touched) < idle;
            if !keep {
                tracing::warn!(%group, transfer = t.id, "an idle snapshot transfer was dropped");
            }
            keep
        });
    }
}

/// A chunk, addressed.
pub(super) struct Chunk {
    pub group: GroupId,
    pub transfer: u64,
    pub seq: u64,
    pub purpose: Purpose,
    pub chunk: SnapshotChunk,
}

/// What taking a chunk came to.
pub(super) enum Taken {
    /// A chunk before the last.
    More,
    /// The last: the whole snapshot, checked, its cold records staged; and, for a restore, the
    /// store they are staged in.
    Whole(GroupSnapshot, Option<Arc<ColdStore>>),
}

impl Node {
    fn transfers(&self) -> std::sync::MutexGuard<'_, Transfers> {
        self.transfers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one chunk of a transfer. The first (`seq` 0) starts it, staging into `cold` (the
    /// running group's store for a Raft snapshot, a store of its own for a restore).
    pub(super) async fn take_chunk(
        &self,
        c: Chunk,
        cold: impl FnOnce() -> Result<Arc<ColdStore>, ProposeError>,
    ) -> Result<Taken, ProposeError> {
        let bytes = c.chunk.payload_bytes() as u64;
        let end = matches!(c.chunk, SnapshotChunk::End { .. });
        let writer = if c.seq == 0 { self.begin_transfer(&c, cold)? } else { self.continue_transfer(&c)? };
        let Some(writer) = writer else { return Ok(Taken::More) };
        metrics::counter!("boxoffice_snapshot_received_bytes_total").increment(bytes);
        let written = writer.push_off_runtime(c.chunk).await;
        let mut transfers = self.transfers();
        let ours = transfers.by_group.get(&c.group).is_some_and(|t| t.id == c.transfer);
        let writer = match written {
            Ok(writer) => writer,
            Err(e) => {
                if ours {
                    transfers.by_group.remove(&c.group);
                }
                return Err(TransferError::Refused { group: c.group, source: e }.into());
            }
        };
        if !ours {
            return Err(TransferError::Superseded { group: c.group, transfer: c.transfer }.into());
        }
        if end {
            let done = transfers.by_group.remove(&c.group).and_then(|t| t.cold);
            drop(transfers);
            let snapshot = writer.finish().map_err(|source| TransferError::Refused { group: c.group, source })?;
            return Ok(Taken::Whole(snapshot, done));
        }
        if let Some(t) = transfers.by_group.get_mut(&c.group) {
            t.writer = Some(writer);
            t.touched = Instant::now();
        }
        Ok(Taken::More)
    }

    /// Starts a transfer with its first chunk; returns the writer, which the chunk is pushed into
    /// (nothing for a beginning, which the writer took).
    fn begin_transfer(
        &self,
        c: &Chunk,
        cold: impl FnOnce() -> Result<Arc<ColdStore>, ProposeError>,
    ) -> Result<Option<SnapshotWriter>, ProposeError> {
        let cold = cold()?;
        let now = Instant::now();
        let mut transfers = self.transfers();
        transfers.drop_idle(now);
        // A newer transfer for the group supersedes the older one.
        transfers.by_group.remove(&c.group);
        if transfers.by_group.len() >= TRANSFERS_MAX {
            return Err(TransferError::Busy { group: c.group, max: TRANSFERS_MAX }.into());
        }
        let writer = SnapshotWriter::begin(&cold, c.chunk.clone())
            .map_err(|source| TransferError::Refused { group: c.group, source })?;
        let restore_cold = (c.purpose == Purpose::Restore).then_some(cold);
        let transfer = Transfer {
            id: c.transfer,
            purpose: c.purpose,
            next_seq: 1,
            writer: Some(writer),
            cold: restore_cold,
            touched: now,
        };
        transfers.by_group.insert(c.group, transfer);
        Ok(None)
    }

    /// Takes the writer of the transfer a later chunk belongs to, if it is the one expected.
    fn continue_transfer(&self, c: &Chunk) -> Result<Option<SnapshotWriter>, ProposeError> {
        let mut transfers = self.transfers();
        let unexpected = TransferError::Unexpected { group: c.group, transfer: c.transfer, seq: c.seq };
        let Some(t) = transfers.by_group.get_mut(&c.group) else { return Err(unexpected.into()) };
        if t.id != c.transfer || t.next_seq != c.seq || t.purpose != c.purpose {
            return Err(unexpected.into());
        }
        let writer = t.writer.take().ok_or(unexpected)?;
        t.next_seq += 1;
        t.touched = Instant::now();
        Ok(Some(writer))
    }

    /// Forgets any transfer into `group` (it is being dropped here).
    pub(super) fn abandon_transfer(&self, group: GroupId) {
        self.transfers().by_group.remove(&group);
    }
}
