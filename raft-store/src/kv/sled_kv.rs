//! The production backend: one sled database per node, one tree per Raft group, and a flusher
//! thread that serves every waiting flush request with one `fsync`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::{Batch, FlushDone, FlushStats, Kv, KvError, KvResult, KvTree};

/// Flush requests served by one `fsync` at most; bounds the latency of the last one in a batch.
const FLUSH_BATCH_REQUESTS_MAX: usize = 65_536;

/// A flush slower than this is logged.
const SLOW_FLUSH: std::time::Duration = std::time::Duration::from_millis(50);

fn io(e: sled::Error) -> KvError {
    KvError::Io(e.to_string())
}

pub struct SledKv {
    db: sled::Db,
    /// `None` once closing: the flusher thread ends when this sender is gone.
    requests: Mutex<Option<mpsc::Sender<FlushDone>>>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    flushes: AtomicU64,
    requests: AtomicU64,
    /// The error of the flush that failed, once one has.
    failure: Mutex<Option<String>>,
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
        let (tx, rx) = mpsc::channel::<FlushDone>();
        let stats = Arc::new(Stats::default());
        let flusher_db = db.clone();
        let flusher_stats = stats.clone();
        let flusher = std::thread::Builder::new()
            .name("boxoffice-flush".into())
            .spawn(move || run_flusher(flusher_db, rx, flusher_stats))
            .map_err(|e| KvError::Io(e.to_string()))?;
        Ok(Arc::new(SledKv { db, requests: Mutex::new(Some(tx)), flusher: Mutex::new(Some(flusher)), stats }))
    }
}

impl Drop for SledKv {
    /// Answers the waiting flushes, stops the flusher and releases the database's file lock, so
    /// the same directory can be opened again at once.
    fn drop(&mut self) {
        drop(self.requests.lock().map(|mut r| r.take()));
        if let Some(handle) = self.flusher.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// Group commit: take one request, then every request already waiting, flush once, answer all.
/// After a failed flush, every later request fails with the same error without flushing: what
/// the failed one covered may be gone from the disk while still in the page cache, and a later
/// `fsync` that succeeds would not bring it back (see the `Kv` contract).
fn run_flusher(db: sled::Db, rx: mpsc::Receiver<FlushDone>, stats: Arc<Stats>) {
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        while waiting.len() < FLUSH_BATCH_REQUESTS_MAX {
            match rx.try_recv() {
                Ok(more) => waiting.push(more),
                Err(_) => break,
            }
        }
        if let Some(e) = &failed {
            for done in waiting {
                done(Err(std::io::Error::other(format!("an earlier flush failed: {e}"))));
            }
            continue;
        }
        let started = std::time::Instant::now();
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        let took = started.elapsed();
        metrics::histogram!("boxoffice_storage_flush_seconds").record(took.as_secs_f64());
        if took > SLOW_FLUSH {
            tracing::info!(took_ms = took.as_millis(), requests = waiting.len(), "slow flush");
        }
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats.requests.fetch_add(waiting.len() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "flush failed; every later flush fails too");
            failed = Some(e.clone());
            *stats.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        }
        for done in waiting {
            done(result.clone().map_err(std::io::Error::other));
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
        let sent = match self.requests.lock() {
            Ok(guard) => match guard.as_ref() {
                Some(tx) => tx.send(done).map_err(|e| e.0),
                None => Err(done),
            },
            Err(_) => Err(done),
        };
        if let Err(done) = sent {
            done(Err(std::io::Error::other("flusher stopped")));
        }
    }

    fn flush_stats(&self) -> FlushStats {
        FlushStats {
            flushes: self.stats.flushes.load(Ordering::Relaxed),
            requests: self.stats.requests.load(Ordering::Relaxed),
        }
    }

    fn failure(&self) -> Option<String> {
        self.stats.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
