//! The node's identity: its id, and the shard count of the cluster it joined, kept in its data
//! directory and checked at every start. A directory is never reused by another node, and the
//! shard count — part of the event → shard map — never changes under existing data.

use std::sync::{Arc, Mutex};

use raft_store::{Kv, NodeId};
use serde::{Deserialize, Serialize};

use super::error::{IdentityError, InvalidRequest, ProposeError};

/// What a node was created as. The shard count is set once, when the node joins a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NodeIdentity {
    node_id: NodeId,
    shard_count: Option<u32>,
}

/// The identity as stored, and the database it is stored in.
pub(super) struct IdentityStore {
    kv: Arc<dyn Kv>,
    current: Mutex<NodeIdentity>,
}

impl IdentityStore {
    /// The identity stored in `kv`, which must be `node_id`'s; a new directory is given one.
    pub(super) async fn load(kv: Arc<dyn Kv>, node_id: NodeId) -> Result<IdentityStore, IdentityError> {
        let identity = match read(kv.as_ref())? {
            Some(stored) if stored.node_id != node_id => {
                return Err(IdentityError::OtherNode { stored: stored.node_id, given: node_id });
            }
            Some(stored) => stored,
            None => {
                let identity = NodeIdentity { node_id, shard_count: None };
                store(kv.as_ref(), &identity).await?;
                identity
            }
        };
        Ok(IdentityStore { kv, current: Mutex::new(identity) })
    }

    pub(super) fn shard_count(&self) -> Option<u32> {
        self.current.lock().map(|i| i.shard_count).unwrap_or(None)
    }

    /// Records `shard_count` as the cluster's, once: the same count again changes nothing,
    /// another is refused.
    pub(super) async fn join(&self, shard_count: u32) -> Result<(), ProposeError> {
        if shard_count == 0 || shard_count > raft_store::SHARDS_MAX {
            return Err(InvalidRequest::ShardCountOutOfRange { asked: shard_count }.into());
        }
        let next = {
            let mut identity = self.current.lock().map_err(|_| ProposeError::LockPoisoned)?;
            match identity.shard_count {
                Some(n) if n == shard_count => return Ok(()),
                Some(stored) => return Err(InvalidRequest::OtherShardCount { stored }.into()),
                None => {
                    identity.shard_count = Some(shard_count);
                    identity.clone()
                }
            }
        };
        Ok(store(self.kv.as_ref(), &next).await?)
    }
}

fn read(kv: &dyn Kv) -> Result<Option<NodeIdentity>, IdentityError> {
    let tree = kv.tree(raft_store::NODE_TREE)?;
    match tree.get(&[raft_store::NODE_IDENTITY])? {
        Some(bytes) => Ok(Some(raft_store::decode(&bytes)?)),
        None => Ok(None),
    }
}

async fn store(kv: &dyn Kv, identity: &NodeIdentity) -> Result<(), IdentityError> {
    let tree = kv.tree(raft_store::NODE_TREE)?;
    let mut batch = raft_store::Batch::default();
    batch.put(vec![raft_store::NODE_IDENTITY], raft_store::encode(identity)?);
    tree.write(batch)?;
    Ok(raft_store::flushed(kv).await?)
}
