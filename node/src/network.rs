//! openraft's network over a [`NodeClient`]: each group's Raft traffic travels as a [`RaftRpc`]
//! (one message type for every group, so many groups share the connections between two nodes).
//! [`NoPeers`] is the client of a node alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{RaftNetwork, RaftNetworkFactory};
use raft_store::{GroupId, NodeAddr, NodeId, Snapshot, SnapshotChunk, TypeConfig, Vote};
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
    #[error("the snapshot's stream ended without its end")]
    CutStream,
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
        let reply = self.client.call(&self.addr, NodeRequest::Raft(rpc), timeout).await;
        self.raft_reply(reply)
    }

    /// A call carrying bulk data, on the peer's bulk connection.
    async fn call_bulk(&self, rpc: RaftRpc, timeout: Duration) -> Result<RaftRpcReply, Unreachable> {
        let reply = self.client.call_bulk(&self.addr, NodeRequest::Raft(rpc), timeout).await;
        self.raft_reply(reply)
    }

    fn raft_reply(&self, reply: Result<NodeReply, TransportError>) -> Result<RaftRpcReply, Unreachable> {
        match reply {
            Ok(NodeReply::Raft(reply)) => Ok(reply),
            Ok(NodeReply::Error(e)) => Err(Unreachable::new(&e)),
            Ok(other) => {
                Err(Unreachable::new(&PeerError::BadReply { addr: self.addr.clone(), reply: Box::new(other) }))
            }
            Err(e) => Err(Unreachable::new(&e)),
        }
    }

    /// What a reply that is not the one asked for means to openraft. A peer that does not host
    /// the group (not yet, no longer, or its copy is damaged) is unreachable for it: openraft backs
    /// off before trying again, rather than asking again at once.
    fn unexpected(&self, reply: RaftRpcReply) -> Unexpected {
        match reply {
            RaftRpcReply::UnknownGroup => Unexpected::Unreachable(Unreachable::new(&PeerError::NotHosted {
                node: self.target,
                group: self.group,
            })),
            other => Unexpected::Network(NetworkError::new(&PeerError::UnexpectedReply(Box::new(other)))),
        }
    }
}

/// A reply other than the one asked for, as openraft's errors say it.
enum Unexpected {
    Unreachable(Unreachable),
    Network(NetworkError),
}

impl<E: std::error::Error> From<Unexpected> for RPCError<NodeId, NodeAddr, E> {
    fn from(e: Unexpected) -> Self {
        match e {
            Unexpected::Unreachable(e) => RPCError::Unreachable(e),
            Unexpected::Network(e) => RPCError::Network(e),
        }
    }
}

impl From<Unexpected> for StreamingError<TypeConfig, Fatal<NodeId>> {
    fn from(e: Unexpected) -> Self {
        match e {
            Unexpected::Unreachable(e) => StreamingError::Unreachable(e),
            Unexpected::Network(e) => StreamingError::Network(e),
        }
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
            other => Err(self.unexpected(other).into()),
        }
    }

    async fn vote(&mut self, req: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        let reply = self.call(RaftRpc::Vote { group: self.group, req }, option.hard_ttl()).await?;
        match reply {
            RaftRpcReply::Vote(Ok(resp)) => Ok(resp),
            RaftRpcReply::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.unexpected(other).into()),
        }
    }

    /// Streams the snapshot as a sequence of calls on the peer's bulk connection, one chunk each:
    /// each is answered before the next is read and sent (the receiver's pace bounds what is in
    /// flight to one chunk), each has a timeout sized to its bytes, and the transfer stops when
    /// openraft cancels it (a new leader, a removed peer).
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let transfer = NEXT_TRANSFER.fetch_add(1, Ordering::Relaxed);
        let hot_bytes = snapshot.snapshot.hot().len();
        let mut cancel = std::pin::pin!(cancel);
        let mut reader = snapshot.snapshot.reader();
        let mut seq = 0u64;
        loop {
            let (next, chunk) =
                reader.next_chunk_off_runtime().await.map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            reader = next;
            let chunk = chunk.ok_or_else(|| StreamingError::Network(NetworkError::new(&PeerError::CutStream)))?;
            let end = matches!(chunk, SnapshotChunk::End { .. });
            // The last chunk is answered once the snapshot is installed: its decoding and writing
            // take time in proportion to the hot part.
            let timeout = chunk_timeout(if end { hot_bytes } else { chunk.payload_bytes() });
            let bytes = chunk.payload_bytes();
            let rpc = RaftRpc::SnapshotChunk { group: self.group, transfer, seq, vote, chunk };
            let reply = tokio::select! {
                biased;
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                reply = self.call_bulk(rpc, timeout) => reply?,
            };
            metrics::counter!("boxoffice_snapshot_sent_bytes_total").increment(bytes as u64);
            match reply {
                RaftRpcReply::ChunkTaken if !end => seq += 1,
                RaftRpcReply::Snapshot(Ok(resp)) if end => return Ok(resp),
                RaftRpcReply::Snapshot(Err(e)) => {
                    return Err(StreamingError::RemoteError(RemoteError::new(self.target, e)))
                }
                other => return Err(self.unexpected(other).into()),
            }
        }
    }
}

/// Names each snapshot transfer this process starts (the receiver tells transfers apart by it).
static NEXT_TRANSFER: AtomicU64 = AtomicU64::new(1);

/// How long one chunk of a snapshot may take: a floor for the round trip and the receiver's
/// bookkeeping, plus its bytes at a rate any link and disk of a cluster sustain.
pub fn chunk_timeout(bytes: usize) -> Duration {
    let transfer_ms = (bytes as u64).saturating_mul(1_000) / CHUNK_RATE_BYTES_PER_S_MIN;
    Duration::from_millis(CHUNK_TIMEOUT_FLOOR_MS.saturating_add(transfer_ms))
}

/// The floor of every chunk's timeout.
const CHUNK_TIMEOUT_FLOOR_MS: u64 = 2_000;
/// The slowest transfer a chunk's timeout allows for, in bytes per second: 4 MiB/s.
const CHUNK_RATE_BYTES_PER_S_MIN: u64 = 4 << 20;
