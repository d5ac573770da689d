//! openraft's log storage for one group, on one tree of the node's database.
//!
//! An append is written, then flushed through the node's group-commit flusher before openraft is
//! told (`LogFlushed`): Raft never counts an entry that a crash could lose.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};

use crate::codec;
use crate::keys::{self, log_index, log_key};
use crate::kv::{flushed, Batch, Kv, KvTree};
use crate::raft_types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Entries read by one `try_get_log_entries` call at most; openraft asks in bounded ranges.
const READ_ENTRIES_MAX: usize = 100_000;

#[derive(Clone)]
pub struct LogStore {
    kv: Arc<dyn Kv>,
    tree: Arc<dyn KvTree>,
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

impl LogStore {
    pub fn new(kv: Arc<dyn Kv>, tree: Arc<dyn KvTree>) -> LogStore {
        LogStore { kv, tree }
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

    /// Removes the log keys in `[from, to)`.
    fn delete_range(&self, from: &[u8], to: &[u8]) -> Result<(), StorageError> {
        loop {
            let keys =
                self.tree.scan(from, to, 10_000).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
            if keys.is_empty() {
                return Ok(());
            }
            let mut batch = Batch::default();
            for (k, _) in keys {
                batch.delete(k);
            }
            self.tree.write(batch).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        }
    }
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
        let mut entries = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            let index = log_index(&key).ok_or_else(|| {
                io_err(ErrorSubject::Logs, ErrorVerb::Read, std::io::Error::other("malformed log key"))
            })?;
            let entry: Entry =
                codec::decode(&value).map_err(|e| io_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?;
            // A corrupt record stops the node rather than being skipped.
            if entry.log_id.index != index {
                let e = std::io::Error::other(format!("entry at key {index} has index {}", entry.log_id.index));
                return Err(io_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e));
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_value(keys::PURGED, ErrorSubject::Logs)?;
        let last =
            self.tree.last(&log_key(0), &keys::LOG_END).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_log_id = match last {
            Some((_, value)) => {
                let entry: Entry = codec::decode(&value).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Some(entry.log_id)
            }
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
        // Acknowledged only once durable; the flusher batches this with every other waiting write.
        self.kv.flush(Box::new(move |result| callback.log_io_completed(result)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.delete_range(&log_key(log_id.index), &keys::LOG_END)?;
        // Flushed so that a conflicting suffix cannot reappear after a crash.
        self.flush(ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash in between leaves entries below it, never a gap.
        self.write_value(keys::PURGED, &log_id, ErrorSubject::Logs)?;
        self.delete_range(&log_key(0), &log_key(log_id.index.saturating_add(1)))
    }
}
