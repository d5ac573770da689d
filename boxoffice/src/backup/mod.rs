//! `boxoffice backup create` and `boxoffice backup verify`; `restore.rs` reads what they write.
//!
//! A backup is consistent per group: each group's snapshot stands at one committed index, built
//! fresh by the group's leader when asked (`NodeRequest::BackupOpen`), after it confirmed its lead
//! and applied every write acknowledged before the request. It is read chunk by chunk over the
//! node protocol (`BackupNext`) into a file while bookings go on. Groups are backed up one after
//! another, so two groups stand at different moments: each is whole and consistent, and a write
//! acknowledged before `backup create` started is in every group it touched.

mod format;

use std::path::{Path, PathBuf};
use std::time::Duration;

use node::{call_leader, CallError, NodeClient, NodeReply, NodeRequest, WireError};
use raft_store::{GroupId, Layout, NodeId, SnapshotChunk, StreamCheck, StreamSummary};

use format::{hex, write_durably, ChunkWriter, MANIFEST_FORMAT};
pub use format::{ChunkReader, Damage, GroupEntry, Manifest, MANIFEST_FILE};

use crate::cluster_cli::{Cli, ClusterCliError};

/// How long opening a group's backup may take: its leader builds a fresh snapshot first.
const OPEN_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Cluster(#[from] ClusterCliError),
    #[error("{group}: {source}")]
    Leader { group: GroupId, source: CallError },
    #[error("{group}: the node refused: {source}")]
    Node { group: GroupId, source: WireError },
    #[error("{group}: unexpected reply {reply}")]
    Unexpected { group: GroupId, reply: String },
    #[error("{group}: node {node} is not in the layout")]
    NoAddress { group: GroupId, node: NodeId },
    #[error("{group}: the transfer failed: {source}")]
    Transport { group: GroupId, source: node::TransportError },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0} is not empty: a backup goes into a new directory")]
    NotEmpty(PathBuf),
    #[error("{path}: not a backup manifest: {source}")]
    Manifest { path: PathBuf, source: serde_json::Error },
    #[error("manifest format {0} is not {MANIFEST_FORMAT}")]
    Format(u32),
    #[error("the backup of {group} is damaged: {damage}")]
    Damaged { group: String, damage: Damage },
    #[error("the backup lacks {0}")]
    Missing(GroupId),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_owned(), source }
}

/// Every group of a cluster of `shard_count` shards, meta first.
pub fn all_groups(shard_count: u32) -> impl Iterator<Item = GroupId> {
    std::iter::once(GroupId::META).chain((0..shard_count).map(GroupId::shard))
}

/// A backup directory, its manifest read.
pub struct Backup {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Backup {
    pub fn open(dir: &Path) -> Result<Backup, BackupError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| BackupError::Manifest { path: path.clone(), source })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(BackupError::Format(manifest.format));
        }
        for group in all_groups(manifest.shard_count) {
            if !manifest.groups.iter().any(|g| g.group_id() == Some(group)) {
                return Err(BackupError::Missing(group));
            }
        }
        Ok(Backup { dir: dir.to_owned(), manifest })
    }

    pub fn entry(&self, group: GroupId) -> Result<&GroupEntry, BackupError> {
        self.manifest.groups.iter().find(|g| g.group_id() == Some(group)).ok_or(BackupError::Missing(group))
    }

    /// The chunks of `group`'s file.
    pub fn reader(&self, entry: &GroupEntry) -> Result<ChunkReader, BackupError> {
        ChunkReader::open(&self.dir.join(&entry.file)).map_err(|damage| damaged(entry, damage))
    }

    /// Re-reads every file: its SHA-256 and size against the manifest, and its stream (order,
    /// lengths, records, digest) against itself and the manifest.
    pub fn verify(&self) -> Result<Vec<StreamSummary>, BackupError> {
        self.manifest.groups.iter().map(|entry| self.verify_group(entry)).collect()
    }

    fn verify_group(&self, entry: &GroupEntry) -> Result<StreamSummary, BackupError> {
        let fail = |damage: Damage| damaged(entry, damage);
        if entry.group_id().is_none() {
            return Err(fail(Damage::UnknownGroup(entry.group.clone())));
        }
        let mut reader = self.reader(entry)?;
        let first = reader.next_chunk().map_err(fail)?.ok_or_else(|| fail(Damage::Truncated { n: 0 }))?;
        let mut check = StreamCheck::begin(&first).map_err(|e| fail(e.into()))?;
        while let Some(chunk) = reader.next_chunk().map_err(fail)? {
            if check.ended() {
                return Err(fail(Damage::Trailing));
            }
            check.push(&chunk).map_err(|e| fail(e.into()))?;
        }
        let (sha256, bytes) = reader.checksum();
        if bytes != entry.bytes {
            return Err(fail(Damage::Size { found: bytes, expected: entry.bytes }));
        }
        if sha256 != entry.sha256 {
            return Err(fail(Damage::Checksum { found: sha256, expected: entry.sha256.clone() }));
        }
        let summary = check.finish().map_err(|e| fail(e.into()))?;
        let index = summary.meta.last_log_id.map_or(0, |l| l.index);
        let pairs = [
            ("the stream's digest", hex(&summary.digest), entry.digest.clone()),
            ("the log index", index.to_string(), entry.index.to_string()),
            ("the record count", summary.cold_records.to_string(), entry.cold_records.to_string()),
        ];
        for (what, found, expected) in pairs {
            if found != expected {
                return Err(fail(Damage::Mismatch { what, found, expected }));
            }
        }
        Ok(summary)
    }
}

