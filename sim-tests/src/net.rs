//! The simulation's [`NodeClient`]: the same encoded `NodeRequest` bytes as production, carried
//! by madsim's network, which adds latency, loses packets, partitions and kills nodes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use madsim::net::Endpoint;
use node::{Node, NodeClient, NodeReply, NodeRequest, TransportError};
use raft_store::NodeId;
use seams::BoxFuture;

/// The port every simulated node serves on.
const SERVER_PORT: u16 = 7000;
/// Tag of requests; replies use a random tag chosen by the caller.
const REQUEST_TAG: u64 = 1;

pub fn node_ip(id: NodeId) -> IpAddr {
    assert!(id > 0 && id < 250, "simulated node ids are 1..250");
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8))
}

pub fn node_addr(id: NodeId) -> String {
    SocketAddr::new(node_ip(id), SERVER_PORT).to_string()
}

pub struct SimClient;

impl NodeClient for SimClient {
    fn call(
        &self,
        addr: &str,
        request: NodeRequest,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<NodeReply, TransportError>> {
        let addr = addr.to_owned();
        Box::pin(async move {
            let unreachable = |e: String| TransportError::Unreachable(addr.clone(), e);
            let dst: SocketAddr = addr.parse().map_err(|_| unreachable("bad address".into()))?;
            let bytes = raft_store::encode(&request).map_err(|e| unreachable(e.to_string()))?;
            let endpoint = Endpoint::bind("0.0.0.0:0").await.map_err(|e| unreachable(e.to_string()))?;
            let reply_tag: u64 = madsim::rand::random::<u64>() | 2;
            endpoint
                .send_to_raw(dst, REQUEST_TAG, Box::new((reply_tag, bytes)))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let received = madsim::time::timeout(timeout, endpoint.recv_from_raw(reply_tag)).await;
            let (payload, _) = match received {
                Err(_) => return Err(TransportError::Timeout(addr)),
                Ok(r) => r.map_err(|e| unreachable(e.to_string()))?,
            };
            let bytes = payload
                .downcast::<Vec<u8>>()
                .map_err(|_| TransportError::BadReply(addr.clone(), "payload type".into()))?;
            raft_store::decode(&bytes).map_err(|e| TransportError::BadReply(addr.clone(), e.to_string()))
        })
    }
}

/// Serves a node's requests until its simulated process is killed.
pub async fn serve(node: Arc<Node>) {
    let endpoint = match Endpoint::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), SERVER_PORT)).await {
        Ok(e) => Arc::new(e),
        Err(e) => panic!("node {} cannot bind: {e}", node.id()),
    };
    loop {
        let Ok((payload, from)) = endpoint.recv_from_raw(REQUEST_TAG).await else { continue };
        let Ok(message) = payload.downcast::<(u64, Vec<u8>)>() else { continue };
        let (reply_tag, bytes) = *message;
        let (node, endpoint) = (node.clone(), endpoint.clone());
        madsim::task::spawn(async move {
            let Ok(request) = raft_store::decode::<NodeRequest>(&bytes) else { return };
            let reply = node.handle(request).await;
            if let Ok(bytes) = raft_store::encode(&reply) {
                let _ = endpoint.send_to_raw(from, reply_tag, Box::new(bytes)).await;
            }
        });
    }
}
