//! The in-memory twin of the sled backend, with crash semantics: `crash()` returns the store a
//! restarted process would find, holding only what was flushed.
//!
//! Flushes complete at once by default. In `deferred` mode they complete only when
//! `complete_flushes` is called, so a test can acknowledge nothing yet and crash. Under the
//! simulation, `with_flush_delay` makes each flush take a random simulated time, so a crash can
//! fall between a write and its flush.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Batch, FlushDone, FlushStats, Kv, KvResult, KvTree};

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// One write not yet durable.
enum Write {
    /// A key set (`Some`) or removed (`None`) in a tree.
    Key(String, Vec<u8>, Option<Vec<u8>>),
    /// A whole tree removed: once durable, a restarted process does not find it at all.
    DropTree(String),
}

#[derive(Default)]
struct State {
    /// What reads see.
    current: BTreeMap<String, Tree>,
    /// What survives a crash.
    durable: BTreeMap<String, Tree>,
    /// Writes not yet durable, in order.
    journal: std::collections::VecDeque<Write>,
    /// Position of `journal[0]` among all writes ever made: flushes that finish out of order
    /// persist up to their own position, never past it.
    journal_start: u64,
    /// In deferred mode: flush requests waiting, each with the write position it covers.
    pending: Vec<(u64, FlushDone)>,
}

impl State {
    fn written(&self) -> u64 {
        self.journal_start + self.journal.len() as u64
    }
}

#[derive(Default)]
pub struct MemKv {
    state: Arc<Mutex<State>>,
    deferred: bool,
    /// Under the simulation: each flush takes a random time in this range, in microseconds.
    #[cfg(madsim)]
    flush_delay_us: Option<(u64, u64)>,
    /// Under the simulation: when the last flush requested completes. Flushes complete in the
    /// order they were asked for, as the production flusher's do.
    #[cfg(madsim)]
    last_flush_done: Mutex<Option<madsim::time::Instant>>,
    flushes: AtomicU64,
    requests: AtomicU64,
}

impl MemKv {
    pub fn new() -> Arc<MemKv> {
        Arc::new(MemKv::default())
    }

