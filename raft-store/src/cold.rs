//! The cold side of a group's state: records that apply writes to disk instead of keeping in
//! memory — outcomes remembered for idempotency, and the archive of ended events.
//!
//! A group's hot state (`Machine`) lives in memory and reaches disk only in snapshots; its cold
//! records live in a tree of their own and are written as apply goes. The two must agree on
//! every replica and across restarts, which takes three rules:
//!
//! - **Records are immutable and stamped.** Apply only adds records (a key is written once, or
//!   rewritten with the same bytes when an entry is applied again after a restart), and each
//!   carries the log index that wrote it. Nothing but the collector below ever deletes one.
//! - **Apply sees the store as of its entry.** A record stamped at or after the entry being
//!   applied is invisible to it: after a crash, the tree may hold records written by entries the
//!   restarted node applies again, and those must not answer for themselves. A record that
//!   expires (an idempotency outcome) is invisible from its expiry on, by the entry's time.
//! - **Deletion waits for every reader.** The collector deletes an expired record only once it is
//!   expired at the time of the newest durable snapshot and at the time of every view still
//!   being read (a snapshot on its way to a peer or to a backup). A restarted node replays from
//!   that snapshot, at times no earlier than its time, so no later apply can see a deleted record
//!   as live.
//!
//! A view (`ColdStore::view`) is the cold half of a snapshot at index `S`: every record stamped
//! at or before `S` and not expired at the snapshot's time. Records written meanwhile are
//! stamped after `S` and skipped, and the ones it shows cannot be deleted while it lives, so a
//! view is consistent while apply goes on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::ids::GroupId;
use crate::keys::{self, cold::COLD_INDEX, cold::EXPIRY};
use crate::kv::{Batch, Kv, KvError, KvTree};

/// Records read per page when a view or the collector walks the tree.
const SCAN_PAGE_RECORDS: usize = 1_024;
/// Expired records the collector deletes per batch.
const COLLECT_BATCH_RECORDS: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    #[error("cold store: {0}")]
    Kv(#[from] KvError),
    /// A stored record does not decode: stop rather than answer from it.
    #[error("cold store: corrupt record {key:02x?}: {source}")]
    Corrupt { key: Vec<u8>, source: CodecError },
    #[error("cold store: encode: {0}")]
    Encode(CodecError),
}

/// One record as stored: who wrote it, until when it counts, and its body (encoded by the
/// machine, opaque here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdRecord {
    /// The log index of the entry whose apply wrote it.
    pub index: u64,
    /// From this time on (leader-stamped apply time, ms) the record no longer counts; `None`:
    /// kept for good.
    pub expires_ms: Option<i64>,
    pub body: Vec<u8>,
}

impl ColdRecord {
    /// Whether apply of the entry at `index`, at time `now_ms`, sees this record.
    pub fn visible_to(&self, index: u64, now_ms: i64) -> bool {
        self.index < index && self.expires_ms.is_none_or(|t| t > now_ms)
    }

    /// Decodes the body (encoded by the machine), naming the record's key if it does not decode.
    pub(crate) fn decode_body<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<T, ColdError> {
        codec::decode(&self.body).map_err(|source| ColdError::Corrupt { key: key.to_vec(), source })
    }

    /// Whether a snapshot at `index`, taken at `time_ms`, holds this record.
    pub fn in_snapshot(&self, index: u64, time_ms: i64) -> bool {
        self.index <= index && self.expires_ms.is_none_or(|t| t > time_ms)
    }
}

fn decode_record(key: &[u8], bytes: &[u8]) -> Result<ColdRecord, ColdError> {
    codec::decode(bytes).map_err(|source| ColdError::Corrupt { key: key.to_vec(), source })
}

/// A record as a snapshot stream carries it (raw, as a view yields it), checked: its key is in
/// the records' key spaces and its bytes decode. A damaged transfer or backup is refused here
/// rather than installed.
pub(crate) fn check_record(key: &[u8], bytes: &[u8]) -> Result<ColdRecord, ColdError> {
    if key.first().is_none_or(|p| *p >= COLD_INDEX) {
        let source = CodecError::Decode("a record key outside the records' key spaces".into());
        return Err(ColdError::Corrupt { key: key.to_vec(), source });
    }
    decode_record(key, bytes)
}

