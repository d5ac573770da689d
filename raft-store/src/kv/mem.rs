//! The in-memory twin of the sled backend, with crash semantics: `crash()` returns the store a
//! restarted process would find, holding only what was flushed.
//!
//! Flushes complete at once by default. In `deferred` mode they complete only when
//! `complete_flushes` is called, so a test can acknowledge nothing yet and crash. Under the
//! simulation, `with_flush_delay` makes each flush take a random simulated time, so a crash can
//! fall between a write and its flush.
//!
//! Disk faults, each chosen by the caller (the simulation draws them from its seed):
//! - `crash_torn`: the disk got part of the way through the unflushed writes — a prefix of them
//!   survives whole, and the write at the cut, if it only added new keys, survives as a prefix of
//!   its bytes (a torn write);
//! - `fail_flushes`: the next flush reports an error, and what it covered never becomes durable;
//!   the store then fails every later flush too (see `State::failed`);
//! - `corrupt`: a stored value's bits change (bit rot, a bad sector), in what reads see and in
//!   what survives a crash; `repair` puts the bytes back, as restoring the replica would.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use super::{Batch, FlushDone, FlushStats, Kv, KvResult, KvTree};

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;
type Trees = BTreeMap<String, Tree>;

/// One write not yet durable.
#[derive(Clone)]
enum Write {
    /// One batch on one tree: keys set (`Some`) or removed (`None`), atomic across a crash
    /// unless torn (`crash_torn`).
    Batch(String, Vec<(Vec<u8>, Option<Vec<u8>>)>),
    /// A whole tree removed: once durable, a restarted process does not find it at all.
    DropTree(String),
}

impl Write {
    fn apply(self, trees: &mut Trees) {
        match self {
            Write::Batch(tree, ops) => {
                let t = trees.entry(tree).or_default();
                for (key, value) in ops {
                    match value {
                        Some(v) => t.insert(key, v),
                        None => t.remove(&key),
                    };
                }
            }
            Write::DropTree(tree) => {
                trees.remove(&tree);
            }
        }
    }
}

/// A value whose bytes `corrupt` changed: enough to put them back.
#[derive(Clone)]
struct Damage {
    tree: String,
    key: Vec<u8>,
    original: Vec<u8>,
    rotten: Vec<u8>,
}

#[derive(Default)]
struct State {
    /// What reads see.
    current: Trees,
    /// What survives a crash.
    durable: Trees,
    /// Writes not yet durable, in order.
    journal: VecDeque<Write>,
    /// Position of `journal[0]` among all writes ever made: flushes that finish out of order
    /// persist up to their own position, never past it.
    journal_start: u64,
    /// In deferred mode: flush requests waiting, each with the write position it covers and
    /// whether it fails.
    pending: Vec<(u64, bool, FlushDone)>,
    /// The next flush requested fails.
    fail_next_flush: bool,
    /// A flush has failed. Like a kernel that marks the pages of a failed fsync clean and
    /// reports success to the next one (PostgreSQL's "fsyncgate"), this store dropped what the
    /// failed flush covered; unlike that kernel, it says so: every later flush fails too, until
    /// the process restarts on what is durable.
    failed: bool,
    /// Values `corrupt` changed and `repair` has not put back.
    damage: Vec<Damage>,
}

impl State {
    fn written(&self) -> u64 {
        self.journal_start + self.journal.len() as u64
    }

    /// Whether a flush requested now fails; a failure is for good.
    fn flush_fails(&mut self) -> bool {
        self.failed |= std::mem::take(&mut self.fail_next_flush);
        self.failed
    }

    /// Ends a flush covering the writes before position `upto`: they become durable, or, if it
    /// failed, they never will.
    fn finish_flush(&mut self, upto: u64, failed: bool) {
        let count = upto.saturating_sub(self.journal_start).min(self.journal.len() as u64) as usize;
        for write in self.journal.drain(..count) {
            if !failed {
                write.apply(&mut self.durable);
            }
        }
        self.journal_start += count as u64;
    }
}

fn flush_result(failed: bool) -> Result<(), std::io::Error> {
    if failed {
        Err(std::io::Error::other("flush failed (injected disk fault)"))
    } else {
        Ok(())
    }
}

/// What a torn crash left of the writes that were not flushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashLoss {
    /// Writes not yet durable at the crash.
    pub unflushed: usize,
    /// How many of them, in order, survived whole.
    pub kept: usize,
    /// The write at the cut, if it survived in part.
    pub torn: Option<TornWrite>,
}

