//! Restoring a backup: `boxoffice cluster init … --restore DIR` starts a new cluster from it,
//! `boxoffice dev --restore DIR` a new dev data directory.
//!
//! The backup is verified first. Each group is then rebased onto the new cluster — at index 1,
//! with the new members, its cold records re-stamped, the meta group given the new layout (see
//! raft-store's `restore.rs`) — once, here, and the same stream goes to every replica the new
//! layout gives the group, which seeds its copy with it (`NodeRequest::RestoreChunk`) and starts
//! the group. Only then is the cluster initialized: `cluster init` finds every group started, and
//! the meta group already holding the layout it records. Nodes must be new (a node that hosts a
//! group refuses to be seeded with it): a restore that failed half-way is retried on emptied
//! nodes.

use std::path::Path;
use std::sync::Arc;

use node::{Node, NodeClient, NodeReply, NodeRequest, ProposeError, TransportError, WireError};
use raft_store::{GroupId, Layout, NodeId, Rebaser, RestoreError, RestoreTarget, SnapshotChunk};

use crate::backup::{all_groups, Backup, BackupError};
use crate::cluster_cli::{Cli, ClusterCliError};

#[derive(Debug, thiserror::Error)]
pub enum RestoreCliError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("{group}: {source}")]
    Rebase { group: GroupId, source: RestoreError },
    #[error(
        "the backup is of a cluster of {backup} shards, not {given}: the shard count is part of the event → shard map"
    )]
    ShardCount { backup: u32, given: u32 },
    #[error("refused: {0}")]
    InvalidLayout(String),
    #[error("node {node} refused {group}: {source}")]
    Node { node: NodeId, group: GroupId, source: WireError },
    #[error("node {node}, {group}: {source}")]
    Transport { node: NodeId, group: GroupId, source: TransportError },
    #[error("node {node}, {group}: unexpected reply {reply}")]
    Unexpected { node: NodeId, group: GroupId, reply: String },
    #[error("{group}: {source}")]
    Local { group: GroupId, source: ProposeError },
    #[error(transparent)]
    Cluster(#[from] ClusterCliError),
    #[error("{0} is not empty: a restore goes into a new data directory")]
    NotEmpty(std::path::PathBuf),
}

/// Where the restored streams go: nodes over the network, or the node of this process.
enum Seeds<'a> {
    Remote(&'a Cli),
    Local(&'a Arc<Node>),
}

impl Seeds<'_> {
    async fn send(
        &self,
        (node, addr): (NodeId, &str),
        group: GroupId,
        (transfer, seq): (u64, u64),
        chunk: SnapshotChunk,
        hot_bytes: usize,
    ) -> Result<(), RestoreCliError> {
        let bytes = if matches!(chunk, SnapshotChunk::End { .. }) { hot_bytes } else { chunk.payload_bytes() };
        match self {
            Seeds::Local(local) => {
                local
                    .restore_chunk(group, transfer, seq, chunk)
                    .await
                    .map_err(|source| RestoreCliError::Local { group, source })?;
                Ok(())
            }
            Seeds::Remote(cli) => {
                let request = NodeRequest::RestoreChunk { group, transfer, seq, chunk };
                match cli.client().call_bulk(addr, request, node::chunk_timeout(bytes)).await {
                    Ok(NodeReply::Done) => Ok(()),
                    Ok(NodeReply::Error(source)) => Err(RestoreCliError::Node { node, group, source }),
                    Ok(other) => Err(RestoreCliError::Unexpected { node, group, reply: format!("{other:?}") }),
                    Err(source) => Err(RestoreCliError::Transport { node, group, source }),
                }
            }
        }
    }
}

