//! A group's snapshot as it is kept, sent to a peer and backed up: its metadata, its hot state
//! (the encoded `Machine`) and the cold records it holds, read as a stream of bounded chunks.
//!
//! ```text
//! Begin { meta, time_ms, hot_bytes }, Hot(bytes)…, Cold(records)…, End { cold_records, digest }
//! ```
//!
//! The digest is SHA-256 over the hot bytes and every cold record (lengths first), so a receiver
//! refuses a stream that was cut, reordered or damaged, and a backup can be verified offline. A
//! sender reads the cold records page by page from a `ColdView` while apply goes on; a receiver
//! writes them into a staged cold generation as they arrive, so neither side holds the cold part
//! in memory.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cold::{check_record, ColdError, ColdRecord, ColdStage, ColdStore, ColdView};

/// `raft_types::SnapshotMeta`, spelled here: `raft_types` names `GroupSnapshot` as openraft's
/// snapshot data, so importing the alias back would tie the two modules in a circle.
pub type SnapshotMeta = openraft::SnapshotMeta<crate::ids::NodeId, openraft::BasicNode>;

/// Largest chunk of a snapshot stream, in bytes (hot bytes, or cold records' keys and values).
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1 << 20;
/// Cold records per chunk at most, whatever their size.
const CHUNK_RECORDS_MAX: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Cold(#[from] ColdError),
    #[error("snapshot stream: {0}")]
    Stream(&'static str),
    #[error("snapshot stream: the digest does not match (damaged or incomplete)")]
    Digest,
    #[error("snapshot stream: {expected} hot bytes announced, {got} received")]
    HotLength { expected: u64, got: u64 },
}

/// One piece of a snapshot stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotChunk {
    Begin {
        meta: SnapshotMeta,
        /// The machine's time at the snapshot's index (leader-stamped, ms).
        time_ms: i64,
        hot_bytes: u64,
    },
    Hot(Vec<u8>),
    /// Cold records as stored: `(key, encoded ColdRecord)`.
    Cold(Vec<(Vec<u8>, Vec<u8>)>),
    End {
        cold_records: u64,
        digest: [u8; 32],
    },
}

impl SnapshotChunk {
    /// What a transport should allow for this chunk: its payload's size.
    pub fn payload_bytes(&self) -> usize {
        match self {
            SnapshotChunk::Begin { .. } | SnapshotChunk::End { .. } => 0,
            SnapshotChunk::Hot(bytes) => bytes.len(),
            SnapshotChunk::Cold(records) => records.iter().map(|(k, v)| k.len() + v.len()).sum(),
        }
    }
}

fn digest_hot(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update(bytes);
}

fn digest_record(hasher: &mut Sha256, key: &[u8], value: &[u8]) {
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key);
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value);
}

struct Inner {
    meta: SnapshotMeta,
    time_ms: i64,
    hot: Arc<Vec<u8>>,
    cold: ColdView,
    /// A received snapshot's cold records, waiting for the state machine to switch to them.
    stage: Mutex<Option<ColdStage>>,
}

/// A snapshot: openraft's snapshot data for every group. Cheap to clone; the cold records it
/// shows stay readable until the last clone is dropped.
#[derive(Clone)]
pub struct GroupSnapshot {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GroupSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupSnapshot")
            .field("meta", &self.inner.meta)
            .field("time_ms", &self.inner.time_ms)
            .field("hot_bytes", &self.inner.hot.len())
            .finish_non_exhaustive()
    }
}

impl GroupSnapshot {
    pub fn new(meta: SnapshotMeta, time_ms: i64, hot: Arc<Vec<u8>>, cold: ColdView) -> GroupSnapshot {
        GroupSnapshot { inner: Arc::new(Inner { meta, time_ms, hot, cold, stage: Mutex::new(None) }) }
    }

