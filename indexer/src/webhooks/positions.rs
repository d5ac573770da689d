//! Where the dispatcher resumes after a restart: per shard, the log index through which every
//! delivery is done (delivered or given up), and per lagging endpoint its own index on the
//! shards it reads apart (see `endpoint.rs`). One small JSON file, replaced atomically: written
//! to a temporary file, flushed, renamed over the old one, and the directory flushed, so a crash
//! leaves the old positions or the new ones, never a torn file.
//!
//! Architecture invariant: a position is written only once every delivery of the records up to
//! it is done, so a restart re-delivers and never skips.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use raft_store::WebhookId;
use serde::{Deserialize, Serialize};

/// The file's name in the dispatcher's directory.
pub const POSITIONS_FILE: &str = "webhook-positions.json";
const FORMAT: u32 = 1;
/// Largest positions file read: far above what a few hundred shards and 100 endpoints write.
const FILE_BYTES_MAX: u64 = 4 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    pub format: u32,
    /// Shard → the index through which every delivery is done.
    pub shards: BTreeMap<u32, u64>,
    /// Endpoint → shard → the index through which it is done, for endpoints behind the others.
    pub lagging: BTreeMap<WebhookId, BTreeMap<u32, u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PositionsError {
    #[error("webhook positions file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "webhook positions file {path} is damaged ({reason}); move it away to resume from the oldest \
         retained change (receivers deduplicate the re-deliveries by id)"
    )]
    Damaged { path: String, reason: String },
}

/// The positions file of one dispatcher.
#[derive(Clone, Debug)]
pub struct PositionsFile {
    path: PathBuf,
    /// One save at a time: saves share the temporary file.
    writing: Arc<Mutex<()>>,
}

impl PositionsFile {
    pub fn in_dir(dir: &Path) -> PositionsFile {
        PositionsFile { path: dir.join(POSITIONS_FILE), writing: Arc::new(Mutex::new(())) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self) -> impl Fn(std::io::Error) -> PositionsError + '_ {
        |source| PositionsError::Io { path: self.path.display().to_string(), source }
    }

    /// The saved positions; empty when none were ever saved. A file that does not read is an
    /// error, not a fresh start: starting over would re-deliver everything retained, and
    /// starting at the end would skip.
    pub fn load(&self) -> Result<Positions, PositionsError> {
        let damaged = |reason: String| PositionsError::Damaged { path: self.path.display().to_string(), reason };
        let bytes = match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Positions::default()),
            Err(e) => return Err(self.io()(e)),
            Ok(meta) if meta.len() > FILE_BYTES_MAX => return Err(damaged(format!("{} bytes", meta.len()))),
            Ok(_) => std::fs::read(&self.path).map_err(self.io())?,
        };
        let positions: Positions = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        if positions.format != FORMAT {
            return Err(damaged(format!("format {} is not {FORMAT}", positions.format)));
        }
        Ok(positions)
    }

    /// Replaces the file with `positions`, durably. Blocks on the file system.
    pub fn save(&self, positions: &Positions) -> Result<(), PositionsError> {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let positions = Positions { format: FORMAT, ..positions.clone() };
        let bytes = serde_json::to_vec_pretty(&positions).map_err(|e| self.io()(std::io::Error::other(e)))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(self.io())?;
        let temp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temp).map_err(self.io())?;
        file.write_all(&bytes).map_err(self.io())?;
        file.sync_all().map_err(self.io())?;
        drop(file);
        std::fs::rename(&temp, &self.path).map_err(self.io())?;
        // The rename is durable once the directory is.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(self.io())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = PositionsFile::in_dir(&dir.path().join("sub"));
        assert_eq!(file.load().unwrap(), Positions::default(), "none saved yet");
        let positions = Positions {
            format: FORMAT,
            shards: BTreeMap::from([(0, 17), (3, 4)]),
            lagging: BTreeMap::from([(WebhookId::from_u64(9), BTreeMap::from([(3, 2)]))]),
        };
        file.save(&positions).unwrap();
        assert_eq!(file.load().unwrap(), positions);
        assert!(!file.path().with_extension("json.tmp").exists());
        std::fs::write(file.path(), b"{\"format\": 1, \"shards\": {").unwrap();
        assert!(matches!(file.load(), Err(PositionsError::Damaged { .. })));
        std::fs::write(file.path(), b"{\"format\": 2, \"shards\": {}, \"lagging\": {}}").unwrap();
        assert!(matches!(file.load(), Err(PositionsError::Damaged { .. })));
    }
}
