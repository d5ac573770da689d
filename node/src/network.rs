//! openraft's network over a [`NodeClient`]: each group's Raft traffic travels as a [`RaftRpc`]
//! (one message type for every group, so many groups share the connections between two nodes).
//! [`NoPeers`] is the client of a node alone.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{RaftNetwork, RaftNetworkFactory};
use raft_store::{GroupId, NodeAddr, NodeId, Snapshot, TypeConfig, Vote};
use seams::BoxFuture;

use crate::wire::{NodeClient, NodeReply, NodeRequest, RaftRpc, RaftRpcReply, TransportError};

/// Why a peer's answer to a Raft message is of no use to openraft.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    /// The peer answered with something other than a Raft reply.
    #[error("bad reply from {addr}: {reply:?}")]
    BadReply { addr: String, reply: Box<NodeReply> },
    #[error("node {node} does not host {group}")]
    NotHosted { node: NodeId, group: GroupId },
    #[error("unexpected reply {0:?}")]
    UnexpectedReply(Box<RaftRpcReply>),
}

/// The client of a node that is the only member of its groups: there is nobody to call.
pub struct NoPeers;

impl NodeClient for NoPeers {
    fn call(
        &self,
        addr: &str,
        _request: NodeRequest,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<NodeReply, TransportError>> {
        let addr = addr.to_owned();
        Box::pin(async move { Err(TransportError::Unreachable(addr, "this node has no peers".into())) })
    }
}

/// openraft's factory of per-peer clients for one group.
#[derive(Clone)]
pub struct NetworkFactory {
    group: GroupId,
    client: Arc<dyn NodeClient>,
}

impl NetworkFactory {
    pub fn new(group: GroupId, client: Arc<dyn NodeClient>) -> NetworkFactory {
        NetworkFactory { group, client }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> PeerClient {
        PeerClient { group: self.group, target, addr: node.addr.clone(), client: self.client.clone() }
    }
}

pub struct PeerClient {
    group: GroupId,
    target: NodeId,
    addr: String,
    client: Arc<dyn NodeClient>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call(&self, rpc: RaftRpc, timeout: Duration) -> Result<RaftRpcReply, Unreachable> {
        match self.client.call(&self.addr, NodeRequest::Raft(rpc), timeout).await {
            Ok(NodeReply::Raft(reply)) => Ok(reply),
            Ok(NodeReply::Error(e)) => Err(Unreachable::new(&e)),
            Ok(other) => {
                Err(Unreachable::new(&PeerError::BadReply { addr: self.addr.clone(), reply: Box::new(other) }))
            }
            Err(e) => Err(Unreachable::new(&e)),
        }
    }

    fn unexpected(&self, reply: RaftRpcReply) -> NetworkError {
        let error = match reply {
            RaftRpcReply::UnknownGroup => PeerError::NotHosted { node: self.target, group: self.group },
            other => PeerError::UnexpectedReply(Box::new(other)),
        };
        NetworkError::new(&error)
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
        let mut reader = snapshot.snapshot.reader();
        let mut chunks = Vec::new();
        while let Some(chunk) = reader.next_chunk().map_err(|e| StreamingError::Network(NetworkError::new(&e)))? {
            chunks.push(chunk);
        }
        let rpc = RaftRpc::Snapshot { group: self.group, vote, chunks };
        let reply = self.call(rpc, option.hard_ttl()).await?;
        match reply {
            RaftRpcReply::Snapshot(Ok(resp)) => Ok(resp),
            RaftRpcReply::Snapshot(Err(e)) => Err(StreamingError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(StreamingError::Network(self.unexpected(other))),
        }
    }
}
