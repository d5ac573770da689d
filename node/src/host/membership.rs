//! Membership, as a group's leader: adding replicas (as learners first), setting the voters,
//! removing members; and standing for election to balance leadership.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use raft_store::{GroupId, NodeId};

use super::error::{InvalidRequest, ProposeError};
use super::Node;
use crate::wire::{NodeReply, NodeRequest};

/// Longest a peer may take to open an empty copy of a group.
const OPEN_GROUP_TIMEOUT_MS: u64 = 10_000;

impl Node {
    /// As this group's leader: adds missing members as learners (waiting for each to catch up),
    /// then makes the voters exactly `voters`, then removes members in neither set.
    pub async fn ensure_members(
        &self,
        group: GroupId,
        voters: BTreeMap<NodeId, String>,
        learners: BTreeMap<NodeId, String>,
    ) -> Result<(), ProposeError> {
        let target = self.hosted(group)?;
        let raft = &target.raft;
        // A change that failed because this node lost the lead meanwhile is "not the leader".
        let leader_check = |e: ProposeError| -> ProposeError {
            let metrics = raft.metrics().borrow().clone();
            if metrics.current_leader == Some(self.id) {
                e
            } else {
                ProposeError::not_leader(group, metrics.current_leader, None)
            }
        };
        let write_failed = |e| leader_check(ProposeError::Write(Box::new(e)));
        let leader = raft.metrics().borrow().current_leader;
        if leader != Some(self.id) {
            return Err(ProposeError::not_leader(group, leader, None));
        }
        let membership = raft.metrics().borrow().membership_config.membership().clone();
        let present: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        for (id, addr) in voters.iter().chain(learners.iter()) {
            if !present.contains(id) {
                self.open_group_on(*id, addr, group).await?;
                raft.add_learner(*id, BasicNode { addr: addr.clone() }, true).await.map_err(write_failed)?;
            }
        }
        let current_voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let wanted: BTreeSet<NodeId> = voters.keys().copied().collect();
        if current_voters != wanted {
            raft.change_membership(wanted.clone(), false).await.map_err(write_failed)?;
        }
        let membership = raft.metrics().borrow().membership_config.membership().clone();
        let extra: BTreeSet<NodeId> = membership
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| !voters.contains_key(id) && !learners.contains_key(id))
            .collect();
        if !extra.is_empty() {
            raft.change_membership(ChangeMembers::RemoveNodes(extra), false).await.map_err(write_failed)?;
        }
        Ok(())
    }

    /// Has node `id` start an empty copy of `group`, so it can be added as a learner.
    async fn open_group_on(&self, id: NodeId, addr: &str, group: GroupId) -> Result<(), ProposeError> {
        if id == self.id {
            return Ok(());
        }
        let request = NodeRequest::OpenGroup { group };
        match self.client.call(addr, request, Duration::from_millis(OPEN_GROUP_TIMEOUT_MS)).await {
            Ok(NodeReply::Done) => Ok(()),
            Ok(NodeReply::Error(source)) => Err(ProposeError::Peer { node: id, source }),
            Ok(other) => Err(ProposeError::PeerAnswered { node: id, reply: Box::new(other) }),
            Err(source) => Err(ProposeError::OpenOnPeer { node: id, group, source }),
        }
    }

    /// Stands for election in `group`, if this node is one of its voters.
    pub async fn campaign(&self, group: GroupId) -> Result<(), ProposeError> {
        let target = self.hosted(group)?;
        let voter = target.raft.metrics().borrow().membership_config.membership().voter_ids().any(|v| v == self.id);
        if !voter {
            return Err(InvalidRequest::NotVoter { node: self.id, group }.into());
        }
        tracing::info!(node = self.id, %group, "standing for election to balance leadership");
        Ok(target.raft.trigger().elect().await?)
    }
}
