//! A backup on disk: a directory with one file of encoded chunks per group and a manifest.
//!
//! ```text
//! DIR/manifest.json     format, created_at, the cluster's layout and shard count, and per group:
//!                       its file, log index and term, hot bytes, cold records, the stream's
//!                       digest, the file's SHA-256 and size
//! DIR/meta.chunks       the meta group's snapshot stream
//! DIR/shard-N.chunks    each shard's
//!
//! a .chunks file:       FILE_MAGIC, then frames: u32 length (big-endian) | raft_store::encode(SnapshotChunk)
//! ```
//!
//! Every frame carries the codec's checksums, the stream ends with its own SHA-256 digest (see
//! `raft_store::SnapshotChunk`), and the manifest holds each file's SHA-256: a damaged byte is
//! found by `boxoffice backup verify` without a node. The manifest is written last, so a
//! directory without one is an unfinished backup.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use raft_store::{CodecError, GroupId, Layout, SnapshotChunk, SnapshotError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first bytes of every chunk file.
const FILE_MAGIC: &[u8; 19] = b"BOXOFFICE-BACKUP/1\n";
/// The manifest's format; bumped when the layout of a backup changes.
pub const MANIFEST_FORMAT: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
/// Largest frame read: a chunk is at most `SNAPSHOT_CHUNK_BYTES_MAX` of payload, plus its records'
/// lengths and the codec's header.
const FRAME_BYTES_MAX: usize = 4 * raft_store::SNAPSHOT_CHUNK_BYTES_MAX;
const BUFFER_BYTES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// When the backup finished (RFC 3339, UTC).
    pub created_at: String,
    /// The node the backup was asked of.
    pub source: String,
    pub shard_count: u32,
    /// The backed-up cluster's layout, as its meta group held it when the backup started.
    pub layout: Layout,
    pub groups: Vec<GroupEntry>,
}

/// One group of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    /// `meta` or `shard-N`.
    pub group: String,
    pub file: String,
    /// The committed log index and term the snapshot stands at.
    pub index: u64,
    pub term: u64,
    pub snapshot_id: String,
    /// The machine's time at that index (leader-stamped, ms).
    pub time_ms: i64,
    pub hot_bytes: u64,
    pub cold_records: u64,
    /// The stream's own digest (its end chunk's), hex.
    pub digest: String,
    /// The file's SHA-256, hex, and its size.
    pub sha256: String,
    pub bytes: u64,
}

impl GroupEntry {
    pub fn group_id(&self) -> Option<GroupId> {
        GroupId::parse_name(&self.group)
    }
}