    /// A received snapshot whose cold records are staged.
    fn staged(meta: SnapshotMeta, time_ms: i64, hot: Vec<u8>, stage: ColdStage) -> GroupSnapshot {
        let cold = stage.view();
        let inner = Inner { meta, time_ms, hot: Arc::new(hot), cold, stage: Mutex::new(Some(stage)) };
        GroupSnapshot { inner: Arc::new(inner) }
    }

    /// The staged cold records of a received snapshot, once: installing it switches to them.
    pub fn take_stage(&self) -> Option<ColdStage> {
        self.inner.stage.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.inner.meta
    }

    pub fn time_ms(&self) -> i64 {
        self.inner.time_ms
    }

    /// The encoded machine.
    pub fn hot(&self) -> &Arc<Vec<u8>> {
        &self.inner.hot
    }

    /// Reads the snapshot as a stream of chunks.
    pub fn reader(&self) -> SnapshotReader {
        SnapshotReader { snapshot: self.clone(), step: Step::Begin, hasher: Sha256::new(), records: 0 }
    }
}

enum Step {
    Begin,
    Hot { offset: usize },
    Cold { after: Option<Vec<u8>> },
    End,
    Done,
}

/// Yields a snapshot's chunks in order; each call reads at most one chunk's worth.
pub struct SnapshotReader {
    snapshot: GroupSnapshot,
    step: Step,
    hasher: Sha256,
    records: u64,
}

impl SnapshotReader {
    pub fn next_chunk(&mut self) -> Result<Option<SnapshotChunk>, SnapshotError> {
        let inner = self.snapshot.inner.clone();
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::Begin => {
                self.step = Step::Hot { offset: 0 };
                let hot_bytes = inner.hot.len() as u64;
                Ok(Some(SnapshotChunk::Begin { meta: inner.meta.clone(), time_ms: inner.time_ms, hot_bytes }))
            }
            Step::Hot { offset } if offset < inner.hot.len() => {
                let end = (offset + SNAPSHOT_CHUNK_BYTES_MAX).min(inner.hot.len());
                digest_hot(&mut self.hasher, &inner.hot[offset..end]);
                self.step = Step::Hot { offset: end };
                Ok(Some(SnapshotChunk::Hot(inner.hot[offset..end].to_vec())))
            }
            Step::Hot { .. } => {
                self.step = Step::Cold { after: None };
                self.next_chunk()
            }
            Step::Cold { after } => match self.cold_chunk(&inner.cold, after.as_deref())? {
                Some((records, last)) => {
                    self.step = Step::Cold { after: Some(last) };
                    Ok(Some(SnapshotChunk::Cold(records)))
                }
                None => {
                    self.step = Step::End;
                    self.next_chunk()
                }
            },
            Step::End => {
                let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
                Ok(Some(SnapshotChunk::End { cold_records: self.records, digest }))
            }
            Step::Done => Ok(None),
        }
    }

    /// [`SnapshotReader::next_chunk`] off the runtime's workers: a cold chunk is a disk read.
    pub async fn next_chunk_off_runtime(mut self) -> Result<(SnapshotReader, Option<SnapshotChunk>), SnapshotError> {
        crate::blocking::off_runtime(move || self.next_chunk().map(|chunk| (self, chunk)))
            .await
            .ok_or(SnapshotError::Stream("a blocking task panicked"))?
    }

    #[allow(clippy::type_complexity)]
    fn cold_chunk(
        &mut self,
        view: &ColdView,
        after: Option<&[u8]>,
    ) -> Result<Option<(Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>)>, SnapshotError> {
        let Some((records, last)) = view.page(after, CHUNK_RECORDS_MAX)? else { return Ok(None) };
        // A page may exceed the byte bound: hand back what fits and resume after it.
        let (mut bytes, mut taken) = (0, Vec::new());
        for (key, value) in records {
            if !taken.is_empty() && bytes + key.len() + value.len() > SNAPSHOT_CHUNK_BYTES_MAX {
                break;
            }
            bytes += key.len() + value.len();
            digest_record(&mut self.hasher, &key, &value);
            taken.push((key, value));
        }
        self.records += taken.len() as u64;
        let resume = taken.last().map(|(k, _)| k.clone()).unwrap_or(last);
        Ok(Some((taken, resume)))
    }
}

