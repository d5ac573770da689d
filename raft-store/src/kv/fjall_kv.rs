//! The state machines' backend: one fjall keyspace per node (an LSM tree per partition, one
//! journal), a partition per tree, and a group-commit flusher thread that makes the journal
//! durable once for every flush waiting. Its memory is bounded by its block cache and write
//! buffers, whatever the data on disk grows to: the reason it replaced sled here (sled's memory
//! followed the database, see docs/performance.md).

use std::sync::Arc;

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use super::flusher::Flusher;
use super::{Batch, FlushDone, FlushStats, Kv, KvError, KvResult, KvTree};

/// Write buffers (memtables) of every partition together, at most.
const WRITE_BUFFER_BYTES: u64 = 64 << 20;
/// The journal's size on disk before memtables are flushed to make room.
const JOURNAL_BYTES: u64 = 256 << 20;

fn io(e: impl std::fmt::Display) -> KvError {
    KvError::Io(e.to_string())
}

/// A tree's name as a partition name (letters, digits, `-` and `_` only): `_` becomes `_u` and
/// `/` becomes `_s`, so names map back one to one.
fn partition_name(tree: &str) -> String {
    tree.replace('_', "_u").replace('/', "_s")
}

fn tree_name(partition: &str) -> String {
    let mut out = String::with_capacity(partition.len());
    let mut chars = partition.chars();
    while let Some(c) = chars.next() {
        match (c, c == '_') {
            (_, true) => match chars.next() {
                Some('s') => out.push('/'),
                Some('u') => out.push('_'),
                Some(other) => {
                    out.push('_');
                    out.push(other);
                }
                None => out.push('_'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

pub struct FjallKv {
    keyspace: Keyspace,
    flusher: Flusher,
}

impl FjallKv {
    /// Opens the keyspace at `path`, with a block cache of `cache_bytes`.
    pub fn open(path: &std::path::Path, cache_bytes: u64) -> KvResult<Arc<FjallKv>> {
        let keyspace = fjall::Config::new(path)
            .cache_size(cache_bytes)
            .max_write_buffer_size(WRITE_BUFFER_BYTES)
            .max_journaling_size(JOURNAL_BYTES)
            // Durability comes from our own flushes.
            .fsync_ms(None)
            .open()
            .map_err(io)?;
        let synced = keyspace.clone();
        let flusher =
            Flusher::spawn("boxoffice-flush", move || synced.persist(PersistMode::SyncAll).map_err(|e| e.to_string()))?;
        Ok(Arc::new(FjallKv { keyspace, flusher }))
    }

    fn partition(&self, tree: &str) -> KvResult<PartitionHandle> {
        self.keyspace.open_partition(&partition_name(tree), PartitionCreateOptions::default()).map_err(io)
    }
}

impl Drop for FjallKv {
    /// Answers the waiting flushes, stops the flusher and makes what was written durable.
    fn drop(&mut self) {
        self.flusher.stop();
        if let Err(e) = self.keyspace.persist(PersistMode::SyncAll) {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

impl Kv for FjallKv {
    fn tree(&self, name: &str) -> KvResult<Arc<dyn KvTree>> {
        Ok(Arc::new(FjallTree { keyspace: self.keyspace.clone(), partition: self.partition(name)? }))
    }

    fn tree_names(&self) -> KvResult<Vec<String>> {
        Ok(self.keyspace.list_partitions().iter().map(|p| tree_name(p)).collect())
    }

    fn drop_tree(&self, name: &str) -> KvResult<()> {
        if !self.keyspace.partition_exists(&partition_name(name)) {
            return Ok(());
        }
        let partition = self.partition(name)?;
        self.keyspace.delete_partition(partition).map_err(io)
    }

    fn flush(&self, done: FlushDone) {
        self.flusher.request(done);
    }

    fn flush_stats(&self) -> FlushStats {
        self.flusher.stats()
    }

    fn failure(&self) -> Option<String> {
        self.flusher.failure()
    }
}

struct FjallTree {
    keyspace: Keyspace,
    partition: PartitionHandle,
}

impl KvTree for FjallTree {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        Ok(self.partition.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn write(&self, batch: Batch) -> KvResult<()> {
        let mut b = self.keyspace.batch();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(&self.partition, k, v),
                None => b.remove(&self.partition, k),
            }
        }
        b.commit().map_err(io)
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> KvResult<Vec<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        self.partition
            .range(from.to_vec()..to.to_vec())
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io))
            .collect()
    }

    fn last(&self, from: &[u8], to: &[u8]) -> KvResult<Option<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(None);
        }
        match self.partition.range(from.to_vec()..to.to_vec()).next_back() {
            None => Ok(None),
            Some(r) => r.map(|(k, v)| Some((k.to_vec(), v.to_vec()))).map_err(io),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{partition_name, tree_name};

    #[test]
    fn tree_names_survive_the_partition_names_alphabet() {
        for name in ["node", "group/00000001", "group/00000001/cold/00000003", "a_b/_s_", "t"] {
            let p = partition_name(name);
            assert!(p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{p}");
            assert_eq!(tree_name(&p), name);
        }
    }
}
