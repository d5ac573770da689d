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

#[cfg(not(madsim))]
mod fjall_kv;
#[cfg(not(madsim))]
mod flusher;
mod mem;
#[cfg(not(madsim))]
mod segments;
#[cfg(not(madsim))]
mod sled_kv;

use std::sync::Arc;

#[cfg(not(madsim))]
pub use fjall_kv::FjallKv;
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

/// Copies the records of `source` with `from <= key < to` into `target`, a page at a time;
/// returns how many.
pub(crate) fn copy_range(source: &dyn KvTree, target: &dyn KvTree, from: &[u8], to: &[u8]) -> KvResult<u64> {
    const PAGE: usize = 10_000;
    let (mut copied, mut cursor) = (0u64, from.to_vec());
    loop {
        let page = source.scan(&cursor, to, PAGE)?;
        let Some((last, _)) = page.last() else { return Ok(copied) };
        cursor = last.iter().copied().chain([0]).collect();
        copied += page.len() as u64;
        let mut batch = Batch::default();
        for (k, v) in page {
            batch.put(k, v);
        }
        target.write(batch)?;
    }
}

/// Copies every tree of `from` into `to`, and waits until the copy is durable there; returns how
/// many records were copied.
pub async fn copy_trees(from: &dyn Kv, to: &dyn Kv) -> KvResult<u64> {
    let mut copied = 0u64;
    for name in from.tree_names()? {
        copied += copy_range(from.tree(&name)?.as_ref(), to.tree(&name)?.as_ref(), &[], &[0xff; 64])?;
    }
    flushed(to).await?;
    Ok(copied)
}

/// Opens a node's two stores under `data_dir`: the state machines' (`state/`, fjall, with a
/// block cache of `cache_bytes`) and the Raft logs' (`raft-log/`). A database left by an older
/// version in `db/` (sled) is copied into `state/` first, durably, then renamed away and deleted;
/// logs it held are moved on by `move_logs` when the node starts.
#[cfg(not(madsim))]
pub async fn open_node_stores(
    data_dir: &std::path::Path,
    cache_bytes: u64,
) -> KvResult<(Arc<FjallKv>, Arc<SegmentKv>)> {
    let io = |what: &std::path::Path, e: std::io::Error| KvError::Io(format!("{}: {e}", what.display()));
    let (old, copied_away) = (data_dir.join("db"), data_dir.join("db.copied"));
    let state = FjallKv::open(&data_dir.join("state"), cache_bytes)?;
    if old.exists() {
        let sled = SledKv::open(&old, 64 << 20)?;
        let records = copy_trees(sled.as_ref(), state.as_ref()).await?;
        drop(sled);
        std::fs::rename(&old, &copied_away).map_err(|e| io(&old, e))?;
        tracing::info!(records, "the sled database was copied into the state store");
    }
    if copied_away.exists() {
        std::fs::remove_dir_all(&copied_away).map_err(|e| io(&copied_away, e))?;
    }
    let log = SegmentKv::open(&data_dir.join("raft-log"))?;
    Ok((state, log))
}