/// What apply reads of the cold store.
pub trait ColdRead {
    fn get(&self, key: &[u8]) -> Result<Option<ColdRecord>, ColdError>;
    /// Records with `from <= key < to`, ascending, at most `limit`.
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, ColdRecord)>, ColdError>;
}

/// The records one entry's apply wrote, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ColdWrites {
    pub(crate) records: Vec<(Vec<u8>, ColdRecord)>,
}

impl ColdWrites {
    pub fn put(&mut self, key: Vec<u8>, record: ColdRecord) {
        debug_assert!(key.first().is_some_and(|p| *p < COLD_INDEX), "record keys stay below the index");
        self.records.push((key, record));
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The record this entry wrote under `key`, if any: an entry sees its own writes.
    pub fn get(&self, key: &[u8]) -> Option<&ColdRecord> {
        self.records.iter().rev().find(|(k, _)| k == key).map(|(_, r)| r)
    }
}

/// A `ColdRead` that sees an entry's own writes before the store's: two proposals of one entry
/// with the same request id must see each other.
pub struct WithPending<'a> {
    pub store: &'a dyn ColdRead,
    pub pending: &'a ColdWrites,
}

impl ColdRead for WithPending<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<ColdRecord>, ColdError> {
        match self.pending.get(key) {
            Some(record) => Ok(Some(record.clone())),
            None => self.store.get(key),
        }
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, ColdRecord)>, ColdError> {
        let mut merged: BTreeMap<Vec<u8>, ColdRecord> = self.store.scan(from, to, limit)?.into_iter().collect();
        for (key, record) in &self.pending.records {
            if key.as_slice() >= from && key.as_slice() < to {
                merged.insert(key.clone(), record.clone());
            }
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}

/// An empty cold store, for machines used without storage (tests, the api's test cluster).
pub struct NoCold;

impl ColdRead for NoCold {
    fn get(&self, _key: &[u8]) -> Result<Option<ColdRecord>, ColdError> {
        Ok(None)
    }

    fn scan(&self, _from: &[u8], _to: &[u8], _limit: usize) -> Result<Vec<(Vec<u8>, ColdRecord)>, ColdError> {
        Ok(Vec::new())
    }
}

/// An in-memory cold store with the same rules, for tests of the machine and the tiers above.
#[derive(Default)]
pub struct MemCold {
    records: Mutex<BTreeMap<Vec<u8>, ColdRecord>>,
}

impl MemCold {
    pub fn write(&self, writes: ColdWrites) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.extend(writes.records);
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ColdRead for MemCold {
    fn get(&self, key: &[u8]) -> Result<Option<ColdRecord>, ColdError> {
        Ok(self.records.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned())
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, ColdRecord)>, ColdError> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        Ok(records.range(from.to_vec()..to.to_vec()).take(limit).map(|(k, r)| (k.clone(), r.clone())).collect())
    }
}

fn expiry_key(expires_ms: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + key.len());
    out.push(EXPIRY);
    // Offset so negative times sort before positive ones.
    out.extend_from_slice(&((expires_ms as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The key just past every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// Records read per page while looking for the newest visible version of a record.
const VERSION_SCAN_PAGE_RECORDS: usize = 8;

/// The key of the version of a record that the entry at `index` writes. A record that changes is
/// kept as versions under one prefix, newest first (`prefix ++ !index`), since records are never
/// rewritten: a replica applying entries again after a crash must see each as it was.
pub(crate) fn version_key(prefix: &[u8], index: u64) -> Vec<u8> {
    [prefix, &(!index).to_be_bytes()].concat()
}

/// The newest version under `prefix` (keys from [`version_key`]) that the entry at `index`, at
/// `now_ms`, sees: this entry's own writes first, then the newest an earlier entry wrote that has
/// not expired. Versions left by this entry or later ones in an earlier life of the replica sort
/// first and are skipped.
pub(crate) fn newest_version(
    cold: &dyn ColdRead,
    writes: &ColdWrites,
    prefix: &[u8],
    index: u64,
    now_ms: i64,
) -> Result<Option<(Vec<u8>, ColdRecord)>, ColdError> {
    if let Some((key, record)) = writes.records.iter().rev().find(|(key, _)| key.starts_with(prefix)) {
        return Ok(Some((key.clone(), record.clone())));
    }
    let mut from = version_key(prefix, index.saturating_sub(1));
    let to = prefix_end(prefix);
    loop {
        let page = cold.scan(&from, &to, VERSION_SCAN_PAGE_RECORDS)?;
        let Some((last, _)) = page.last() else { return Ok(None) };
        from = [last.as_slice(), &[0]].concat();
        if let Some(found) = page.into_iter().find(|(_, r)| r.visible_to(index, now_ms)) {
            return Ok(Some(found));
        }
    }
}

/// Adds `records` to `tree` in one batch, each with its expiry index entry.
fn write_records(tree: &dyn KvTree, records: &[(Vec<u8>, ColdRecord)]) -> Result<(), ColdError> {
    let mut batch = Batch::default();
    for (key, record) in records {
        if let Some(expires) = record.expires_ms {
            batch.put(expiry_key(expires, key), Vec::new());
        }
        batch.put(key.clone(), codec::encode(record).map_err(ColdError::Encode)?);
    }
    Ok(tree.write(batch)?)
}

/// What holds deletion back: the newest durable snapshot's time and the views being read.
#[derive(Default)]
struct Horizon {
    durable_time_ms: i64,
    views: BTreeMap<u64, i64>,
    next_view: u64,
}

impl Horizon {
    /// Records that expired at or before this time are expired for every reader.
    fn time_ms(&self) -> i64 {
        self.views.values().copied().fold(self.durable_time_ms, i64::min)
    }
}

/// One group's cold records on disk: the tree of the current generation.
pub struct ColdStore {
    kv: Arc<dyn Kv>,
    group: GroupId,
    current: RwLock<(u64, Arc<dyn KvTree>)>,
    horizon: Arc<Mutex<Horizon>>,
    /// The generation the next stage gets: above every generation on disk when opened.
    next_stage: AtomicU64,
}

impl ColdStore {
    /// Opens the generation that `group_tree` names (generation 0 for a new group).
    pub fn open(kv: Arc<dyn Kv>, group_tree: &dyn KvTree, group: GroupId) -> Result<ColdStore, ColdError> {
        let generation = match group_tree.get(&[keys::COLD_GENERATION])? {
            None => 0,
            Some(bytes) => codec::decode(&bytes)
                .map_err(|source| ColdError::Corrupt { key: vec![keys::COLD_GENERATION], source })?,
        };
        let tree = kv.tree(&keys::cold_tree(group, generation))?;
        let mut next_stage = generation + 1;
        for name in kv.tree_names()? {
            match keys::parse_cold_tree(group, &name) {
                // A stage left by an interrupted install: garbage.
                Some(g) if g != generation => {
                    kv.drop_tree(&name)?;
                    next_stage = next_stage.max(g + 1);
                }
                _ => {}
            }
        }
        let current = RwLock::new((generation, tree));
        Ok(ColdStore { kv, group, current, horizon: Arc::default(), next_stage: AtomicU64::new(next_stage) })
    }

    fn tree(&self) -> Arc<dyn KvTree> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn generation(&self) -> u64 {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Stores what one entry's apply wrote. Durable with the next flush of the database.
    pub fn write(&self, writes: &ColdWrites) -> Result<(), ColdError> {
        if writes.is_empty() {
            return Ok(());
        }
        write_records(self.tree().as_ref(), &writes.records)
    }

    /// The cold half of a snapshot at `index`, taken at `time_ms`. Holds the collector back
    /// until it is dropped.
    pub fn view(&self, index: u64, time_ms: i64) -> ColdView {
        let id = {
            let mut horizon = self.horizon.lock().unwrap_or_else(|e| e.into_inner());
            let id = horizon.next_view;
            horizon.next_view += 1;
            horizon.views.insert(id, time_ms);
            id
        };
        ColdView { source: ViewSource::Live { tree: self.tree(), index, time_ms, horizon: self.horizon.clone(), id } }
    }

    /// Notes that a snapshot taken at `time_ms` is durable: replays start no earlier.
    pub fn snapshot_durable(&self, time_ms: i64) {
        let mut horizon = self.horizon.lock().unwrap_or_else(|e| e.into_inner());
        horizon.durable_time_ms = horizon.durable_time_ms.max(time_ms);
    }

    /// Deletes records expired for every reader; returns how many. Bounded work per call.
    pub fn collect_garbage(&self, records_max: usize) -> Result<usize, ColdError> {
        let horizon_ms = self.horizon.lock().unwrap_or_else(|e| e.into_inner()).time_ms();
        let tree = self.tree();
        let end = expiry_key(horizon_ms.saturating_add(1), &[]);
        let mut deleted = 0;
        while deleted < records_max {
            let page = tree.scan(&[EXPIRY], &end, COLLECT_BATCH_RECORDS.min(records_max - deleted))?;
            if page.is_empty() {
                break;
            }
            let mut batch = Batch::default();
            for (index_key, _) in &page {
                batch.delete(index_key[9..].to_vec());
                batch.delete(index_key.clone());
            }
            deleted += page.len();
            tree.write(batch)?;
        }
        Ok(deleted)
    }

    /// A new, empty generation to fill from a snapshot (a peer's or a backup's).
    pub fn stage(&self) -> Result<ColdStage, ColdError> {
        let generation = self.next_stage.fetch_add(1, Ordering::Relaxed);
        let name = keys::cold_tree(self.group, generation);
        let tree = self.kv.tree(&name)?;
        Ok(ColdStage { kv: self.kv.clone(), name, generation, tree, records: 0, switched: false })
    }

    /// Names `stage`'s generation as the group's in `batch`, which the caller writes to the
    /// group's tree with the snapshot the stage belongs to, and flushes, before [`switch`].
    ///
    /// [`switch`]: ColdStore::switch
    pub fn name_generation(&self, stage: &ColdStage, batch: &mut Batch) -> Result<(), ColdError> {
        batch.put(vec![keys::COLD_GENERATION], codec::encode(&stage.generation).map_err(ColdError::Encode)?);
        Ok(())
    }

    /// Switches reads and writes to a filled stage; returns the generation switched away from, for
    /// the caller to drop ([`ColdStore::drop_generation`]).
    pub fn switch(&self, mut stage: ColdStage) -> u64 {
        stage.switched = true;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let old = current.0;
        *current = (stage.generation, stage.tree.clone());
        old
    }

    /// Deletes a generation switched away from (never the current one).
    pub fn drop_generation(&self, generation: u64) -> Result<(), ColdError> {
        if generation != self.generation() {
            self.kv.drop_tree(&keys::cold_tree(self.group, generation))?;
        }
        Ok(())
    }

    /// Deletes every generation of `group`'s cold records (the group left this node).
    pub fn drop_all(kv: &dyn Kv, group: GroupId) -> Result<(), ColdError> {
        for name in kv.tree_names()? {
            if keys::parse_cold_tree(group, &name).is_some() {
                kv.drop_tree(&name)?;
            }
        }
        Ok(())
    }
}

impl ColdRead for ColdStore {
    fn get(&self, key: &[u8]) -> Result<Option<ColdRecord>, ColdError> {
        match self.tree().get(key)? {
            None => Ok(None),
            Some(bytes) => decode_record(key, &bytes).map(Some),
        }
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, ColdRecord)>, ColdError> {
        let to = if to > [COLD_INDEX].as_slice() { &[COLD_INDEX][..] } else { to };
        let page = self.tree().scan(from, to, limit)?;
        page.into_iter().map(|(k, v)| decode_record(&k, &v).map(|r| (k, r))).collect()
    }
}

/// A generation being filled from a snapshot's records. Dropped without being switched to, it
/// deletes its tree.
pub struct ColdStage {
    kv: Arc<dyn Kv>,
    name: String,
    generation: u64,
    tree: Arc<dyn KvTree>,
    records: u64,
    switched: bool,
}

impl Drop for ColdStage {
    fn drop(&mut self) {
        if !self.switched {
            if let Err(e) = self.kv.drop_tree(&self.name) {
                tracing::warn!(tree = %self.name, error = %e, "an abandoned snapshot stage was not deleted");
            }
        }
    }
}

impl ColdStage {
    /// Adds records as they arrive (raw, as a view yields them). Each is checked, so a damaged
    /// transfer or backup is refused here rather than installed.
    pub fn add(&mut self, raw: &[(Vec<u8>, Vec<u8>)]) -> Result<(), ColdError> {
        let records: Vec<(Vec<u8>, ColdRecord)> = raw
            .iter()
            .map(|(key, bytes)| Ok((key.clone(), check_record(key, bytes)?)))
            .collect::<Result<_, ColdError>>()?;
        self.add_checked(&records)
    }

    /// Adds records a [`crate::StreamCheck`] already checked.
    pub(crate) fn add_checked(&mut self, records: &[(Vec<u8>, ColdRecord)]) -> Result<(), ColdError> {
        write_records(self.tree.as_ref(), records)?;
        self.records += records.len() as u64;
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// A view of everything staged (for a snapshot that was received and is handed on).
    pub fn view(&self) -> ColdView {
        ColdView { source: ViewSource::Staged { tree: self.tree.clone() } }
    }
}

enum ViewSource {
    Live { tree: Arc<dyn KvTree>, index: u64, time_ms: i64, horizon: Arc<Mutex<Horizon>>, id: u64 },
    Staged { tree: Arc<dyn KvTree> },
}

/// The cold records of a snapshot, read page by page while apply goes on.
pub struct ColdView {
    source: ViewSource,
}

impl ColdView {
    fn tree(&self) -> &dyn KvTree {
        match &self.source {
            ViewSource::Live { tree, .. } | ViewSource::Staged { tree } => tree.as_ref(),
        }
    }

    fn holds(&self, record: &ColdRecord) -> bool {
        match &self.source {
            ViewSource::Live { index, time_ms, .. } => record.in_snapshot(*index, *time_ms),
            ViewSource::Staged { .. } => true,
        }
    }

    /// The view's records after `after` (`None`: from the start), at most `limit`, raw as stored:
    /// `(key, encoded record)`. `None` once every record was read.
    #[allow(clippy::type_complexity)]
    pub fn page(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Option<(Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>)>, ColdError> {
        let mut from = match after {
            Some(key) => [key, &[0]].concat(),
            None => Vec::new(),
        };
        let mut out = Vec::new();
        loop {
            let raw = self.tree().scan(&from, &[COLD_INDEX], SCAN_PAGE_RECORDS)?;
            let Some((last, _)) = raw.last() else {
                return Ok((!out.is_empty()).then(|| {
                    let last = out.last().map(|(k, _): &(Vec<u8>, Vec<u8>)| k.clone()).unwrap_or_default();
                    (out, last)
                }));
            };
            from = [last.as_slice(), &[0]].concat();
            for (key, bytes) in raw {
                if self.holds(&decode_record(&key, &bytes)?) {
                    out.push((key, bytes));
                }
            }
            if out.len() >= limit {
                let last = out.last().map(|(k, _)| k.clone()).unwrap_or_default();
                return Ok(Some((out, last)));
            }
        }
    }
}

impl Drop for ColdView {
    fn drop(&mut self) {
        if let ViewSource::Live { horizon, id, .. } = &self.source {
            horizon.lock().unwrap_or_else(|e| e.into_inner()).views.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;

    fn record(index: u64, expires_ms: Option<i64>, body: &[u8]) -> ColdRecord {
        ColdRecord { index, expires_ms, body: body.to_vec() }
    }

    fn store(kv: &Arc<MemKv>) -> ColdStore {
        let group_tree = kv.tree(&keys::group_tree(GroupId::shard(1))).unwrap();
        ColdStore::open(kv.clone(), group_tree.as_ref(), GroupId::shard(1)).unwrap()
    }

    fn writes(records: &[(&[u8], ColdRecord)]) -> ColdWrites {
        let mut w = ColdWrites::default();
        for (k, r) in records {
            w.put(k.to_vec(), r.clone());
        }
        w
    }

    fn all(view: &ColdView) -> Vec<Vec<u8>> {
        let (mut keys, mut after) = (Vec::new(), None);
        while let Some((page, last)) = view.page(after.as_deref(), 2).unwrap() {
            keys.extend(page.into_iter().map(|(k, _)| k));
            after = Some(last);
        }
        keys
    }

    #[test]
    fn apply_sees_only_records_written_before_its_entry_and_not_expired() {
        let r = record(10, Some(1_000), b"x");
        assert!(r.visible_to(11, 999));
        assert!(!r.visible_to(10, 0), "written by this very entry, in an earlier life");
        assert!(!r.visible_to(11, 1_000), "expired at its time");
        assert!(r.in_snapshot(10, 999));
        assert!(!r.in_snapshot(9, 0));
    }

    #[test]
    fn a_view_shows_the_snapshot_while_writes_go_on_and_holds_the_collector_back() {
        let kv = MemKv::new();
        let cold = store(&kv);
        cold.write(&writes(&[
            (&[0x20, 1], record(5, Some(100), b"a")),
            (&[0x20, 2], record(6, Some(300), b"b")),
            (&[0x30, 1], record(7, None, b"c")),
        ]))
        .unwrap();
        let view = cold.view(7, 150);
        // Written after the snapshot's index: not in the view.
        cold.write(&writes(&[(&[0x30, 2], record(8, None, b"d"))])).unwrap();
        assert_eq!(all(&view), vec![vec![0x20, 2], vec![0x30, 1]], "expired at 150, and written at 8, left out");

        cold.snapshot_durable(400);
        // The view (time 150) holds back deletion of what expired after 150.
        assert_eq!(cold.collect_garbage(100).unwrap(), 1);
        assert!(cold.get(&[0x20, 2]).unwrap().is_some());
        drop(view);
        assert_eq!(cold.collect_garbage(100).unwrap(), 1);
        assert!(cold.get(&[0x20, 2]).unwrap().is_none());
        assert!(cold.get(&[0x30, 1]).unwrap().is_some(), "records without expiry are kept for good");
        assert!(cold.scan(&[0], &[0xff], 10).unwrap().iter().all(|(k, _)| k[0] < COLD_INDEX));
    }

    #[test]
    fn a_stage_replaces_the_records_and_survives_reopening() {
        let kv = MemKv::new();
        let cold = store(&kv);
        cold.write(&writes(&[(&[0x30, 1], record(1, None, b"old"))])).unwrap();
        let source = store(&MemKv::new());
        source.write(&writes(&[(&[0x30, 9], record(3, None, b"new"))])).unwrap();
        let view = source.view(3, 0);
        let mut stage = cold.stage().unwrap();
        let mut after = None;
        while let Some((page, last)) = view.page(after.as_deref(), 10).unwrap() {
            stage.add(&page).unwrap();
            after = Some(last);
        }
        assert_eq!(stage.records(), 1);
        let group_tree = kv.tree(&keys::group_tree(GroupId::shard(1))).unwrap();
        let mut batch = Batch::default();
        cold.name_generation(&stage, &mut batch).unwrap();
        group_tree.write(batch).unwrap();
        assert_eq!(cold.switch(stage), 0);
        cold.drop_generation(0).unwrap();
        assert!(cold.get(&[0x30, 1]).unwrap().is_none());
        let reopened = store(&kv);
        assert_eq!(reopened.generation(), 1);
        assert_eq!(reopened.get(&[0x30, 9]).unwrap().map(|r| r.body), Some(b"new".to_vec()));
    }

    #[test]
    fn a_damaged_record_is_refused_by_a_stage() {
        let kv = MemKv::new();
        let mut stage = store(&kv).stage().unwrap();
        let err = stage.add(&[(vec![0x30, 1], vec![1, 2, 3])]).unwrap_err();
        assert!(matches!(err, ColdError::Corrupt { .. }), "{err}");
        let err = stage.add(&[(vec![EXPIRY, 1], codec::encode(&record(1, None, b"")).unwrap())]).unwrap_err();
        assert!(matches!(err, ColdError::Corrupt { .. }), "{err}");
    }
}
