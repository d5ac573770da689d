//! openraft's log storage for one group, on one tree of the node's database.
//!
//! An append is written, then flushed through the node's group-commit flusher before openraft is
//! told (`LogFlushed`): Raft never counts an entry that a crash could lose. A flush that fails is
//! reported to openraft as the append's failure, which stops the group: it never becomes an
//! acknowledgement, and the store fails every later flush (see `Kv`), so nothing after it does.
//!
//! Every record is checksummed by the codec. A damaged record stops the group; the one exception
//! is a torn last record found at start-up, which was never flushed (see `LogStore::last_entry`).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};

use crate::codec::{self, CodecError};
use crate::keys::{self, log_index, log_key};
use crate::kv::{flushed, Batch, Kv, KvTree};
use crate::raft_types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Entries read by one `try_get_log_entries` call at most; openraft asks in bounded ranges.
const READ_ENTRIES_MAX: usize = 100_000;
/// Keys read per page, and deleted per batch, when removing a range of the log.
const DELETE_BATCH_KEYS: usize = 10_000;

#[derive(Clone)]
pub struct LogStore {
    kv: Arc<dyn Kv>,
    tree: Arc<dyn KvTree>,
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn corrupt(index: u64, what: impl std::fmt::Display) -> StorageError {
    io_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, std::io::Error::other(format!("corrupt log record: {what}")))
}

/// The entry a log record holds, checked against the index its key names.
fn entry_at(index: u64, decoded: Result<Entry, CodecError>) -> Result<Entry, StorageError> {
    let entry = decoded.map_err(|e| corrupt(index, e))?;
    if entry.log_id.index != index {
        return Err(corrupt(index, format_args!("the record at index {index} holds index {}", entry.log_id.index)));
    }
    Ok(entry)
}

fn record_index(key: &[u8]) -> Result<u64, StorageError> {
    log_index(key)
        .ok_or_else(|| io_err(ErrorSubject::Logs, ErrorVerb::Read, std::io::Error::other("malformed log key")))
}

impl LogStore {
    pub fn new(kv: Arc<dyn Kv>, tree: Arc<dyn KvTree>) -> LogStore {
        LogStore { kv, tree }
    }

    /// The keys of a group's tree that hold log records, `[from, to)`: for tests that damage
    /// them.
    pub fn record_keys() -> (Vec<u8>, Vec<u8>) {
        (log_key(0).to_vec(), keys::LOG_END.to_vec())
    }

