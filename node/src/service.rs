//! Answers a [`NodeRequest`]: the one entry point of every call to a node, whatever carried it.

use std::sync::Arc;
use std::time::Duration;

use raft_store::{Answer, GroupId, Layout, Query};

use crate::coordinator::init_cluster;
use crate::host::{Node, HAND_OVER_TIMEOUT_MS};
use crate::wire::{NodeReply, NodeRequest, RoutingReply, WireError};

/// Longest a change-feed poll may wait.
const CHANGES_WAIT_MS_MAX: u64 = 30_000;

impl Node {
    pub async fn handle(self: &Arc<Self>, request: NodeRequest) -> NodeReply {
        self.answer(request).await.unwrap_or_else(NodeReply::Error)
    }

    async fn answer(self: &Arc<Self>, request: NodeRequest) -> Result<NodeReply, WireError> {
        let reply = match request {
            NodeRequest::Raft(rpc) => NodeReply::Raft(self.handle_raft(rpc).await?),
            NodeRequest::Propose { group, proposal, quick_refusal } => {
                NodeReply::Outcome(self.propose(group, proposal, quick_refusal).await?)
            }
            NodeRequest::Read { group, query, linearizable } => {
                NodeReply::Answer(self.read(group, &query, linearizable).await?)
            }
            NodeRequest::Changes { group, after_index, limit, wait_ms } => {
                let wait = Duration::from_millis(wait_ms.min(CHANGES_WAIT_MS_MAX));
                let limit = limit.min(raft_store::LIST_LIMIT_MAX * 10);
                NodeReply::Changes(self.changes(group, after_index, limit, wait).await?)
            }
            NodeRequest::Routing => NodeReply::Routing(RoutingReply {
                node_id: self.id(),
                layout: self.local_layout(),
                leaders: self.leader_hints(),
                peers: self.peer_addrs(),
            }),
            NodeRequest::Status => NodeReply::Status(self.status()),
            NodeRequest::Info => NodeReply::Info(self.info()),
            NodeRequest::Join { shard_count } => {
                self.join(shard_count).await?;
                NodeReply::Done
            }
            NodeRequest::InitCluster { nodes, shard_count, replication } => {
                let layout = init_cluster(self, nodes, shard_count, replication).await?;
                NodeReply::Layout(Some(Box::new(layout)))
            }
            NodeRequest::OpenGroup { group } => {
                self.ensure_group(group).await?;
                NodeReply::Done
            }
            NodeRequest::Campaign { group } => {
                self.campaign(group).await?;
                NodeReply::Done
            }
            NodeRequest::TransferLeader { group, to } => {
                let leader = self.hand_over(group, to, Duration::from_millis(HAND_OVER_TIMEOUT_MS)).await?;
                NodeReply::Leader { group, leader }
            }
            NodeRequest::InitGroup { group, members } => {
                self.init_group(group, members).await?;
                NodeReply::Done
            }
            NodeRequest::EnsureMembers { group, voters, learners } => {
                self.ensure_members(group, voters, learners).await?;
                NodeReply::Done
            }
            NodeRequest::DropGroup { group } => {
                self.drop_group(group).await?;
                NodeReply::Done
            }
            NodeRequest::BackupOpen { group } => {
                let (transfer, index, term) = self.backup_open(group).await?;
                NodeReply::BackupOpened { transfer, index, term }
            }
            NodeRequest::BackupNext { group, transfer } => {
                NodeReply::BackupChunk(self.backup_next(group, transfer).await?)
            }
            NodeRequest::RestoreChunk { group, transfer, seq, chunk } => {
                self.restore_chunk(group, transfer, seq, chunk).await?;
                NodeReply::Done
            }
        };
        Ok(reply)
    }

    /// The layout as this node's meta replica has applied it (possibly stale), if it hosts one.
    pub fn local_layout(&self) -> Option<Box<Layout>> {
        let meta = self.group(GroupId::META)?;
        match meta.state.query(&Query::Layout, self.clock().passed_ms()) {
            Ok(Answer::Layout(layout)) => layout,
            _ => None,
        }
    }
}
