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

use crate::cold::{ColdError, ColdStage, ColdStore, ColdView};
use crate::raft_types::SnapshotMeta;

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

/// Rebuilds a snapshot from its chunks: the hot bytes in memory, the cold records into a staged
/// generation of the group's cold store.
pub struct SnapshotWriter {
    meta: SnapshotMeta,
    time_ms: i64,
    hot_bytes: u64,
    hot: Vec<u8>,
    stage: ColdStage,
    hasher: Sha256,
    records: u64,
    ended: bool,
}

impl SnapshotWriter {
    /// Starts from the stream's first chunk, staging into `cold`'s next generation.
    pub fn begin(cold: &ColdStore, first: SnapshotChunk) -> Result<SnapshotWriter, SnapshotError> {
        let SnapshotChunk::Begin { meta, time_ms, hot_bytes } = first else {
            return Err(SnapshotError::Stream("the first chunk is not a beginning"));
        };
        if hot_bytes > crate::codec::DECODE_BYTES_MAX as u64 {
            return Err(SnapshotError::HotLength { expected: hot_bytes, got: 0 });
        }
        Ok(SnapshotWriter {
            meta,
            time_ms,
            hot_bytes,
            hot: Vec::new(),
            stage: cold.stage()?,
            hasher: Sha256::new(),
            records: 0,
            ended: false,
        })
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    pub fn push(&mut self, chunk: SnapshotChunk) -> Result<(), SnapshotError> {
        if self.ended {
            return Err(SnapshotError::Stream("a chunk after the end"));
        }
        match chunk {
            SnapshotChunk::Begin { .. } => return Err(SnapshotError::Stream("a second beginning")),
            SnapshotChunk::Hot(bytes) => {
                if self.records > 0 || self.hot.len() as u64 + bytes.len() as u64 > self.hot_bytes {
                    return Err(SnapshotError::Stream("hot bytes out of place"));
                }
                digest_hot(&mut self.hasher, &bytes);
                self.hot.extend_from_slice(&bytes);
            }
            SnapshotChunk::Cold(records) => {
                if (self.hot.len() as u64) < self.hot_bytes {
                    return Err(SnapshotError::HotLength { expected: self.hot_bytes, got: self.hot.len() as u64 });
                }
                for (key, value) in &records {
                    digest_record(&mut self.hasher, key, value);
                }
                self.stage.add(&records)?;
                self.records += records.len() as u64;
            }
            SnapshotChunk::End { cold_records, digest } => {
                if (self.hot.len() as u64) != self.hot_bytes {
                    return Err(SnapshotError::HotLength { expected: self.hot_bytes, got: self.hot.len() as u64 });
                }
                let ours: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
                if cold_records != self.records || ours != digest {
                    return Err(SnapshotError::Digest);
                }
                self.ended = true;
            }
        }
        Ok(())
    }

    /// The snapshot, once its end arrived and checked; its cold records are in a stage the
    /// state machine switches to when it installs it ([`GroupSnapshot::take_stage`]).
    pub fn finish(self) -> Result<GroupSnapshot, SnapshotError> {
        if !self.ended {
            return Err(SnapshotError::Stream("the stream ended early"));
        }
        Ok(GroupSnapshot::staged(self.meta, self.time_ms, self.hot, self.stage))
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