fn damaged(entry: &GroupEntry, damage: Damage) -> BackupError {
    BackupError::Damaged { group: entry.group.clone(), damage }
}

/// `boxoffice backup create`: a backup of every group of the cluster `cli` talks to, into `out`
/// (new or empty). Prints a line per group as it goes.
pub async fn create(cli: &Cli, out: &Path) -> Result<Manifest, BackupError> {
    if std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::NotEmpty(out.to_owned()));
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    let layout = cli.layout().await?;
    let mut groups = Vec::new();
    for group in all_groups(layout.shard_count) {
        let entry = backup_group(cli, &layout, group, out).await?;
        println!(
            "{group}: index {}, term {}, {} hot bytes, {} cold records, {} bytes",
            entry.index, entry.term, entry.hot_bytes, entry.cold_records, entry.bytes
        );
        groups.push(entry);
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        source: cli.node().to_owned(),
        shard_count: layout.shard_count,
        layout,
        groups,
    };
    let path = out.join(MANIFEST_FILE);
    let bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|source| BackupError::Manifest { path: path.clone(), source })?;
    write_durably(&path, &bytes).map_err(io(&path))?;
    Ok(manifest)
}

/// The replicas of `group` in `layout`, with their addresses.
pub fn replicas(layout: &Layout, group: GroupId) -> Vec<(NodeId, String)> {
    let ids: Vec<NodeId> = match group.as_shard() {
        Some(s) => layout.placement.get(s as usize).cloned().unwrap_or_default(),
        None => layout.meta_members().0.into_iter().collect(),
    };
    ids.into_iter().filter_map(|id| layout.addr(id).map(|a| (id, a.to_owned()))).collect()
}

async fn backup_group(cli: &Cli, layout: &Layout, group: GroupId, out: &Path) -> Result<GroupEntry, BackupError> {
    let candidates = replicas(layout, group);
    let request = move || NodeRequest::BackupOpen { group };
    let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
    let noop = |_: NodeId, _: Option<String>| {};
    let (leader, reply) = call_leader(cli.client(), group, &candidates, &request, OPEN_TIMEOUT, deadline, &noop)
        .await
        .map_err(|source| BackupError::Leader { group, source })?;
    let (transfer, index, term) = match reply {
        NodeReply::BackupOpened { transfer, index, term } => (transfer, index, term),
        NodeReply::Error(source) => return Err(BackupError::Node { group, source }),
        other => return Err(BackupError::Unexpected { group, reply: format!("{other:?}") }),
    };
    let addr = layout.addr(leader).ok_or(BackupError::NoAddress { group, node: leader })?.to_owned();
    let file = format!("{group}.chunks");
    let path = out.join(&file);
    let mut writer = ChunkWriter::create(&path).map_err(io(&path))?;
    let mut check: Option<StreamCheck> = None;
    loop {
        // The node closes the backup once it has handed out the end.
        let request = NodeRequest::BackupNext { group, transfer };
        let timeout = node::chunk_timeout(raft_store::SNAPSHOT_CHUNK_BYTES_MAX);
        let chunk = match cli.client().call(&addr, request, timeout).await {
            Ok(NodeReply::BackupChunk(Some(chunk))) => chunk,
            Ok(NodeReply::BackupChunk(None)) => break,
            Ok(NodeReply::Error(source)) => return Err(BackupError::Node { group, source }),
            Ok(other) => return Err(BackupError::Unexpected { group, reply: format!("{other:?}") }),
            Err(source) => return Err(BackupError::Transport { group, source }),
        };
        // What arrives is checked as it would be on restore, before it is kept.
        let checked = match check.as_mut() {
            None => StreamCheck::begin(&chunk).map(|c| check = Some(c)),
            Some(c) => c.push(&chunk).map(|_| ()),
        };
        checked.map_err(|e| BackupError::Damaged { group: group.to_string(), damage: e.into() })?;
        writer.write(&chunk).map_err(io(&path))?;
        if matches!(chunk, SnapshotChunk::End { .. }) {
            break;
        }
    }
    let stream_damaged = |damage: Damage| BackupError::Damaged { group: group.to_string(), damage };
    let summary = check
        .ok_or_else(|| stream_damaged(Damage::Truncated { n: 0 }))?
        .finish()
        .map_err(|e| stream_damaged(e.into()))?;
    let (sha256, bytes) = writer.finish().map_err(io(&path))?;
    Ok(GroupEntry {
        group: group.to_string(),
        file,
        index,
        term,
        snapshot_id: summary.meta.snapshot_id.clone(),
        time_ms: summary.time_ms,
        hot_bytes: summary.hot_bytes,
        cold_records: summary.cold_records,
        digest: hex(&summary.digest),
        sha256,
        bytes,
    })
}