    /// Whether the log holds neither entries nor a vote (a group's first state may be seeded).
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        let entries = self
            .tree
            .scan(&log_key(0), &keys::LOG_END, 1)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let vote = self.tree.get(&[keys::VOTE]).map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Read, e))?;
        Ok(entries.is_empty() && vote.is_none())
    }

    fn read_value<T: serde::de::DeserializeOwned>(
        &self,
        key: u8,
        subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.tree.get(&[key]).map_err(|e| io_err(subject.clone(), ErrorVerb::Read, e))? else {
            return Ok(None);
        };
        codec::decode(&bytes).map(Some).map_err(|e| io_err(subject, ErrorVerb::Read, e))
    }

    fn write_value<T: serde::Serialize>(
        &self,
        key: u8,
        value: &T,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        let bytes = codec::encode(value).map_err(|e| io_err(subject.clone(), ErrorVerb::Write, e))?;
        let mut batch = Batch::default();
        batch.put(vec![key], bytes);
        self.tree.write(batch).map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }

    async fn flush(&self, subject: ErrorSubject<u64>) -> Result<(), StorageError> {
        flushed(self.kv.as_ref()).await.map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }

    /// Removes the log keys in `[from, to)`, lowest first (see [`delete_from_start`]).
    fn delete_from_start(&self, from: &[u8], to: &[u8]) -> Result<(), StorageError> {
        delete_from_start(self.tree.as_ref(), from, to).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    /// Removes the log keys in `[from, to)`, highest first: a crash partway through a long
    /// truncation leaves a prefix of the log, never a log with a hole.
    fn delete_from_end(&self, from: &[u8], to: &[u8]) -> Result<(), StorageError> {
        let mut keys = Vec::new();
        let mut cursor = from.to_vec();
        loop {
            let page = self
                .tree
                .scan(&cursor, to, DELETE_BATCH_KEYS)
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
            let Some((last, _)) = page.last() else { break };
            // The next key after `last`.
            cursor = last.iter().copied().chain([0]).collect();
            keys.extend(page.into_iter().map(|(k, _)| k));
        }
        for chunk in keys.rchunks(DELETE_BATCH_KEYS) {
            let mut batch = Batch::default();
            for k in chunk.iter().rev() {
                batch.delete(k.clone());
            }
            self.tree.write(batch).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        }
        Ok(())
    }

    fn last_record(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let last =
            self.tree.last(&log_key(0), &keys::LOG_END).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        last.map(|(key, bytes)| Ok((record_index(&key)?, bytes))).transpose()
    }

    /// The last entry of the log, once a torn last record is discarded. openraft asks only while
    /// it starts the group, which is when a torn record can be there.
    ///
    /// How a torn tail is told from damage to durable data: a crash can tear only the last write
    /// that reached the disk, and a log's writes reach it in order, so a torn record is the last
    /// of the log; and rot changes a record's bytes but never its length. The codec's frame
    /// carries the body's length under a header checksum, so a record shorter than its intact
    /// header says (or shorter than a header) is a write a crash cut short
    /// ([`CodecError::is_torn`]). Its flush never completed, and an append is acknowledged only
    /// from its flush's callback, so it was never acknowledged and dropping it loses nothing Raft
    /// counted. Every other failure — a checksum mismatch, a wrong version, a record longer than
    /// its header says, a short record that is not the last, a record naming another index — is
    /// damage to a record that may have been acknowledged, and stops the group. The one case
    /// this cannot tell is rot that rewrites a length and its header checksum to agree, a chance
    /// of one in 2³² — the same chance that rot passes any CRC-32 check unseen.
    async fn last_entry(&self) -> Result<Option<Entry>, StorageError> {
        let Some((index, bytes)) = self.last_record()? else { return Ok(None) };
        let decoded = codec::decode::<Entry>(&bytes);
        let discard = match &decoded {
            Err(e) => e.is_torn() || discard_damaged_tail_planted(),
            Ok(_) => false,
        };
        if !discard {
            return entry_at(index, decoded).map(Some);
        }
        tracing::warn!(index, bytes = bytes.len(), "discarding a torn last log record (never flushed)");
        let mut batch = Batch::default();
        batch.delete(log_key(index).to_vec());
        self.tree.write(batch).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        self.flush(ErrorSubject::Logs).await?;
        // A crash tears one write at most: the record before a torn one is whole.
        match self.last_record()? {
            Some((index, bytes)) => entry_at(index, codec::decode(&bytes)).map(Some),
            None => Ok(None),
        }
    }
}

/// Removes the keys of `tree` in `[from, to)`, lowest first, a batch at a time: a crash partway
/// through a long purge leaves a suffix of the log, never a log with a hole.
fn delete_from_start(tree: &dyn KvTree, from: &[u8], to: &[u8]) -> Result<(), crate::kv::KvError> {
    loop {
        let keys = tree.scan(from, to, DELETE_BATCH_KEYS)?;
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        for (k, _) in keys {
            batch.delete(k);
        }
        tree.write(batch)?;
    }
}

