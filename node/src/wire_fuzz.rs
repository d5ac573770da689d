//! The node's wire messages fed mutated bytes (see `raft_store::fuzz`): a request or a reply from
//! a peer that decodes wrongly must be refused, never panic the node or its client.

use proptest::prelude::*;
use raft_store::fuzz::{body_of, case};
use raft_store::{Command, GroupId, Outcome, Proposal, Query, Refusal};

use crate::wire::{NodeReply, NodeRequest, RaftRpcReply, WireError};

fn request_seeds() -> Vec<Vec<u8>> {
    let group = GroupId::shard(3);
    let requests = [
        NodeRequest::Propose { group, proposal: Proposal::internal(Command::Expire), quick_refusal: true },
        NodeRequest::Read { group, query: Query::Layout, linearizable: true },
        NodeRequest::Changes { group, after_index: 7, limit: 100, wait_ms: 500 },
        NodeRequest::Routing,
        NodeRequest::Status,
        NodeRequest::Info,
        NodeRequest::DropGroup { group },
        NodeRequest::BackupNext { group, transfer: 3 },
    ];
    requests.iter().filter_map(|r| body_of(&raft_store::encode(r).ok()?)).collect()
}

fn reply_seeds() -> Vec<Vec<u8>> {
    let replies = [
        NodeReply::Outcome(Outcome::Refused(Refusal::QueueRequired)),
        NodeReply::Raft(RaftRpcReply::UnknownGroup),
        NodeReply::Done,
        NodeReply::Error(WireError::Fatal("gone".into())),
        NodeReply::BackupOpened { transfer: 1, index: 40, term: 3 },
        NodeReply::BackupChunk(None),
        NodeReply::Layout(None),
    ];
    replies.iter().filter_map(|r| body_of(&raft_store::encode(r).ok()?)).collect()
}

#[test]
fn the_seeds_decode() {
    assert_eq!(request_seeds().len(), 8);
    assert_eq!(reply_seeds().len(), 7);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn wire_decoders_refuse_mutated_messages_without_panicking(case in case()) {
        let _ = raft_store::decode::<NodeRequest>(&case.bytes(&request_seeds()));
        let _ = raft_store::decode::<NodeReply>(&case.bytes(&reply_seeds()));
    }
}