/// What a checked stream held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSummary {
    pub meta: SnapshotMeta,
    pub time_ms: i64,
    pub hot_bytes: u64,
    pub cold_records: u64,
    pub digest: [u8; 32],
}

/// Checks a snapshot stream as it goes by, needing nothing to store it in: the order of its
/// chunks, the hot part's length, that every cold record decodes, the record count and the
/// digest. A receiver's [`SnapshotWriter`] checks with it, and so does `boxoffice backup verify`,
/// offline.
pub struct StreamCheck {
    meta: SnapshotMeta,
    time_ms: i64,
    hot_bytes: u64,
    hot_seen: u64,
    hasher: Sha256,
    records: u64,
    digest: Option<[u8; 32]>,
}

impl StreamCheck {
    /// Starts from the stream's first chunk.
    pub fn begin(first: &SnapshotChunk) -> Result<StreamCheck, SnapshotError> {
        let SnapshotChunk::Begin { meta, time_ms, hot_bytes } = first else {
            return Err(SnapshotError::Stream("the first chunk is not a beginning"));
        };
        if *hot_bytes > crate::codec::DECODE_BYTES_MAX as u64 {
            return Err(SnapshotError::HotLength { expected: *hot_bytes, got: 0 });
        }
        Ok(StreamCheck {
            meta: meta.clone(),
            time_ms: *time_ms,
            hot_bytes: *hot_bytes,
            hot_seen: 0,
            hasher: Sha256::new(),
            records: 0,
            digest: None,
        })
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    pub fn time_ms(&self) -> i64 {
        self.time_ms
    }

    /// The hot part's length, as the beginning announced it.
    pub fn hot_bytes(&self) -> u64 {
        self.hot_bytes
    }

    /// Checks the next chunk; a cold chunk's records come back decoded.
    pub fn push(&mut self, chunk: &SnapshotChunk) -> Result<Vec<(Vec<u8>, ColdRecord)>, SnapshotError> {
        if self.digest.is_some() {
            return Err(SnapshotError::Stream("a chunk after the end"));
        }
        match chunk {
            SnapshotChunk::Begin { .. } => Err(SnapshotError::Stream("a second beginning")),
            SnapshotChunk::Hot(bytes) => {
                if self.records > 0 || self.hot_seen + bytes.len() as u64 > self.hot_bytes {
                    return Err(SnapshotError::Stream("hot bytes out of place"));
                }
                digest_hot(&mut self.hasher, bytes);
                self.hot_seen += bytes.len() as u64;
                Ok(Vec::new())
            }
            SnapshotChunk::Cold(raw) => {
                self.hot_complete()?;
                let mut records = Vec::with_capacity(raw.len());
                for (key, value) in raw {
                    records.push((key.clone(), check_record(key, value)?));
                    digest_record(&mut self.hasher, key, value);
                }
                self.records += raw.len() as u64;
                Ok(records)
            }
            SnapshotChunk::End { cold_records, digest } => {
                self.hot_complete()?;
                let ours: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
                if *cold_records != self.records || ours != *digest {
                    return Err(SnapshotError::Digest);
                }
                self.digest = Some(ours);
                Ok(Vec::new())
            }
        }
    }

    fn hot_complete(&self) -> Result<(), SnapshotError> {
        if self.hot_seen != self.hot_bytes {
            return Err(SnapshotError::HotLength { expected: self.hot_bytes, got: self.hot_seen });
        }
        Ok(())
    }

    /// Whether the end arrived, and checked.
    pub fn ended(&self) -> bool {
        self.digest.is_some()
    }

    /// What the stream held, once its end arrived and checked.
    pub fn finish(self) -> Result<StreamSummary, SnapshotError> {
        let digest = self.digest.ok_or(SnapshotError::Stream("the stream ended early"))?;
        Ok(StreamSummary {
            meta: self.meta,
            time_ms: self.time_ms,
            hot_bytes: self.hot_bytes,
            cold_records: self.records,
            digest,
        })
    }
}

/// Builds the end of a stream being written (a restored group's, see `restore.rs`): the digest
/// over what was emitted, the same way [`SnapshotReader`] computes it.
#[derive(Default)]
pub(crate) struct StreamDigest {
    hasher: Sha256,
    records: u64,
}

impl StreamDigest {
    pub(crate) fn hot(&mut self, bytes: &[u8]) {
        digest_hot(&mut self.hasher, bytes);
    }