/// Rebases every group of `backup` onto `layout` and seeds every replica with it.
async fn seed_groups(backup: &Backup, layout: &Layout, seeds: Seeds<'_>) -> Result<(), RestoreCliError> {
    for group in all_groups(layout.shard_count) {
        let target = RestoreTarget::new(group, layout).map_err(|source| RestoreCliError::Rebase { group, source })?;
        let members: Vec<(NodeId, String)> = target.members().map(|(id, addr)| (*id, addr.clone())).collect();
        let entry = backup.entry(group)?;
        let mut reader = backup.reader(entry)?;
        let damaged = |damage| BackupError::Damaged { group: entry.group.clone(), damage };
        let first = reader.next_chunk().map_err(damaged)?.ok_or(BackupError::Missing(group))?;
        let mut rebaser = Rebaser::new(&first, target).map_err(|source| RestoreCliError::Rebase { group, source })?;
        let transfer: u64 = rand::random();
        let (mut seq, mut hot_bytes, mut sent_bytes) = (0u64, 0usize, 0u64);
        while let Some(chunk) = reader.next_chunk().map_err(damaged)? {
            for out in rebaser.push(&chunk).map_err(|source| RestoreCliError::Rebase { group, source })? {
                if let SnapshotChunk::Begin { hot_bytes: hot, .. } = &out {
                    hot_bytes = *hot as usize;
                }
                sent_bytes += out.payload_bytes() as u64;
                for (id, addr) in &members {
                    seeds.send((*id, addr), group, (transfer, seq), out.clone(), hot_bytes).await?;
                }
                seq += 1;
            }
        }
        if !rebaser.ended() {
            return Err(BackupError::Damaged {
                group: entry.group.clone(),
                damage: crate::backup::Damage::Truncated { n: seq },
            }
            .into());
        }
        let ids: Vec<NodeId> = members.iter().map(|(id, _)| *id).collect();
        tracing::info!(%group, nodes = ?ids, bytes = sent_bytes, "group restored");
        if let Seeds::Remote(_) = seeds {
            println!("{group}: restored on nodes {ids:?} (index {} of the backup, {sent_bytes} bytes)", entry.index);
        }
    }
    Ok(())
}

/// Opens and verifies a backup; the shard count it holds, checked against `given`.
fn open_verified(dir: &Path, given: Option<u32>) -> Result<Backup, RestoreCliError> {
    let backup = Backup::open(dir)?;
    backup.verify()?;
    let shard_count = backup.manifest.shard_count;
    match given {
        Some(given) if given != shard_count => Err(RestoreCliError::ShardCount { backup: shard_count, given }),
        _ => Ok(backup),
    }
}

/// `boxoffice cluster init --restore DIR`: a new cluster of `nodes` whose groups start from the
/// backup. `shards`, if given, must be the backup's.
pub async fn init_cluster(
    cli: &Cli,
    dir: &Path,
    nodes: Vec<(NodeId, String)>,
    shards: Option<u32>,
    replication: u32,
) -> Result<String, RestoreCliError> {
    let backup = open_verified(dir, shards)?;
    let shard_count = backup.manifest.shard_count;
    println!(
        "backup {} verified: {} groups, taken {}",
        dir.display(),
        backup.manifest.groups.len(),
        backup.manifest.created_at
    );
    let layout = Layout::initial(shard_count, replication, &nodes).map_err(RestoreCliError::InvalidLayout)?;
    for (id, addr) in &nodes {
        cli.join(*id, addr, shard_count).await?;
    }
    seed_groups(&backup, &layout, Seeds::Remote(cli)).await?;
    Ok(cli.init(nodes, shard_count, replication).await?)
}

/// Refuses a dev data directory that holds anything: a restore goes into a new one.
pub fn check_new_data_dir(dir: &Path) -> Result<(), RestoreCliError> {
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(RestoreCliError::NotEmpty(dir.to_owned()));
    }
    Ok(())
}

/// `boxoffice dev --restore DIR`, before the dev node bootstraps: opens and verifies the backup.
/// `shards`, if given, must be the backup's.
pub fn open_for_dev(dir: &Path, data_dir: &Path, shards: Option<u32>) -> Result<Backup, RestoreCliError> {
    check_new_data_dir(data_dir)?;
    open_verified(dir, shards)
}

/// Seeds the dev node (the only replica of every group) with the backup.
pub async fn seed_dev(node: &Arc<Node>, backup: &Backup) -> Result<(), RestoreCliError> {
    let shard_count = backup.manifest.shard_count;
    node.join(shard_count).await.map_err(|source| RestoreCliError::Local { group: GroupId::META, source })?;
    let me = [(node.id(), node.advertise_addr().to_owned())];
    let layout = Layout::initial(shard_count, 1, &me).map_err(RestoreCliError::InvalidLayout)?;
    seed_groups(backup, &layout, Seeds::Local(node)).await
}
