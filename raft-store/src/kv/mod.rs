//! Durable key-value storage behind a trait: in production sled for the state machines and
//! append-only segment files for the Raft logs; an in-memory twin with crash semantics for tests
//! and the simulation (both start OS threads, which madsim forbids).
//!
//! The contract every backend keeps:
//! - `write` applies a batch to one tree atomically and makes it visible to reads at once;
//! - a write is durable only after a `flush` that started after it has called back `Ok`;
//! - flushes call back in the order they were requested (openraft counts on it: a late callback
//!   of an append that was since truncated would report entries as durable that no longer
//!   exist — the simulation found this when its disk completed flushes out of order);
//! - a crash keeps every flushed write and may lose any unflushed one;
//! - a flush that fails leaves what it covered in doubt, so the store fails every later flush too
//!   (never reporting success for writes a failed flush may have dropped — PostgreSQL's
//!   "fsyncgate"): its owner stops, and a restart finds what was durable.

mod mem;
#[cfg(not(madsim))]
mod segments;
#[cfg(not(madsim))]
mod sled_kv;

use std::sync::Arc;

pub use mem::MemKv;
#[cfg(not(madsim))]
pub use segments::{SegmentKv, SegmentLimits};
#[cfg(not(madsim))]
pub use sled_kv::SledKv;

pub type KvResult<T> = Result<T, KvError>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    #[error("storage i/o: {0}")]
    Io(String),
    #[error("flusher stopped")]
    FlusherStopped,
}

/// Called once when a flush has finished, possibly on another thread.
pub type FlushDone = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

/// An atomic set of puts and deletes on one tree.
#[derive(Debug, Default)]
pub struct Batch {
    pub(crate) ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Counters of the group-commit flusher.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    /// Flushes performed.
    pub flushes: u64,
    /// Flush requests served; `requests / flushes` is the mean batch.
    pub requests: u64,
}

pub trait Kv: Send + Sync + 'static {
    /// Opens (creating if needed) the named tree.
    fn tree(&self, name: &str) -> KvResult<Arc<dyn KvTree>>;
    fn tree_names(&self) -> KvResult<Vec<String>>;
    /// Deletes a tree and everything in it (durable after the next flush).
    fn drop_tree(&self, name: &str) -> KvResult<()>;
    /// Makes every write made before this call durable, then calls `done`. Concurrent requests
    /// share one flush: this is where many commands per fsync come from.
    fn flush(&self, done: FlushDone);
    fn flush_stats(&self) -> FlushStats;
    /// The error of the flush that failed, once one has: the store refuses every later flush, and
    /// its owner should stop (a restart finds what was durable).
    fn failure(&self) -> Option<String>;
}

pub trait KvTree: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>>;
    fn write(&self, batch: Batch) -> KvResult<()>;
    /// Entries with `from <= key < to`, ascending, at most `limit`.
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> KvResult<Vec<(Vec<u8>, Vec<u8>)>>;
    /// The greatest entry with `from <= key < to`.
    fn last(&self, from: &[u8], to: &[u8]) -> KvResult<Option<(Vec<u8>, Vec<u8>)>>;
}

/// Waits until every write made before the call is durable.
pub async fn flushed(kv: &dyn Kv) -> KvResult<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    kv.flush(Box::new(move |result| {
        let _ = tx.send(result);
    }));
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(KvError::Io(e.to_string())),
        Err(_) => Err(KvError::FlusherStopped),
    }
}
