//! The former backend of the state machines (and, before that, of the logs): one sled database
//! per node. Kept to read a data directory written before [`super::FjallKv`] replaced it
//! ([`super::open_node_stores`] copies it over once).

use std::sync::Arc;

use super::flusher::Flusher;
use super::{Batch, FlushDone, FlushStats, Kv, KvError, KvResult, KvTree};

fn io(e: sled::Error) -> KvError {
    KvError::Io(e.to_string())
}

pub struct SledKv {
    db: sled::Db,
    flusher: Flusher,
}

impl SledKv {
    /// Opens the database at `path`, with a page cache of `cache_bytes`.
    pub fn open(path: &std::path::Path, cache_bytes: u64) -> KvResult<Arc<SledKv>> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // Durability comes from our own flushes; sled's timer would only add fsyncs.
            .flush_every_ms(None)
            .open()
            .map_err(io)?;
        let flushed = db.clone();
        let flusher =
            Flusher::spawn("boxoffice-flush", move || flushed.flush().map(|_| ()).map_err(|e| e.to_string()))?;
        Ok(Arc::new(SledKv { db, flusher }))
    }
}

impl Drop for SledKv {
    /// Answers the waiting flushes, stops the flusher and releases the database's file lock, so
    /// the same directory can be opened again at once.
    fn drop(&mut self) {
        self.flusher.stop();
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

impl Kv for SledKv {
    fn tree(&self, name: &str) -> KvResult<Arc<dyn KvTree>> {
        Ok(Arc::new(SledTree(self.db.open_tree(name).map_err(io)?)))
    }

    fn tree_names(&self) -> KvResult<Vec<String>> {
        Ok(self.db.tree_names().into_iter().map(|n| String::from_utf8_lossy(&n).into_owned()).collect())
    }

    fn drop_tree(&self, name: &str) -> KvResult<()> {
        self.db.drop_tree(name).map(|_| ()).map_err(io)
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

struct SledTree(sled::Tree);

impl KvTree for SledTree {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        Ok(self.0.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn write(&self, batch: Batch) -> KvResult<()> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.0.apply_batch(b).map_err(io)
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> KvResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.0.range(from..to).take(limit).map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io)).collect()
    }

    fn last(&self, from: &[u8], to: &[u8]) -> KvResult<Option<(Vec<u8>, Vec<u8>)>> {
        match self.0.range(from..to).next_back() {
            None => Ok(None),
            Some(r) => r.map(|(k, v)| Some((k.to_vec(), v.to_vec()))).map_err(io),
        }
    }
}
