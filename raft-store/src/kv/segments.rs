//! The Raft logs' backend: every group's log on one node in one sequence of append-only segment
//! files. Callers append records in order with one positional write each; one flusher thread makes
//! everything written since its last sync durable with one `fdatasync` per file touched, and serves
//! every flush request waiting meanwhile (group commit). TiKV's raft-engine is the model: a log is
//! written once, read back while it is young and dropped whole, which a B-tree (sled) pays for
//! with rewrites, page copies and its own I/O threads.
//!
//! Keys live in memory, values on disk: the index maps each tree's keys to where their values
//! lie, and reads `pread` them (reads of consecutive entries, the common case, are one `pread`).
//! A segment is deleted once none of its values is live and the records that made them dead are
//! durable; a segment older than [`SegmentLimits::segments_before_copying`] others whose few values are still
//! live (an idle group's vote and log) has them copied forward first. Deleting only the oldest
//! segment keeps replay sound: a later segment's tombstone never outlives the value it buries.
//!
//! A record is `body length (u32) ‖ CRC-32 of the length ‖ CRC-32 of the body ‖ body`. At start,
//! a record cut short at the end of a segment (a header or body that stops at the end of the file,
//! or zeros to its end) is a write a crash cut short: no flush after it completed, so nothing from
//! it on was acknowledged, and it and every later segment are dropped. Any other failure (a
//! checksum mismatch, a body that does not decode) is damage to data that may have been
//! acknowledged: the store does not open.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::flusher::Flusher;
use super::{Batch, FlushDone, FlushStats, Kv, KvError, KvResult, KvTree};

/// How large segments grow and how many may pile up.
#[derive(Clone, Copy, Debug)]
pub struct SegmentLimits {
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// When more segments than this exist, the oldest one's live values are copied forward so
    /// that it can be deleted: an idle group's few records do not keep old segments on the disk.
    pub segments_before_copying: usize,
}

impl Default for SegmentLimits {
    fn default() -> Self {
        SegmentLimits { segment_bytes: 64 << 20, segments_before_copying: 6 }
    }
}
const HEADER_BYTES: usize = 12;
/// The largest record body accepted when reading: a longer length is damage.
const RECORD_BYTES_MAX: u32 = 1 << 30;
const KIND_BATCH: u8 = 1;
const KIND_DROP_TREE: u8 = 2;
const OP_DELETE: u8 = 0;
const OP_PUT: u8 = 1;
const SUFFIX: &str = "seg";

fn io(context: impl std::fmt::Display, e: std::io::Error) -> KvError {
    KvError::Io(format!("{context}: {e}"))
}

/// Where a value lies.
#[derive(Clone, Copy, Debug)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

/// A position in the sequence of records: (segment, offset).
type Pos = (u64, u64);

struct Segment {
    file: Arc<File>,
    len: u64,
    /// Values of this segment the index still points at.
    live: u64,
    /// The end of the record that made the last of its values dead: the segment may be deleted
    /// once that is durable.
    dead_since: Option<Pos>,
}

struct State {
    trees: BTreeMap<String, BTreeMap<Vec<u8>, Loc>>,
    segments: BTreeMap<u64, Segment>,
    active: u64,
    /// Files written since the last sync.
    dirty: Vec<Arc<File>>,
    active_dirty: bool,
    /// A segment was created since the last sync: the directory needs one too.
    dir_dirty: bool,
    /// The error of the write or flush that failed, once one has.
    failed: Option<String>,
    /// Copying the oldest segment's live values forward (which may roll again).
    copying: bool,
}

struct Shared {
    dir: PathBuf,
    limits: SegmentLimits,
    state: Mutex<State>,
}

pub struct SegmentKv {
    shared: Arc<Shared>,
    flusher: Flusher,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.{SUFFIX}"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SegmentKv {
    /// Opens the segments in `dir` (creating it if needed), replaying them into the index.
    pub fn open(dir: &Path) -> KvResult<Arc<SegmentKv>> {
        SegmentKv::open_with(dir, SegmentLimits::default())
    }