    pub(crate) fn record(&mut self, key: &[u8], value: &[u8]) {
        digest_record(&mut self.hasher, key, value);
        self.records += 1;
    }

    pub(crate) fn end(self) -> SnapshotChunk {
        SnapshotChunk::End { cold_records: self.records, digest: self.hasher.finalize().into() }
    }
}

/// Rebuilds a snapshot from its chunks: the hot bytes in memory, the cold records into a staged
/// generation of the group's cold store.
pub struct SnapshotWriter {
    check: StreamCheck,
    hot: Vec<u8>,
    stage: ColdStage,
}

impl SnapshotWriter {
    /// Starts from the stream's first chunk, staging into `cold`'s next generation.
    pub fn begin(cold: &ColdStore, first: SnapshotChunk) -> Result<SnapshotWriter, SnapshotError> {
        let check = StreamCheck::begin(&first)?;
        Ok(SnapshotWriter { check, hot: Vec::new(), stage: cold.stage()? })
    }

    pub fn meta(&self) -> &SnapshotMeta {
        self.check.meta()
    }

    /// The hot part's length, as the stream's beginning announced it.
    pub fn hot_bytes(&self) -> u64 {
        self.check.hot_bytes()
    }

    pub fn push(&mut self, chunk: SnapshotChunk) -> Result<(), SnapshotError> {
        let records = self.check.push(&chunk)?;
        match chunk {
            SnapshotChunk::Hot(bytes) => self.hot.extend_from_slice(&bytes),
            SnapshotChunk::Cold(_) => self.stage.add_checked(&records)?,
            SnapshotChunk::Begin { .. } | SnapshotChunk::End { .. } => {}
        }
        Ok(())
    }

    /// [`SnapshotWriter::push`] off the runtime's workers: a cold chunk is a disk write.
    pub async fn push_off_runtime(mut self, chunk: SnapshotChunk) -> Result<SnapshotWriter, SnapshotError> {
        crate::blocking::off_runtime(move || self.push(chunk).map(|()| self))
            .await
            .ok_or(SnapshotError::Stream("a blocking task panicked"))?
    }

