//! What a node reports about the groups it hosts: leader hints for routing, status for the
//! operator, health for readiness, and gauges.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ServerState;
use raft_store::NodeId;

use super::lease::{leads, Metrics};
use super::{Group, Node};
use crate::version::Version;
use crate::wire::{DamagedGroup, GroupStatus, LeaderHint, NodeInfo, NodeStatusReply};

/// How often group and storage gauges are refreshed.
const TELEMETRY_TICK_MS: u64 = 2_000;

impl Node {
    /// Leader and term of every group hosted here, as this node sees them.
    pub fn leader_hints(&self) -> Vec<LeaderHint> {
        self.group_ids()
            .into_iter()
            .filter_map(|id| self.group(id))
            .map(|g| {
                let m = g.raft.metrics().borrow().clone();
                LeaderHint {
                    group: g.id,
                    leader: m.current_leader,
                    term: m.current_term,
                    confirmed: self.leads_with_quorum(&m),
                    last_applied_index: m.last_applied.map_or(0, |l| l.index),
                }
            })
            .collect()
    }

    /// Whether, by these metrics, this node leads and heard from a quorum within the time an
    /// election would take: a leader cut off from its quorum is not confirmed.
    fn leads_with_quorum(&self, m: &Metrics) -> bool {
        if !leads(m, self.id) {
            return false;
        }
        let alone = m.membership_config.membership().voter_ids().all(|v| v == self.id);
        let fresh_ms = 2 * self.config.election_timeout_max;
        alone || m.millis_since_quorum_ack.is_some_and(|ms| ms <= fresh_ms)
    }

    /// Addresses of every member of every group hosted here, this node's excepted.
    pub fn peer_addrs(&self) -> Vec<String> {
        let mut addrs = BTreeSet::new();
        for id in self.group_ids() {
            let Some(g) = self.group(id) else { continue };
            let m = g.raft.metrics().borrow().membership_config.membership().clone();
            addrs.extend(m.nodes().filter(|(id, _)| **id != self.id).map(|(_, n)| n.addr.clone()));
        }
        addrs.into_iter().collect()
    }

    pub fn status(&self) -> NodeStatusReply {
        let groups = self.group_ids().into_iter().filter_map(|id| self.group(id)).map(|g| group_status(&g)).collect();
        let damaged = self.damaged_groups().into_iter().map(|(group, error)| DamagedGroup { group, error }).collect();
        NodeStatusReply {
            node_id: self.id,
            addr: self.advertise_addr.clone(),
            shard_count: self.shard_count(),
            groups,
            damaged,
        }
    }

    /// This node's version, the formats it reads, and its disk.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.id,
            version: Version::local(),
            formats: (raft_store::FORMAT_VERSION_MIN, raft_store::FORMAT_VERSION),
            disk: self.disk.lock().ok().and_then(|d| *d),
        }
    }

    /// Leader and applied index of every group hosted here, for readiness. A group this node
    /// leads counts as led only while its quorum answers.
    pub fn health(&self) -> Vec<seams::GroupHealth> {
        self.leader_hints()
            .into_iter()
            .map(|h| {
                let leader = if h.leader == Some(self.id) && !h.confirmed { None } else { h.leader };
                seams::GroupHealth { group: h.group, leader, last_applied_index: h.last_applied_index }
            })
            .collect()
    }

    /// Refreshes the Raft and storage gauges (also called before every `/metrics` render).
    pub fn record_telemetry(&self) {
        for id in self.group_ids() {
            let Some(g) = self.group(id) else { continue };
            let m = g.raft.metrics().borrow().clone();
            let group = g.id.to_string();
            let leading = f64::from(u8::from(m.state == ServerState::Leader));
            metrics::gauge!("boxoffice_raft_is_leader", "group" => group.clone()).set(leading);
            metrics::gauge!("boxoffice_raft_term", "group" => group.clone()).set(m.current_term as f64);
            metrics::gauge!("boxoffice_raft_last_applied_index", "group" => group.clone())
                .set(m.last_applied.map_or(0, |l| l.index) as f64);
            metrics::gauge!("boxoffice_raft_last_log_index", "group" => group.clone())
                .set(m.last_log_index.unwrap_or(0) as f64);
            // The index of the group's newest snapshot on this node (0: none yet).
            metrics::gauge!("boxoffice_raft_snapshot_index", "group" => group)
                .set(m.snapshot.map_or(0, |l| l.index) as f64);
        }
        metrics::gauge!("boxoffice_damaged_groups").set(self.damaged_groups().len() as f64);
        // The log's flushes: the ones every write waits for.
        let stats = self.log_kv.flush_stats();
        metrics::counter!("boxoffice_storage_flushes_total").absolute(stats.flushes);
        metrics::counter!("boxoffice_storage_flush_requests_total").absolute(stats.requests);
    }
}

fn group_status(g: &Group) -> GroupStatus {
    let m = g.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let learners: Vec<NodeId> = membership.learner_ids().collect();
    let matched = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, log)| (*id, log.map_or(0, |l| l.index))).collect())
        .unwrap_or_default();
    GroupStatus {
        group: g.id,
        state: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index.unwrap_or(0),
        last_applied_index: m.last_applied.map_or(0, |l| l.index),
        voters,
        learners,
        matched,
    }
}

/// Refreshes the gauges every `TELEMETRY_TICK_MS` while the node lives.
pub(super) async fn telemetry_duty(node: std::sync::Weak<Node>) {
    loop {
        let Some(n) = node.upgrade() else { return };
        n.record_telemetry();
        drop(n);
        tokio::time::sleep(Duration::from_millis(TELEMETRY_TICK_MS)).await;
    }
}