/// The value a torn write left: the first `bytes_kept` of `bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornWrite {
    pub tree: String,
    pub key: Vec<u8>,
    pub bytes_kept: usize,
    pub bytes: usize,
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

    /// The store a restarted process finds, holding `image`; pending flushes never complete.
    /// Rotten values stay rotten (and repairable).
    fn reopened(&self, image: Trees, damage: Vec<Damage>) -> Arc<MemKv> {
        let survivor = State { current: image.clone(), durable: image, damage, ..State::default() };
        Arc::new(MemKv {
            state: Arc::new(Mutex::new(survivor)),
            deferred: self.deferred,
            #[cfg(madsim)]
            flush_delay_us: self.flush_delay_us,
            ..MemKv::default()
        })
    }

    /// The store a restarted process finds: flushed writes only.
    pub fn crash(&self) -> Arc<MemKv> {
        let state = self.lock();
        let (durable, damage) = (state.durable.clone(), state.damage.clone());
        drop(state);
        self.reopened(durable, damage)
    }

    /// A crash that got part of the way through the unflushed writes: the writes before a cut
    /// survive whole, the write at the cut survives as a prefix of its bytes (cut where `rng`
    /// picks) if it is tearable, and the rest are lost. A write is tearable if it only adds keys
    /// that `tearable(tree, key)` allows and that are not on disk yet; any other write at the cut
    /// is lost whole, since a store keeps an overwritten value until its replacement is complete
    /// and keeps batches atomic. The cut falls at a tearable write if there is one (`rng` picks
    /// which), so a crash tears whenever it can; otherwise anywhere.
    pub fn crash_torn(
        &self,
        rng: &mut dyn rand::RngCore,
        tearable: &dyn Fn(&str, &[u8]) -> bool,
    ) -> (Arc<MemKv>, CrashLoss) {
        let state = self.lock();
        let unflushed = state.journal.len();
        let mut image = state.durable.clone();
        let mut cuts = Vec::new();
        for (at, write) in state.journal.iter().enumerate() {
            if matches!(write, Write::Batch(tree, ops) if is_tearable(&image, tree, ops, tearable)) {
                cuts.push(at);
            }
            write.clone().apply(&mut image);
        }
        let kept = if cuts.is_empty() { rng.gen_range(0..=unflushed) } else { cuts[rng.gen_range(0..cuts.len())] };
        let mut image = state.durable.clone();
        let mut writes = state.journal.iter();
        for write in writes.by_ref().take(kept) {
            write.clone().apply(&mut image);
        }
        let torn = match writes.next() {
            Some(Write::Batch(tree, ops)) if is_tearable(&image, tree, ops, tearable) => {
                tear(&mut image, tree, ops, rng)
            }
            _ => None,
        };
        let damage = state.damage.clone();
        drop(state);
        (self.reopened(image, damage), CrashLoss { unflushed, kept, torn })
    }

    /// Completes every pending flush (deferred mode).
    pub fn complete_flushes(&self) {
        let done = {
            let mut state = self.lock();
            let pending = std::mem::take(&mut state.pending);
            for (upto, failed, _) in &pending {
                state.finish_flush(*upto, *failed);
            }
            pending
        };
        for (_, failed, d) in done {
            d(flush_result(failed));
        }
    }

    /// Makes the next flush requested fail (and, with it, every later one).
    pub fn fail_flushes(&self) {
        self.lock().fail_next_flush = true;
    }

    /// Whether a flush has failed on this store.
    pub fn flush_failed(&self) -> bool {
        self.lock().failed
    }

    /// Bit rot: XORs byte `at` of the value stored at `key` in `tree` with `mask`, in what reads
    /// see and in what survives a crash. Only a durable value can rot (an unflushed one is still
    /// in memory). Returns whether there was such a value.
    pub fn corrupt(&self, tree: &str, key: &[u8], at: usize, mask: u8) -> bool {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(original) = state.durable.get(tree).and_then(|t| t.get(key)).cloned() else { return false };
        if at >= original.len() || mask == 0 {
            return false;
        }
        let mut rotten = original.clone();
        rotten[at] ^= mask;
        for trees in [&mut state.durable, &mut state.current] {
            if let Some(value) = trees.get_mut(tree).and_then(|t| t.get_mut(key)).filter(|v| **v == original) {
                value.clone_from(&rotten);
            }
        }
        state.damage.push(Damage { tree: tree.to_owned(), key: key.to_vec(), original, rotten });
        true
    }

    /// Puts back the bytes of every value `corrupt` changed that still holds the rotten bytes,
    /// as restoring the replica from a good copy would. Returns how many it put back.
    pub fn repair(&self) -> usize {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut repaired = 0;
        for Damage { tree, key, original, rotten } in std::mem::take(&mut state.damage) {
            for trees in [&mut state.durable, &mut state.current] {
                if let Some(value) = trees.get_mut(&tree).and_then(|t| t.get_mut(&key)).filter(|v| **v == rotten) {
                    value.clone_from(&original);
                    repaired += 1;
                }
            }
        }
        repaired
    }

    /// Completes a flush after a simulated delay, in the order flushes were requested.
    #[cfg(madsim)]
    fn flush_later(&self, (min, max): (u64, u64), upto: u64, failed: bool, done: FlushDone) {
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
            shared.lock().unwrap_or_else(|e| e.into_inner()).finish_flush(upto, failed);
            done(flush_result(failed));
        });
    }
}

