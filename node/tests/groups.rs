//! Groups start on a node only when the node is told to, never because Raft traffic arrives.

use std::sync::Arc;

use node::{NoPeers, Node, NodeSetup, RaftRpc, RaftRpcReply, RaftTuning};
use openraft::raft::VoteRequest;
use raft_store::{GroupId, MemKv};

/// Regression (found by the simulation): a replica moved away from a node, then a stale leader's
/// message for its group arrived; the node started an empty copy and answered with an empty log,
/// and the leader saw its follower's log go backwards.
#[tokio::test]
async fn raft_traffic_for_a_group_not_hosted_does_not_start_it() {
    let kv = MemKv::new();
    let setup = NodeSetup {
        node_id: 1,
        advertise_addr: "127.0.0.1:1".into(),
        kv: kv.clone(),
        log_kv: kv,
        client: Arc::new(NoPeers),
        tuning: RaftTuning::default(),
        clock: node::Clock::default(),
    };
    let node = Node::start(setup).await.expect("start");
    node.join(4).await.expect("join");
    let group = GroupId::shard(2);
    let vote = VoteRequest::new(openraft::Vote::new(5, 2), None);
    let reply = node.handle_raft(RaftRpc::Vote { group, req: vote }).await;
    assert!(matches!(reply, Ok(RaftRpcReply::UnknownGroup)), "{reply:?}");
    assert!(node.group(group).is_none(), "the group was not started");

    // Told to, it starts the group, and the same message now reaches it.
    node.ensure_group(group).await.expect("open");
    let vote = VoteRequest::new(openraft::Vote::new(5, 2), None);
    assert!(matches!(node.handle_raft(RaftRpc::Vote { group, req: vote }).await, Ok(RaftRpcReply::Vote(_))));
    node.shutdown().await;
}