    /// The snapshot, once its end arrived and checked; its cold records are in a stage the
    /// state machine switches to when it installs it ([`GroupSnapshot::take_stage`]).
    pub fn finish(self) -> Result<GroupSnapshot, SnapshotError> {
        let summary = self.check.finish()?;
        Ok(GroupSnapshot::staged(summary.meta, summary.time_ms, self.hot, self.stage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cold::{ColdRecord, ColdWrites};
    use crate::ids::GroupId;
    use crate::keys;
    use crate::kv::{Kv, MemKv};

    fn cold(kv: &Arc<MemKv>, group: GroupId) -> ColdStore {
        let tree = kv.tree(&keys::group_tree(group)).unwrap();
        ColdStore::open(kv.clone(), tree.as_ref(), group).unwrap()
    }

    /// A snapshot of 3 MiB of hot bytes and 40,000 cold records, some expired or too new.
    fn sample(kv: &Arc<MemKv>) -> GroupSnapshot {
        let store = cold(kv, GroupId::shard(0));
        let mut writes = ColdWrites::default();
        for n in 0..40_000u32 {
            let expires_ms = (n % 10 == 0).then_some(50);
            let index = if n % 7 == 0 { 101 } else { 100 };
            writes.put([&[0x30][..], &n.to_be_bytes()].concat(), ColdRecord { index, expires_ms, body: vec![7; 40] });
        }
        store.write(&writes).unwrap();
        let hot: Vec<u8> = (0..3 * SNAPSHOT_CHUNK_BYTES_MAX).map(|n| n as u8).collect();
        GroupSnapshot::new(SnapshotMeta::default(), 60, Arc::new(hot), store.view(100, 60))
    }

    fn chunks(snapshot: &GroupSnapshot) -> Vec<SnapshotChunk> {
        let mut reader = snapshot.reader();
        std::iter::from_fn(|| reader.next_chunk().unwrap()).collect()
    }

    #[test]
    fn a_snapshot_streams_in_bounded_chunks_and_arrives_whole() {
        let source = MemKv::new();
        let snapshot = sample(&source);
        let stream = chunks(&snapshot);
        assert!(stream.iter().all(|c| c.payload_bytes() <= SNAPSHOT_CHUNK_BYTES_MAX));
        let expected = (0..40_000u32).filter(|n| n % 10 != 0 && n % 7 != 0).count() as u64;
        assert!(matches!(stream.last(), Some(SnapshotChunk::End { cold_records, .. }) if *cold_records == expected));

        let target = MemKv::new();
        let store = cold(&target, GroupId::shard(0));
        let mut stream = stream.into_iter();
        let mut writer = SnapshotWriter::begin(&store, stream.next().unwrap()).unwrap();
        for chunk in stream {
            writer.push(chunk).unwrap();
        }
        let received = writer.finish().unwrap();
        assert_eq!(received.hot(), snapshot.hot());
        // Streamed on, it carries the same records (chunk boundaries may differ) and digest.
        let (ours, theirs) = (chunks(&snapshot), chunks(&received));
        assert_eq!(ours.last(), theirs.last(), "same record count and digest");
        let records = |stream: &[SnapshotChunk]| -> usize {
            stream.iter().map(|c| if let SnapshotChunk::Cold(r) = c { r.len() } else { 0 }).sum()
        };
        assert_eq!(records(&ours), records(&theirs));
        assert!(received.take_stage().is_some() && received.take_stage().is_none());
    }

    #[test]
    fn a_damaged_cut_or_reordered_stream_is_refused() {
        let source = MemKv::new();
        let stream = chunks(&sample(&source));
        let target = MemKv::new();
        let store = cold(&target, GroupId::shard(0));
        let feed = |stream: Vec<SnapshotChunk>| -> Result<GroupSnapshot, SnapshotError> {
            let mut stream = stream.into_iter();
            let mut writer = SnapshotWriter::begin(&store, stream.next().unwrap())?;
            for chunk in stream {
                writer.push(chunk)?;
            }
            writer.finish()
        };
        let mut damaged = stream.clone();
        if let SnapshotChunk::Hot(bytes) = &mut damaged[1] {
            bytes[10] ^= 1;
        }
        assert!(matches!(feed(damaged), Err(SnapshotError::Digest)));
        let mut cut = stream.clone();
        cut.remove(cut.len() - 2);
        assert!(feed(cut).is_err());
        let mut early = stream.clone();
        early.pop();
        assert!(matches!(feed(early), Err(SnapshotError::Stream(_))));
        let mut swapped = stream.clone();
        let last_hot = swapped.iter().rposition(|c| matches!(c, SnapshotChunk::Hot(_))).unwrap();
        swapped.swap(last_hot, last_hot + 1);
        assert!(feed(swapped).is_err());
        assert!(feed(stream).is_ok());
    }
}