/// What is wrong with a backup's file or manifest.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("not a chunk file of a backup (its first bytes are not the header)")]
    Header,
    #[error("frame {n} is cut short")]
    Truncated { n: u64 },
    #[error("frame {n} claims {len} bytes")]
    FrameLength { n: u64, len: usize },
    #[error("frame {n} does not decode: {source}")]
    Frame { n: u64, source: CodecError },
    #[error(transparent)]
    Stream(#[from] SnapshotError),
    #[error("bytes after the stream's end")]
    Trailing,
    #[error("{found} bytes, the manifest says {expected}")]
    Size { found: u64, expected: u64 },
    #[error("SHA-256 {found}, the manifest says {expected}")]
    Checksum { found: String, expected: String },
    #[error("{what} is {found}, the manifest says {expected}")]
    Mismatch { what: &'static str, found: String, expected: String },
    #[error("the manifest names no group `{0}`")]
    UnknownGroup(String),
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A reader that hashes and counts every byte it reads.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Reads a chunk file frame by frame.
pub struct ChunkReader {
    path: PathBuf,
    input: BufReader<Hashing<File>>,
    frames: u64,
}

impl ChunkReader {
    pub fn open(path: &Path) -> Result<ChunkReader, Damage> {
        let read = |source| Damage::Read { path: path.to_owned(), source };
        let file = File::open(path).map_err(read)?;
        let hashing = Hashing { inner: file, hasher: Sha256::new(), bytes: 0 };
        let mut input = BufReader::with_capacity(BUFFER_BYTES, hashing);
        let mut magic = [0u8; FILE_MAGIC.len()];
        input.read_exact(&mut magic).map_err(|_| Damage::Header)?;
        if &magic != FILE_MAGIC {
            return Err(Damage::Header);
        }
        Ok(ChunkReader { path: path.to_owned(), input, frames: 0 })
    }

    /// The next chunk; `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<SnapshotChunk>, Damage> {
        let n = self.frames;
        let mut len = [0u8; 4];
        match self.input.read(&mut len[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(source) => return Err(Damage::Read { path: self.path.clone(), source }),
        }
        self.input.read_exact(&mut len[1..]).map_err(|_| Damage::Truncated { n })?;
        let len = u32::from_be_bytes(len) as usize;
        if len > FRAME_BYTES_MAX {
            return Err(Damage::FrameLength { n, len });
        }
        let mut body = vec![0u8; len];
        self.input.read_exact(&mut body).map_err(|_| Damage::Truncated { n })?;
        self.frames += 1;
        raft_store::decode(&body).map(Some).map_err(|source| Damage::Frame { n, source })
    }

    /// The SHA-256 and size of what was read so far (the whole file, once `next_chunk` said so).
    pub fn checksum(&self) -> (String, u64) {
        let hashing = self.input.get_ref();
        (hex(&hashing.hasher.clone().finalize()), hashing.bytes)
    }
}

/// Writes a chunk file: under a temporary name until `finish`, which makes it durable and names
/// it.
pub struct ChunkWriter {
    path: PathBuf,
    partial: PathBuf,
    output: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
}

impl ChunkWriter {
    pub fn create(path: &Path) -> std::io::Result<ChunkWriter> {
        let partial = path.with_extension("partial");
        let output = BufWriter::with_capacity(BUFFER_BYTES, File::create(&partial)?);
        let mut writer = ChunkWriter { path: path.to_owned(), partial, output, hasher: Sha256::new(), bytes: 0 };
        writer.put(FILE_MAGIC)?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.output.write_all(bytes)
    }

    pub fn write(&mut self, chunk: &SnapshotChunk) -> std::io::Result<()> {
        let body = raft_store::encode(chunk).map_err(std::io::Error::other)?;
        let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
        self.put(&len.to_be_bytes())?;
        self.put(&body)
    }

    /// Flushes, syncs and names the file; returns its SHA-256 and size.
    pub fn finish(self) -> std::io::Result<(String, u64)> {
        let file = self.output.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.partial, &self.path)?;
        Ok((hex(&self.hasher.finalize()), self.bytes))
    }
}

/// Writes `value` to `path` durably: a temporary file, synced, then renamed over it, and the
/// directory synced.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    let mut file = File::create(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_file_reads_back_what_was_written_with_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-0.chunks");
        let chunks = vec![SnapshotChunk::Hot(vec![1, 2, 3]), SnapshotChunk::Cold(vec![(vec![0x20], vec![9; 40])])];
        let mut writer = ChunkWriter::create(&path).unwrap();
        for chunk in &chunks {
            writer.write(chunk).unwrap();
        }
        let (sha, bytes) = writer.finish().unwrap();
        assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
        let mut reader = ChunkReader::open(&path).unwrap();
        let read: Vec<SnapshotChunk> = std::iter::from_fn(|| reader.next_chunk().unwrap()).collect();
        assert_eq!(read, chunks);
        assert_eq!(reader.checksum(), (sha, bytes));

        // A file cut inside a frame, or with a flipped byte, is found out.
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let mut reader = ChunkReader::open(&path).unwrap();
        reader.next_chunk().unwrap();
        assert!(matches!(reader.next_chunk(), Err(Damage::Truncated { n: 1 })));
        let mut flipped = full.clone();
        flipped[FILE_MAGIC.len() + 4 + 16] ^= 0x10;
        std::fs::write(&path, &flipped).unwrap();
        let mut reader = ChunkReader::open(&path).unwrap();
        assert!(matches!(reader.next_chunk(), Err(Damage::Frame { n: 0, .. })));
    }
}
