//! Raft traffic between nodes, behind a [`Transport`]: one message type for every group, so many
//! groups share the connections between two nodes. Implementations: [`NoPeers`] for a single
//! node, HTTP between processes, madsim's network in the simulation.

use std::sync::Arc;
use std::time::Duration;

use api::BoxFuture;
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{RaftNetwork, RaftNetworkFactory};
use raft_store::{GroupId, Node, NodeId, Snapshot, SnapshotMeta, TypeConfig, Vote};
use serde::{Deserialize, Serialize};

/// A Raft message for one group of the receiving node.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    Append { group: GroupId, req: AppendEntriesRequest<TypeConfig> },
    Vote { group: GroupId, req: VoteRequest<NodeId> },
    Snapshot { group: GroupId, vote: Vote, meta: SnapshotMeta, data: Vec<u8> },
}

impl RaftRpc {
    pub fn group(&self) -> GroupId {
        match self {
            RaftRpc::Append { group, .. } | RaftRpc::Vote { group, .. } | RaftRpc::Snapshot { group, .. } => *group,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpcReply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<SnapshotResponse<NodeId>, Fatal<NodeId>>),
    /// The receiving node does not host this group (not yet, or no longer).
    UnknownGroup,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("node {0} is unreachable: {1}")]
    Unreachable(NodeId, String),
    #[error("call to node {0} timed out")]
    Timeout(NodeId),
}

pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        target: NodeId,
        addr: &str,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<RaftRpcReply, TransportError>>;
}

/// The transport of a node that is the only member of its groups: there is nobody to call.
pub struct NoPeers;

impl Transport for NoPeers {
    fn call(
        &self,
        target: NodeId,
        _addr: &str,
        _rpc: RaftRpc,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<RaftRpcReply, TransportError>> {
        Box::pin(async move { Err(TransportError::Unreachable(target, "this node has no peers".into())) })
    }
}

/// openraft's factory of per-peer clients for one group.
#[derive(Clone)]
pub struct NetworkFactory {
    group: GroupId,
    transport: Arc<dyn Transport>,
}

impl NetworkFactory {
    pub fn new(group: GroupId, transport: Arc<dyn Transport>) -> NetworkFactory {
        NetworkFactory { group, transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient { group: self.group, target, addr: node.addr.clone(), transport: self.transport.clone() }
    }
}

pub struct PeerClient {
    group: GroupId,
    target: NodeId,
    addr: String,
    transport: Arc<dyn Transport>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call(&self, rpc: RaftRpc, timeout: Duration) -> Result<RaftRpcReply, Unreachable> {
        self.transport.call(self.target, &self.addr, rpc, timeout).await.map_err(|e| Unreachable::new(&e))
    }

    fn unexpected(&self, reply: RaftRpcReply) -> NetworkError {
        let what = match reply {
            RaftRpcReply::UnknownGroup => format!("node {} does not host {}", self.target, self.group),
            other => format!("unexpected reply {other:?}"),
        };
        NetworkError::new(&std::io::Error::other(what))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let reply = self.call(RaftRpc::Append { group: self.group, req }, option.hard_ttl()).await?;
        match reply {
            RaftRpcReply::Append(Ok(resp)) => Ok(resp),
            RaftRpcReply::Append(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(RPCError::Network(self.unexpected(other))),
        }
    }

    async fn vote(&mut self, req: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        let reply = self.call(RaftRpc::Vote { group: self.group, req }, option.hard_ttl()).await?;
        match reply {
            RaftRpcReply::Vote(Ok(resp)) => Ok(resp),
            RaftRpcReply::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(RPCError::Network(self.unexpected(other))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let rpc = RaftRpc::Snapshot { group: self.group, vote, meta: snapshot.meta, data: *snapshot.snapshot };
        let reply = self.call(rpc, option.hard_ttl()).await?;
        match reply {
            RaftRpcReply::Snapshot(Ok(resp)) => Ok(resp),
            RaftRpcReply::Snapshot(Err(e)) => Err(StreamingError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(StreamingError::Network(self.unexpected(other))),
        }
    }
}