    pub fn open_with(dir: &Path, limits: SegmentLimits) -> KvResult<Arc<SegmentKv>> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir.display(), e))?;
        let state = recover(dir)?;
        let shared = Arc::new(Shared { dir: dir.to_owned(), limits, state: Mutex::new(state) });
        let synced = shared.clone();
        let flusher = Flusher::spawn("boxoffice-log-sync", move || sync_written(&synced))?;
        Ok(Arc::new(SegmentKv { shared, flusher }))
    }

    /// The segment files on disk now (for tests and the disk gauge).
    pub fn segment_count(&self) -> usize {
        self.shared.lock().segments.len()
    }
}

impl Drop for SegmentKv {
    /// Answers the waiting flushes, stops the flusher and makes what was written durable.
    fn drop(&mut self) {
        self.flusher.stop();
        if let Err(e) = sync_written(&self.shared) {
            tracing::error!(error = %e, "final log sync failed");
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(state: &mut State, e: &KvError) {
        if state.failed.is_none() {
            tracing::error!(error = %e, "log write failed; every later write and flush fails too");
            state.failed = Some(e.to_string());
        }
    }

    /// Appends one record to the active segment and applies it to the index; starts a new segment
    /// when the active one is full.
    fn append(&self, state: &mut State, record: &Record) -> KvResult<()> {
        if let Some(e) = &state.failed {
            return Err(KvError::Io(format!("an earlier log write or flush failed: {e}")));
        }
        let (bytes, values) = record.encode();
        let active = state.active;
        let segment = state.segments.get_mut(&active).ok_or_else(|| KvError::Io("no active segment".into()))?;
        let start = segment.len;
        if let Err(e) = segment.file.write_all_at(&bytes, start) {
            // Part of the record may be on the disk: nothing may follow it (a restart finds it torn).
            let e = io(format!("writing segment {active}"), e);
            Self::fail(state, &e);
            return Err(e);
        }
        segment.len += bytes.len() as u64;
        let end = (active, segment.len);
        if !state.active_dirty {
            let file = segment.file.clone();
            state.dirty.push(file);
            state.active_dirty = true;
        }
        record.apply(state, active, start, &values, end);
        if state.segments.get(&active).is_some_and(|s| s.len >= self.limits.segment_bytes) {
            self.roll(state)?;
        }
        Ok(())
    }

    /// Closes the active segment, starts the next and, when segments pile up, copies the oldest
    /// one's live values forward.
    fn roll(&self, state: &mut State) -> KvResult<()> {
        let id = state.active + 1;
        let path = segment_path(&self.dir, id);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(|e| {
            let e = io(path.display(), e);
            Self::fail(state, &e);
            e
        })?;
        let closed_end = (state.active, state.segments.get(&state.active).map_or(0, |s| s.len));
        if let Some(closed) = state.segments.get_mut(&state.active) {
            if closed.live == 0 {
                closed.dead_since = Some(closed_end);
            }
        }
        state.segments.insert(id, Segment { file: Arc::new(file), len: 0, live: 0, dead_since: None });
        state.active = id;
        state.active_dirty = false;
        state.dir_dirty = true;
        if state.segments.len() > self.limits.segments_before_copying && !state.copying {
            state.copying = true;
            let copied = self.copy_forward_oldest(state);
            state.copying = false;
            copied?;
        }
        Ok(())
    }

    fn copy_forward_oldest(&self, state: &mut State) -> KvResult<()> {
        let Some((&oldest, segment)) = state.segments.iter().next() else { return Ok(()) };
        if oldest == state.active || segment.live == 0 {
            return Ok(());
        }
        let file = segment.file.clone();
        let mut copies: Vec<Record> = Vec::new();
        for (name, keys) in &state.trees {
            let mut ops = Vec::new();
            for (key, loc) in keys.iter().filter(|(_, loc)| loc.segment == oldest) {
                ops.push((key.clone(), Some(read_at(&file, loc)?)));
            }
            if !ops.is_empty() {
                copies.push(Record::Batch { tree: name.clone(), ops });
            }
        }
        tracing::info!(segment = oldest, trees = copies.len(), "copying a log segment's live records forward");
        for record in &copies {
            self.append(state, record)?;
        }
        Ok(())
    }

    /// Deletes the oldest segments whose values are all dead, once what made them dead is
    /// durable (`synced`).
    fn delete_dead(&self, synced: Pos) {
        let mut state = self.lock();
        let mut deleted = false;
        while let Some((&id, segment)) = state.segments.iter().next() {
            let durable = segment.dead_since.is_some_and(|dead| dead <= synced);
            if id == state.active || segment.live != 0 || !durable {
                break;
            }
            state.segments.remove(&id);
            if let Err(e) = std::fs::remove_file(segment_path(&self.dir, id)) {
                // Harmless: every value in it is buried by later records, which replay reads after.
                tracing::warn!(segment = id, error = %e, "could not delete a log segment");
            }
            deleted = true;
        }
        drop(state);
        if deleted {
            // Deletions reach the disk in order, so a crash never brings back an older segment
            // whose values a deleted one's records buried.
            if let Err(e) = sync_dir(&self.dir) {
                tracing::warn!(error = %e, "could not sync the log's directory after deleting segments");
            }
        }
    }
}

fn read_at(file: &File, loc: &Loc) -> KvResult<Vec<u8>> {
    let mut buf = vec![0; loc.len as usize];
    file.read_exact_at(&mut buf, loc.offset).map_err(|e| io(format!("reading segment {}", loc.segment), e))?;
    Ok(buf)
}

/// Syncs every file written since the last sync (and the directory, after a new segment), then
/// deletes the segments that became dead. The flusher calls it for every batch of flush requests
/// (group commit); after a failed write or sync it fails without syncing (see the `Kv` contract).
fn sync_written(shared: &Shared) -> Result<(), String> {
    let (files, dir_dirty, end) = {
        let mut state = shared.lock();
        if let Some(e) = &state.failed {
            return Err(format!("an earlier log write or flush failed: {e}"));
        }
        let end = (state.active, state.segments.get(&state.active).map_or(0, |s| s.len));
        state.active_dirty = false;
        (std::mem::take(&mut state.dirty), std::mem::take(&mut state.dir_dirty), end)
    };
    let synced =
        files
            .iter()
            .try_for_each(|f| f.sync_data())
            .and_then(|()| if dir_dirty { sync_dir(&shared.dir) } else { Ok(()) });
    if let Err(e) = synced {
        let e = KvError::Io(format!("syncing the log: {e}"));
        Shared::fail(&mut shared.lock(), &e);
        return Err(e.to_string());
    }
    shared.delete_dead(end);
    Ok(())
}

/// One record: a batch of puts and deletes on one tree, or a whole tree dropped.
enum Record {
    Batch { tree: String, ops: Vec<(Vec<u8>, Option<Vec<u8>>)> },
    DropTree { tree: String },
}

impl Record {
    /// The record's bytes, and where each put's value starts in them.
    fn encode(&self) -> (Vec<u8>, Vec<usize>) {
        let mut body = Vec::new();
        let mut values = Vec::new();
        let put_name = |body: &mut Vec<u8>, kind: u8, tree: &str| {
            body.push(kind);
            body.extend_from_slice(&(tree.len() as u16).to_le_bytes());
            body.extend_from_slice(tree.as_bytes());
        };
        match self {
            Record::Batch { tree, ops } => {
                let size: usize = ops.iter().map(|(k, v)| 7 + k.len() + v.as_ref().map_or(0, Vec::len)).sum();
                body.reserve(HEADER_BYTES + 7 + tree.len() + size);
                body.resize(HEADER_BYTES, 0);
                put_name(&mut body, KIND_BATCH, tree);
                body.extend_from_slice(&(ops.len() as u32).to_le_bytes());
                for (key, value) in ops {
                    body.extend_from_slice(&(key.len() as u16).to_le_bytes());
                    body.extend_from_slice(key);
                    match value {
                        Some(value) => {
                            body.push(OP_PUT);
                            body.extend_from_slice(&(value.len() as u32).to_le_bytes());
                            values.push(body.len());
                            body.extend_from_slice(value);
                        }
                        None => body.push(OP_DELETE),
                    }
                }
            }
            Record::DropTree { tree } => {
                body.resize(HEADER_BYTES, 0);
                put_name(&mut body, KIND_DROP_TREE, tree);
            }
        }
        let len = (body.len() - HEADER_BYTES) as u32;
        let len_bytes = len.to_le_bytes();
        body[0..4].copy_from_slice(&len_bytes);
        body[4..8].copy_from_slice(&crc32fast::hash(&len_bytes).to_le_bytes());
        let body_crc = crc32fast::hash(&body[HEADER_BYTES..]);
        body[8..12].copy_from_slice(&body_crc.to_le_bytes());
        (body, values)
    }

    /// Decodes a record's body; `None` if it does not decode. Value positions are relative to
    /// the body's start.
    fn decode(body: &[u8]) -> Option<(Record, Vec<usize>)> {
        let mut r = Reader { bytes: body, at: 0 };
        let kind = r.u8()?;
        let name_len = usize::from(r.u16()?);
        let tree = std::str::from_utf8(r.take(name_len)?).ok()?.to_owned();
        let record = match kind {
            KIND_BATCH => {
                let count = r.u32()? as usize;
                let mut ops = Vec::with_capacity(count.min(body.len() / 3));
                let mut values = Vec::new();
                for _ in 0..count {
                    let key_len = usize::from(r.u16()?);
                    let key = r.take(key_len)?.to_vec();
                    match r.u8()? {
                        OP_PUT => {
                            let len = r.u32()? as usize;
                            values.push(r.at);
                            ops.push((key, Some(r.take(len)?.to_vec())));
                        }
                        OP_DELETE => ops.push((key, None)),
                        _ => return None,
                    }
                }
                (Record::Batch { tree, ops }, values)
            }
            KIND_DROP_TREE => (Record::DropTree { tree }, Vec::new()),
            _ => return None,
        };
        (r.at == body.len()).then_some(record)
    }

    /// Applies the record, written at `start` of `segment` with its values at `values` (offsets
    /// into the record), to the index.
    fn apply(&self, state: &mut State, segment: u64, start: u64, values: &[usize], end: Pos) {
        let mut buried = Vec::new();
        match self {
            Record::Batch { tree, ops } => {
                let keys = state.trees.entry(tree.clone()).or_default();
                let mut values = values.iter();
                for (key, value) in ops {
                    let old = match value {
                        Some(v) => {
                            let offset = values.next().map_or(0, |&at| at as u64);
                            let loc = Loc { segment, offset: start + offset, len: v.len() as u32 };
                            keys.insert(key.clone(), loc)
                        }
                        None => keys.remove(key),
                    };
                    buried.extend(old.map(|l| l.segment));
                }
                let added = ops.iter().filter(|(_, v)| v.is_some()).count() as u64;
                if let Some(s) = state.segments.get_mut(&segment) {
                    s.live += added;
                }
                if keys.is_empty() {
                    state.trees.remove(tree);
                }
            }
            Record::DropTree { tree } => {
                if let Some(keys) = state.trees.remove(tree) {
                    buried.extend(keys.values().map(|l| l.segment));
                }
            }
        }
        for id in buried {
            if let Some(s) = state.segments.get_mut(&id) {
                s.live = s.live.saturating_sub(1);
                if s.live == 0 && id != state.active {
                    s.dead_since = Some(end);
                }
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// What one segment's bytes hold: the records that decode, and where they end.
enum Scan {
    /// Every record is whole.
    Whole,
    /// A record cut short at the end of the file: the valid bytes end at `at`.
    Torn { at: u64 },
}

/// Reads every segment in order into a new index. See the module's comment for torn and
/// damaged records.
fn recover(dir: &Path) -> KvResult<State> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir.display(), e))? {
        let entry = entry.map_err(|e| io(dir.display(), e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(&format!(".{SUFFIX}"))) else { continue };
        if let Ok(id) = stem.parse::<u64>() {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let mut state = State {
        trees: BTreeMap::new(),
        segments: BTreeMap::new(),
        active: 0,
        dirty: Vec::new(),
        active_dirty: false,
        dir_dirty: false,
        failed: None,
        copying: false,
    };
    let mut torn_in = None;
    for &id in &ids {
        let path = segment_path(dir, id);
        if torn_in.is_some() {
            // Written after a write that never completed: never acknowledged.
            tracing::warn!(segment = id, "dropping a log segment written after a torn record");
            std::fs::remove_file(&path).map_err(|e| io(path.display(), e))?;
            continue;
        }
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| io(path.display(), e))?;
        let bytes = std::fs::read(&path).map_err(|e| io(path.display(), e))?;
        state.segments.insert(id, Segment { file: Arc::new(file), len: 0, live: 0, dead_since: None });
        state.active = id;
        let scan = replay(&mut state, id, &bytes).map_err(|what| {
            KvError::Io(format!(
                "the Raft log is damaged: {} {what}; this node's copy of every group must be rebuilt from the \
                 other replicas",
                path.display()
            ))
        })?;
        let len = match scan {
            Scan::Whole => bytes.len() as u64,
            Scan::Torn { at } => {
                tracing::warn!(segment = id, at, bytes = bytes.len(), "discarding a torn log record (never flushed)");
                let segment = &state.segments[&id];
                segment.file.set_len(at).and_then(|()| segment.file.sync_all()).map_err(|e| io(path.display(), e))?;
                torn_in = Some(id);
                at
            }
        };
        if let Some(s) = state.segments.get_mut(&id) {
            s.len = len;
        }
    }
    if torn_in.is_some() {
        sync_dir(dir).map_err(|e| io(dir.display(), e))?;
    }
    if state.segments.is_empty() {
        let path = segment_path(dir, 1);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
        let file = file.map_err(|e| io(path.display(), e))?;
        sync_dir(dir).map_err(|e| io(dir.display(), e))?;
        state.segments.insert(1, Segment { file: Arc::new(file), len: 0, live: 0, dead_since: None });
        state.active = 1;
    }
    let active = state.active;
    for (&id, segment) in state.segments.iter_mut() {
        if id != active && segment.live == 0 {
            segment.dead_since = Some((0, 0));
        }
    }
    Ok(state)
}

fn replay(state: &mut State, segment: u64, bytes: &[u8]) -> Result<Scan, String> {
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.iter().all(|&b| b == 0) {
            // Space the file system gave the file but the write that filled it never reached.
            return Ok(Scan::Torn { at: at as u64 });
        }
        if rest.len() < HEADER_BYTES {
            return Ok(Scan::Torn { at: at as u64 });
        }
        let len_bytes = [rest[0], rest[1], rest[2], rest[3]];
        let len = u32::from_le_bytes(len_bytes);
        let header_crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let body_crc = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if crc32fast::hash(&len_bytes) != header_crc || len > RECORD_BYTES_MAX {
            return Err(format!("has a damaged record header at byte {at}"));
        }
        let Some(body) = rest.get(HEADER_BYTES..HEADER_BYTES + len as usize) else {
            return Ok(Scan::Torn { at: at as u64 });
        };
        if crc32fast::hash(body) != body_crc {
            return Err(format!("has a record failing its checksum at byte {at}"));
        }
        let Some((record, values)) = Record::decode(body) else {
            return Err(format!("has a record that does not decode at byte {at}"));
        };
        let end = at + HEADER_BYTES + len as usize;
        let values: Vec<usize> = values.into_iter().map(|v| v + HEADER_BYTES).collect();
        record.apply(state, segment, at as u64, &values, (segment, end as u64));
        at = end;
    }
    Ok(Scan::Whole)
}

impl Kv for SegmentKv {
    fn tree(&self, name: &str) -> KvResult<Arc<dyn KvTree>> {
        Ok(Arc::new(SegmentTree { name: name.to_owned(), shared: self.shared.clone() }))
    }

    /// The trees holding at least one key.
    fn tree_names(&self) -> KvResult<Vec<String>> {
        Ok(self.shared.lock().trees.keys().cloned().collect())
    }

    fn drop_tree(&self, name: &str) -> KvResult<()> {
        let mut state = self.shared.lock();
        if !state.trees.contains_key(name) {
            return Ok(());
        }
        self.shared.append(&mut state, &Record::DropTree { tree: name.to_owned() })
    }

    fn flush(&self, done: FlushDone) {
        self.flusher.request(done);
    }

    fn flush_stats(&self) -> FlushStats {
        self.flusher.stats()
    }

    fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }
}

/// Keys found with where their values lie, and the files those are in.
type Located = (Vec<(Vec<u8>, Loc)>, BTreeMap<u64, Arc<File>>);

struct SegmentTree {
    name: String,
    shared: Arc<Shared>,
}

impl SegmentTree {
    /// The locations of up to `limit` keys in `[from, to)` (the last one only, with `last`), and
    /// the files they are in.
    fn locate(&self, from: &[u8], to: &[u8], limit: usize, last: bool) -> Located {
        let state = self.shared.lock();
        let Some(keys) = state.trees.get(&self.name) else { return (Vec::new(), BTreeMap::new()) };
        if from >= to {
            return (Vec::new(), BTreeMap::new());
        }
        let mut range = keys.range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Excluded(to)));
        let found: Vec<(Vec<u8>, Loc)> = if last {
            range.next_back().map(|(k, l)| (k.clone(), *l)).into_iter().collect()
        } else {
            range.take(limit).map(|(k, l)| (k.clone(), *l)).collect()
        };
        let mut files = BTreeMap::new();
        for (_, loc) in &found {
            if let Some(s) = state.segments.get(&loc.segment) {
                files.entry(loc.segment).or_insert_with(|| s.file.clone());
            }
        }
        (found, files)
    }

    /// Reads the values at `found`, one `pread` for each run of values that lie back to back.
    fn read(found: Vec<(Vec<u8>, Loc)>, files: &BTreeMap<u64, Arc<File>>) -> KvResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::with_capacity(found.len());
        let mut i = 0;
        while i < found.len() {
            let first = found[i].1;
            let mut j = i + 1;
            let mut end = first.offset + u64::from(first.len);
            // Values written in one record are separated by their next key's framing; read up to a
            // small gap in one go.
            while j < found.len() {
                let loc = found[j].1;
                if loc.segment != first.segment || loc.offset < end || loc.offset - end > 64 {
                    break;
                }
                end = loc.offset + u64::from(loc.len);
                j += 1;
            }
            let file =
                files.get(&first.segment).ok_or_else(|| KvError::Io(format!("segment {} gone", first.segment)))?;
            let run =
                read_at(file, &Loc { segment: first.segment, offset: first.offset, len: (end - first.offset) as u32 })?;
            for (key, loc) in &found[i..j] {
                let from = (loc.offset - first.offset) as usize;
                out.push((key.clone(), run[from..from + loc.len as usize].to_vec()));
            }
            i = j;
        }
        Ok(out)
    }
}

impl KvTree for SegmentTree {
    fn get(&self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        let (loc, file) = {
            let state = self.shared.lock();
            let Some(loc) = state.trees.get(&self.name).and_then(|keys| keys.get(key)).copied() else {
                return Ok(None);
            };
            let file = state.segments.get(&loc.segment).map(|s| s.file.clone());
            (loc, file)
        };
        let file = file.ok_or_else(|| KvError::Io(format!("segment {} gone", loc.segment)))?;
        read_at(&file, &loc).map(Some)
    }

    fn write(&self, batch: Batch) -> KvResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut state = self.shared.lock();
        self.shared.append(&mut state, &Record::Batch { tree: self.name.clone(), ops: batch.ops })
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> KvResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let (found, files) = self.locate(from, to, limit, false);
        Self::read(found, &files)
    }

    fn last(&self, from: &[u8], to: &[u8]) -> KvResult<Option<(Vec<u8>, Vec<u8>)>> {
        let (found, files) = self.locate(from, to, 1, true);
        Ok(Self::read(found, &files)?.pop())
    }
}
