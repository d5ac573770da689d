//! The group-commit flusher of the on-disk stores: one thread that takes one flush request, then
//! every request already waiting, syncs once and answers them all, in the order they came.
//! After a failed sync every later request fails with the same error without syncing: what the
//! failed one covered may be gone from the disk while still in the page cache, and a later sync
//! that succeeds would not bring it back (see the `Kv` contract).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use super::{FlushDone, FlushStats, KvError, KvResult};

/// Flush requests served by one sync at most; bounds the latency of the last one in a batch.
const FLUSH_BATCH_REQUESTS_MAX: usize = 65_536;
/// A sync slower than this is logged.
const SLOW_FLUSH: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Default)]
struct Stats {
    flushes: AtomicU64,
    requests: AtomicU64,
    /// The error of the sync that failed, once one has.
    failure: Mutex<Option<String>>,
}

pub(super) struct Flusher {
    /// `None` once closing: the thread ends when this sender is gone.
    requests: Mutex<Option<mpsc::Sender<FlushDone>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<Stats>,
}

impl Flusher {
    /// Starts the thread `name`, which makes writes durable with `sync`.
    pub(super) fn spawn(
        name: &str,
        mut sync: impl FnMut() -> Result<(), String> + Send + 'static,
    ) -> KvResult<Flusher> {
        let (tx, rx) = mpsc::channel::<FlushDone>();
        let stats = Arc::new(Stats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(&mut sync, &rx, &thread_stats))
            .map_err(|e| KvError::Io(format!("starting {name}: {e}")))?;
        Ok(Flusher { requests: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), stats })
    }

    pub(super) fn request(&self, done: FlushDone) {
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

    pub(super) fn stats(&self) -> FlushStats {
        FlushStats {
            flushes: self.stats.flushes.load(Ordering::Relaxed),
            requests: self.stats.requests.load(Ordering::Relaxed),
        }
    }

    pub(super) fn failure(&self) -> Option<String> {
        self.stats.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Answers the waiting requests and stops the thread.
    pub(super) fn stop(&self) {
        drop(self.requests.lock().map(|mut r| r.take()));
        if let Some(handle) = self.thread.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(sync: &mut dyn FnMut() -> Result<(), String>, rx: &mpsc::Receiver<FlushDone>, stats: &Stats) {
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
        let result = sync();
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