    /// A store whose flushes wait for `complete_flushes`.
    pub fn deferred() -> Arc<MemKv> {
        Arc::new(MemKv { deferred: true, ..MemKv::default() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a test already panicked; keep going to report the first failure.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A store whose flushes each take a random simulated time between the bounds.
    #[cfg(madsim)]
    pub fn with_flush_delay(min: std::time::Duration, max: std::time::Duration) -> Arc<MemKv> {
        let bounds = (min.as_micros() as u64, (max.as_micros() as u64).max(min.as_micros() as u64 + 1));
        Arc::new(MemKv { flush_delay_us: Some(bounds), ..MemKv::default() })
    }

    /// The store a restarted process finds: flushed writes only. Pending flushes never complete.
    pub fn crash(&self) -> Arc<MemKv> {
        let state = self.lock();
        let survivor = State { current: state.durable.clone(), durable: state.durable.clone(), ..State::default() };
        Arc::new(MemKv {
            state: Arc::new(Mutex::new(survivor)),
            deferred: self.deferred,
            #[cfg(madsim)]
            flush_delay_us: self.flush_delay_us,
            ..MemKv::default()
        })
    }

    /// Completes every pending flush (deferred mode).
    pub fn complete_flushes(&self) {
        let done = {
            let mut state = self.lock();
            let upto = state.written();
            Self::persist(&mut state, upto);
            std::mem::take(&mut state.pending)
        };
        for (_, d) in done {
            d(Ok(()));
        }
    }

    /// Makes every write before position `upto` durable.
    fn persist(state: &mut State, upto: u64) {
        let count = upto.saturating_sub(state.journal_start).min(state.journal.len() as u64) as usize;
        let State { durable, journal, .. } = state;
        for write in journal.drain(..count) {
            match write {
                Write::Key(tree, key, value) => {
                    let t = durable.entry(tree).or_default();
                    match value {
                        Some(v) => t.insert(key, v),
                        None => t.remove(&key),
                    };
                }
                Write::DropTree(tree) => {
                    durable.remove(&tree);
                }
            }
        }
        state.journal_start += count as u64;
    }
}

impl Kv for MemKv {
    fn tree(&self, name: &str) -> KvResult<Arc<dyn KvTree>> {
        self.lock().current.entry(name.to_owned()).or_default();
        Ok(Arc::new(MemTree { state: self.state.clone(), name: name.to_owned() }))
    }

    fn tree_names(&self) -> KvResult<Vec<String>> {
        Ok(self.lock().current.keys().cloned().collect())
    }

    fn drop_tree(&self, name: &str) -> KvResult<()> {
        let mut state = self.lock();
        // Journaled, so a crash before the next flush brings the tree back whole, and one after
        // it finds no tree (not an empty one), as with sled.
        state.journal.push_back(Write::DropTree(name.to_owned()));
        state.current.remove(name);
        Ok(())
    }

    fn flush(&self, done: FlushDone) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = self.lock();
            let upto = state.written();
            if self.deferred {
                state.pending.push((upto, done));
                return;
            }
            #[cfg(madsim)]
            if let Some((min, max)) = self.flush_delay_us {
                use rand::Rng;
                let delay = std::time::Duration::from_micros(madsim::rand::thread_rng().gen_range(min..max));
                let done_at = {
                    let mut last = self.last_flush_done.lock().unwrap_or_else(|e| e.into_inner());
                    let at = (madsim::time::Instant::now() + delay).max(last.unwrap_or(madsim::time::Instant::now()));
                    *last = Some(at);
                    at
                };
                let shared = self.state.clone();
                madsim::task::spawn(async move {
                    madsim::time::sleep_until(done_at).await;
                    {
                        let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                        Self::persist(&mut state, upto);
                    }
                    done(Ok(()));
                });
                self.flushes.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Self::persist(&mut state, upto);
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        done(Ok(()));
    }

    fn flush_stats(&self) -> FlushStats {
        FlushStats { flushes: self.flushes.load(Ordering::Relaxed), requests: self.requests.load(Ordering::Relaxed) }
    }
}

struct MemTree {
    state: Arc<Mutex<State>>,
    name: String,
}

impl MemTree {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KvTree for MemTree {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        Ok(self.lock().current.get(&self.name).and_then(|t| t.get(key)).cloned())
    }

    fn write(&self, batch: Batch) -> KvResult<()> {
        let mut state = self.lock();
        for (key, value) in batch.ops {
            let tree = state.current.entry(self.name.clone()).or_default();
            match &value {
                Some(v) => tree.insert(key.clone(), v.clone()),
                None => tree.remove(&key),
            };
            state.journal.push_back(Write::Key(self.name.clone(), key, value));
        }
        Ok(())
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> KvResult<Vec<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let state = self.lock();
        let Some(tree) = state.current.get(&self.name) else { return Ok(Vec::new()) };
        Ok(tree.range(from.to_vec()..to.to_vec()).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn last(&self, from: &[u8], to: &[u8]) -> KvResult<Option<(Vec<u8>, Vec<u8>)>> {
        if from >= to {
            return Ok(None);
        }
        let state = self.lock();
        let Some(tree) = state.current.get(&self.name) else { return Ok(None) };
        Ok(tree.range(from.to_vec()..to.to_vec()).next_back().map(|(k, v)| (k.clone(), v.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_flushed_writes_only() {
        let kv = MemKv::deferred();
        let tree = kv.tree("t").unwrap();
        let mut b = Batch::default();
        b.put(b"a".to_vec(), b"1".to_vec());
        tree.write(b).unwrap();
        kv.flush(Box::new(|r| r.unwrap()));
        kv.complete_flushes();
        let mut b = Batch::default();
        b.put(b"b".to_vec(), b"2".to_vec());
        tree.write(b).unwrap();
        assert_eq!(tree.get(b"b").unwrap(), Some(b"2".to_vec()), "visible before flush");

        let restarted = kv.crash();
        let tree = restarted.tree("t").unwrap();
        assert_eq!(tree.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(tree.get(b"b").unwrap(), None, "unflushed write lost");
    }

    #[test]
    fn a_dropped_tree_is_gone_after_a_flush_and_whole_before_it() {
        let kv = MemKv::deferred();
        let mut b = Batch::default();
        b.put(b"a".to_vec(), b"1".to_vec());
        kv.tree("t").unwrap().write(b).unwrap();
        kv.flush(Box::new(|r| r.unwrap()));
        kv.complete_flushes();

        kv.drop_tree("t").unwrap();
        assert!(kv.tree_names().unwrap().is_empty());
        let before_flush = kv.crash();
        assert_eq!(before_flush.tree_names().unwrap(), vec!["t".to_owned()]);
        assert_eq!(before_flush.tree("t").unwrap().get(b"a").unwrap(), Some(b"1".to_vec()));

        kv.flush(Box::new(|r| r.unwrap()));
        kv.complete_flushes();
        assert!(kv.crash().tree_names().unwrap().is_empty(), "no empty tree left behind");
    }
}