/// Moves every group's log records (entries, vote, commit and purge points) out of `from`, where
/// a node kept them in its group trees before logs had their own store, into the same trees of
/// `to`; they are durable there before any is deleted from `from`. Safe to run again after a
/// crash part way (it runs before any group starts, so copying again rewrites the same values).
/// Returns how many records moved.
pub async fn move_logs(from: &dyn Kv, to: &dyn Kv) -> Result<u64, crate::kv::KvError> {
    let singles = [keys::VOTE, keys::COMMITTED, keys::PURGED];
    let ranges: Vec<(Vec<u8>, Vec<u8>)> = std::iter::once((log_key(0).to_vec(), keys::LOG_END.to_vec()))
        .chain(singles.iter().map(|&k| (vec![k], vec![k + 1])))
        .collect();
    let mut moved = Vec::new();
    for name in from.tree_names()? {
        if keys::parse_group_tree(&name).is_none() {
            continue;
        }
        let (source, target) = (from.tree(&name)?, to.tree(&name)?);
        let mut count = 0u64;
        for (start, end) in &ranges {
            count += crate::kv::copy_range(source.as_ref(), target.as_ref(), start, end)?;
        }
        if count > 0 {
            moved.push((name, source, count));
        }
    }
    if moved.is_empty() {
        return Ok(0);
    }
    flushed(to).await?;
    let mut total = 0;
    for (name, source, count) in moved {
        for (start, end) in &ranges {
            delete_from_start(source.as_ref(), start, end)?;
        }
        tracing::info!(tree = %name, records = count, "moved a group's log to the log store");
        total += count;
    }
    flushed(from).await?;
    Ok(total)
}

/// The planted `DiscardCorruptTail`: a damaged last record is dropped as if it were torn.
#[cfg(madsim)]
fn discard_damaged_tail_planted() -> bool {
    crate::planted::is_planted(crate::planted::Bug::DiscardCorruptTail)
}

#[cfg(not(madsim))]
fn discard_damaged_tail_planted() -> bool {
    false
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => log_key(i.saturating_add(1)).to_vec(),
            Bound::Excluded(i) => log_key(*i).to_vec(),
            Bound::Unbounded => keys::LOG_END.to_vec(),
        };
        let rows = self
            .tree
            .scan(&log_key(start), &end, READ_ENTRIES_MAX)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        // A damaged record stops the group rather than being skipped; a torn one here is damage
        // too (start-up has already discarded a torn last record).
        rows.into_iter().map(|(key, value)| entry_at(record_index(&key)?, codec::decode(&value))).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_value(keys::PURGED, ErrorSubject::Logs)?;
        let last_log_id = match self.last_entry().await? {
            Some(entry) => Some(entry.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_value(keys::VOTE, vote, ErrorSubject::Vote)?;
        // A vote must survive a crash before it is acted on, or a node could vote twice in a term.
        self.flush(ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_value(keys::VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: losing it only means re-learning the commit index from the leader.
        self.write_value(keys::COMMITTED, &committed, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_value::<Option<LogId>>(keys::COMMITTED, ErrorSubject::Store)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Batch::default();
        for entry in entries {
            let bytes =
                codec::encode(&entry).map_err(|e| io_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            batch.put(log_key(entry.log_id.index).to_vec(), bytes);
        }
        self.tree.write(batch).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        #[cfg(madsim)]
        if crate::planted::is_planted(crate::planted::Bug::AckBeforeFlush) {
            callback.log_io_completed(Ok(()));
            self.kv.flush(Box::new(|_| {}));
            return Ok(());
        }
        #[cfg(madsim)]
        if crate::planted::is_planted(crate::planted::Bug::AckDespiteFailedFlush) {
            self.kv.flush(Box::new(move |_| callback.log_io_completed(Ok(()))));
            return Ok(());
        }
        // Acknowledged only once durable; the flusher batches this with every other waiting write.
        self.kv.flush(Box::new(move |result| callback.log_io_completed(result)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.delete_from_end(&log_key(log_id.index), &keys::LOG_END)?;
        // Flushed so that a conflicting suffix cannot reappear after a crash.
        self.flush(ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash in between leaves entries below it, never a gap.
        self.write_value(keys::PURGED, &log_id, ErrorSubject::Logs)?;
        self.delete_from_start(&log_key(0), &log_key(log_id.index.saturating_add(1)))
    }
}