/// Whether `ops` only add keys to `tree` that `tearable` allows and `image` does not hold.
fn is_tearable(
    image: &Trees,
    tree: &str,
    ops: &[(Vec<u8>, Option<Vec<u8>>)],
    tearable: &dyn Fn(&str, &[u8]) -> bool,
) -> bool {
    let on_disk = image.get(tree);
    let bytes: usize = ops.iter().filter_map(|(_, v)| v.as_ref().map(Vec::len)).sum();
    bytes > 0
        && ops
            .iter()
            .all(|(key, value)| value.is_some() && tearable(tree, key) && on_disk.is_none_or(|t| !t.contains_key(key)))
}

/// Tears `ops` (tearable) onto `image`: a prefix of their values' bytes survives, cut inside one
/// value (possibly before its first byte).
fn tear(
    image: &mut Trees,
    tree: &str,
    ops: &[(Vec<u8>, Option<Vec<u8>>)],
    rng: &mut dyn rand::RngCore,
) -> Option<TornWrite> {
    let bytes: usize = ops.iter().filter_map(|(_, v)| v.as_ref().map(Vec::len)).sum();
    let mut cut = rng.gen_range(0..bytes);
    let target = image.entry(tree.to_owned()).or_default();
    for (key, value) in ops {
        let value = value.as_ref()?;
        if cut < value.len() {
            target.insert(key.clone(), value[..cut].to_vec());
            return Some(TornWrite { tree: tree.to_owned(), key: key.clone(), bytes_kept: cut, bytes: value.len() });
        }
        target.insert(key.clone(), value.clone());
        cut -= value.len();
    }
    None
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
        let (upto, failed) = {
            let mut state = self.lock();
            let upto = state.written();
            let failed = state.flush_fails();
            if self.deferred {
                state.pending.push((upto, failed, done));
                return;
            }
            (upto, failed)
        };
        self.flushes.fetch_add(1, Ordering::Relaxed);
        #[cfg(madsim)]
        if let Some(bounds) = self.flush_delay_us {
            self.flush_later(bounds, upto, failed, done);
            return;
        }
        self.lock().finish_flush(upto, failed);
        done(flush_result(failed));
    }

    fn flush_stats(&self) -> FlushStats {
        FlushStats { flushes: self.flushes.load(Ordering::Relaxed), requests: self.requests.load(Ordering::Relaxed) }
    }

    fn failure(&self) -> Option<String> {
        self.flush_failed().then(|| "flush failed (injected disk fault)".to_owned())
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
        if batch.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        let tree = state.current.entry(self.name.clone()).or_default();
        for (key, value) in &batch.ops {
            match value {
                Some(v) => tree.insert(key.clone(), v.clone()),
                None => tree.remove(key),
            };
        }
        state.journal.push_back(Write::Batch(self.name.clone(), batch.ops));
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
    use rand::SeedableRng;

    use super::*;

    fn put(tree: &Arc<dyn KvTree>, pairs: &[(&[u8], &[u8])]) {
        let mut b = Batch::default();
        for (k, v) in pairs {
            b.put(k.to_vec(), v.to_vec());
        }
        tree.write(b).unwrap();
    }

    fn flush_now(kv: &MemKv) -> Result<(), std::io::Error> {
        let result = Arc::new(Mutex::new(None));
        let r = result.clone();
        kv.flush(Box::new(move |x| *r.lock().unwrap() = Some(x)));
        kv.complete_flushes();
        let x = result.lock().unwrap().take();
        x.expect("called back")
    }

    #[test]
    fn crash_keeps_flushed_writes_only() {
        let kv = MemKv::deferred();
        let tree = kv.tree("t").unwrap();
        put(&tree, &[(b"a", b"1")]);
        flush_now(&kv).unwrap();
        put(&tree, &[(b"b", b"2")]);
        assert_eq!(tree.get(b"b").unwrap(), Some(b"2".to_vec()), "visible before flush");

        let restarted = kv.crash();
        let tree = restarted.tree("t").unwrap();
        assert_eq!(tree.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(tree.get(b"b").unwrap(), None, "unflushed write lost");
    }

    #[test]
    fn a_dropped_tree_is_gone_after_a_flush_and_whole_before_it() {
        let kv = MemKv::deferred();
        put(&kv.tree("t").unwrap(), &[(b"a", b"1")]);
        flush_now(&kv).unwrap();

        kv.drop_tree("t").unwrap();
        assert!(kv.tree_names().unwrap().is_empty());
        let before_flush = kv.crash();
        assert_eq!(before_flush.tree_names().unwrap(), vec!["t".to_owned()]);
        assert_eq!(before_flush.tree("t").unwrap().get(b"a").unwrap(), Some(b"1".to_vec()));

        flush_now(&kv).unwrap();
        assert!(kv.crash().tree_names().unwrap().is_empty(), "no empty tree left behind");
    }

    #[test]
    fn a_torn_crash_keeps_a_prefix_of_the_writes_and_tears_a_new_key() {
        let everything: &dyn Fn(&str, &[u8]) -> bool = &|_, _| true;
        let mut kept_seen = BTreeMap::new();
        for seed in 0..200 {
            let kv = MemKv::deferred();
            let tree = kv.tree("t").unwrap();
            put(&tree, &[(b"k0", b"durable")]);
            flush_now(&kv).unwrap();
            put(&tree, &[(b"k1", b"aaaa"), (b"k2", b"bbbb")]);
            put(&tree, &[(b"k0", b"overwritten")]);
            put(&tree, &[(b"k3", b"cccc")]);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (after, loss) = kv.crash_torn(&mut rng, everything);
            let t = after.tree("t").unwrap();
            let get = |k: &[u8]| t.get(k).unwrap();
            assert_eq!(loss.unflushed, 3);
            *kept_seen.entry(loss.kept).or_insert(0) += 1;
            let torn = loss.torn.expect("the cut falls at a write that adds keys");
            assert!(torn.bytes_kept < torn.bytes);
            assert_eq!(get(&torn.key).unwrap().len(), torn.bytes_kept);
            if loss.kept == 2 {
                // Whole writes, in order, up to the cut.
                assert_eq!(torn.key, b"k3".to_vec());
                assert_eq!(get(b"k0").unwrap(), b"overwritten".to_vec());
                assert_eq!((get(b"k1"), get(b"k2")), (Some(b"aaaa".to_vec()), Some(b"bbbb".to_vec())));
            } else {
                assert_eq!(loss.kept, 0, "an overwrite is never torn");
                assert_eq!((get(b"k0").unwrap(), get(b"k3")), (b"durable".to_vec(), None));
            }
        }
        assert_eq!(kept_seen.len(), 2, "both appends get torn: {kept_seen:?}");

        // Nothing tearable: the cut falls anywhere, and tears nothing.
        let kv = MemKv::deferred();
        let tree = kv.tree("t").unwrap();
        put(&tree, &[(b"k0", b"durable")]);
        flush_now(&kv).unwrap();
        put(&tree, &[(b"k0", b"overwritten")]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let nothing: &dyn Fn(&str, &[u8]) -> bool = &|_, _| false;
        put(&tree, &[(b"k1", b"new")]);
        let (_, loss) = kv.crash_torn(&mut rng, nothing);
        assert_eq!(loss.torn, None);
    }

    #[test]
    fn a_failed_flush_loses_what_it_covered_and_every_later_flush_fails() {
        let kv = MemKv::deferred();
        let tree = kv.tree("t").unwrap();
        put(&tree, &[(b"a", b"1")]);
        flush_now(&kv).unwrap();
        kv.fail_flushes();
        put(&tree, &[(b"b", b"2")]);
        assert!(flush_now(&kv).is_err());
        assert_eq!(tree.get(b"b").unwrap(), Some(b"2".to_vec()), "still readable");
        put(&tree, &[(b"c", b"3")]);
        assert!(flush_now(&kv).is_err(), "no flush succeeds after a failed one");
        assert!(kv.flush_failed());

        let restarted = kv.crash();
        let tree = restarted.tree("t").unwrap();
        assert_eq!(tree.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!((tree.get(b"b").unwrap(), tree.get(b"c").unwrap()), (None, None));
        assert!(!restarted.flush_failed());
        put(&tree, &[(b"d", b"4")]);
        flush_now(&restarted).unwrap();
    }

    #[test]
    fn corruption_survives_a_crash_until_repaired() {
        let kv = MemKv::deferred();
        let tree = kv.tree("t").unwrap();
        put(&tree, &[(b"a", b"\x01\x02")]);
        assert!(!kv.corrupt("t", b"a", 0, 0x80), "an unflushed value does not rot");
        flush_now(&kv).unwrap();
        assert!(kv.corrupt("t", b"a", 1, 0x01));
        assert_eq!(tree.get(b"a").unwrap(), Some(b"\x01\x03".to_vec()));
        let restarted = kv.crash();
        assert_eq!(restarted.tree("t").unwrap().get(b"a").unwrap(), Some(b"\x01\x03".to_vec()));
        assert_eq!(kv.repair(), 2);
        assert_eq!(tree.get(b"a").unwrap(), Some(b"\x01\x02".to_vec()));
    }
}
