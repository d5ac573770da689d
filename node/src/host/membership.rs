//! Membership, as a group's leader: adding replicas (as learners first), setting the voters,
//! removing members; standing for election to balance leadership; and handing leadership over
//! (an operator's transfer, a node's shutdown).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use raft_store::{GroupId, NodeId};

use super::error::{InvalidRequest, ProposeError};
use super::Node;
use crate::wire::{NodeReply, NodeRequest};

/// Longest a peer may take to open an empty copy of a group.
const OPEN_GROUP_TIMEOUT_MS: u64 = 10_000;
/// Longest one hand-over may take, from refusing new work to the successor's election.
pub const HAND_OVER_TIMEOUT_MS: u64 = 8_000;
/// How long the successor has to receive the entries already proposed before its election.
const CATCH_UP_WAIT_MS: u64 = 2_000;
/// How often a hand-over looks at the group's metrics while it waits.
const HAND_OVER_POLL_MS: u64 = 20;
/// How long a campaign is given to win before the successor is asked again.
const CAMPAIGN_WAIT_MS: u64 = 1_000;

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

impl Node {
    /// As the group's leader: hands the leadership to `to` (another voter), or to the most
    /// up-to-date other voter, and returns the new leader. openraft 0.9 has no leadership
    /// transfer, so this node stops taking proposals and confirming reads for the group and stops
    /// its heartbeats; the entries already proposed reach the successor; once the followers'
    /// leader lease (the election timeout) has run out, the successor stands for election and wins
    /// with the longest log. Callers that hear "not the leader" meanwhile retry at the new leader.
    /// If no successor is elected in time this node leads on as before.
    pub async fn hand_over(
        &self,
        group: GroupId,
        to: Option<NodeId>,
        timeout: Duration,
    ) -> Result<NodeId, ProposeError> {
        let target = self.hosted(group)?;
        let m = target.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.id) {
            return Err(ProposeError::not_leader(group, m.current_leader, None));
        }
        let membership = m.membership_config.membership().clone();
        let others: Vec<NodeId> = membership.voter_ids().filter(|v| *v != self.id).collect();
        let matched = |m: &super::lease::Metrics, id: NodeId| {
            m.replication.as_ref().and_then(|r| r.get(&id).copied().flatten()).map_or(0, |l| l.index)
        };
        let successor = match to {
            Some(id) if others.contains(&id) => id,
            Some(node) => return Err(InvalidRequest::NotVoter { node, group }.into()),
            None => match others.iter().copied().max_by_key(|id| (matched(&m, *id), std::cmp::Reverse(*id))) {
                Some(id) => id,
                None => return Err(InvalidRequest::NotVoter { node: self.id, group }.into()),
            },
        };
        let addr = membership
            .get_node(&successor)
            .map(|n| n.addr.clone())
            .ok_or(InvalidRequest::NotVoter { node: successor, group })?;
        tracing::info!(node = self.id, %group, successor, "handing leadership over");
        let deadline = tokio::time::Instant::now() + timeout;
        target.handoff.start();
        let runtime = target.raft.runtime_config();
        runtime.heartbeat(false);
        runtime.elect(false);
        let result = self.elect_successor(&target, successor, &addr, deadline, matched).await;
        runtime.heartbeat(true);
        runtime.elect(true);
        target.handoff.end();
        match &result {
            Ok(leader) => tracing::info!(node = self.id, %group, leader, "leadership handed over"),
            Err(e) => tracing::warn!(node = self.id, %group, error = %e, "leadership not handed over; leading on"),
        }
        result
    }

    async fn elect_successor(
        &self,
        target: &super::Group,
        successor: NodeId,
        addr: &str,
        deadline: tokio::time::Instant,
        matched: impl Fn(&super::lease::Metrics, NodeId) -> u64,
    ) -> Result<NodeId, ProposeError> {
        let group = target.id;
        let poll = Duration::from_millis(HAND_OVER_POLL_MS);
        // The entries proposed before the mark reach the successor, so it has the longest log.
        let caught_up_by = tokio::time::Instant::now() + Duration::from_millis(CATCH_UP_WAIT_MS);
        loop {
            let m = target.raft.metrics().borrow().clone();
            let last = m.last_log_index.unwrap_or(0);
            if matched(&m, successor) >= last || tokio::time::Instant::now() >= caught_up_by.min(deadline) {
                break;
            }
            tokio::time::sleep(poll).await;
        }
        // Until their lease runs out, followers refuse every vote.
        tokio::time::sleep(Duration::from_millis(self.config.election_timeout_max + HAND_OVER_POLL_MS)).await;
        while tokio::time::Instant::now() < deadline {
            let request = NodeRequest::Campaign { group };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Err(e) = self.client.call(addr, request, remaining).await {
                tracing::debug!(%group, successor, error = %e, "the successor did not take the campaign request");
            }
            let waited_until = (tokio::time::Instant::now() + Duration::from_millis(CAMPAIGN_WAIT_MS)).min(deadline);
            while tokio::time::Instant::now() < waited_until {
                let leader = target.raft.metrics().borrow().current_leader;
                if let Some(leader) = leader.filter(|l| *l != self.id) {
                    return Ok(leader);
                }
                tokio::time::sleep(poll).await;
            }
        }
        let leader = target.raft.metrics().borrow().current_leader;
        Err(ProposeError::not_leader(group, leader, None))
    }

    /// Hands over every group this node leads that has another voter, all at once: what a node
    /// does before it stops, so that its groups have leaders when it is gone.
    pub async fn hand_over_all(&self, timeout: Duration) {
        let led: Vec<GroupId> = self
            .group_ids()
            .into_iter()
            .filter(|id| {
                self.group(*id).is_some_and(|g| {
                    let m = g.raft.metrics().borrow().clone();
                    let alone = m.membership_config.membership().voter_ids().all(|v| v == self.id);
                    m.current_leader == Some(self.id) && !alone
                })
            })
            .collect();
        let handovers = led.iter().map(|group| self.hand_over(*group, None, timeout));
        let results = futures_util::future::join_all(handovers).await;
        let handed = results.iter().filter(|r| r.is_ok()).count();
        tracing::info!(node = self.id, led = led.len(), handed, "leadership handed over before stopping");
    }
}
