//! The cluster's layout, kept in the meta group: its nodes, the shard count and replication
//! factor, and which nodes hold each shard's replicas. Also the pure planner that moves replicas
//! until they are balanced over the active nodes.
//!
//! The layout records what the Raft groups' memberships are meant to be; the memberships
//! themselves are the truth for consensus. Every move is made idempotent by its executor (it
//! ensures a membership, then records it), so an interrupted move is simply planned again.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// Voters of the meta group at most; further active nodes follow it as learners.
pub const META_VOTERS_MAX: usize = 5;
pub const REPLICATION_MAX: u32 = 7;
pub const SHARDS_MAX: u32 = 1_024;
pub const NODES_MAX: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Holds replicas and receives new ones.
    Active,
    /// Being emptied: its replicas move elsewhere, then it is removed.
    Draining,
    /// Gone; its id is never reused.
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    /// Where other nodes and api instances reach it.
    pub addr: String,
    pub status: NodeStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub shard_count: u32,
    pub replication: u32,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// Replicas of each shard, by shard number.
    pub placement: Vec<Vec<NodeId>>,
    /// Bumped by every change, so readers can tell a newer layout.
    pub version: u64,
}

/// One step of rebalancing: give `shard` the replica set `replicas` (one replica added, removed,
/// or moved per step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub shard: u32,
    pub replicas: Vec<NodeId>,
    /// The node that leaves the shard, if any: it drops its copy once the move is recorded.
    pub leaving: Option<NodeId>,
}

impl Layout {
    /// The layout of a new cluster: replicas spread round-robin over the nodes.
    pub fn initial(shard_count: u32, replication: u32, nodes: &[(NodeId, String)]) -> Result<Layout, String> {
        if shard_count == 0 || shard_count > SHARDS_MAX {
            return Err(format!("a cluster has 1 to {SHARDS_MAX} shards"));
        }
        if replication == 0 || replication > REPLICATION_MAX {
            return Err(format!("the replication factor is 1 to {REPLICATION_MAX}"));
        }
        if nodes.is_empty() || nodes.len() > NODES_MAX {
            return Err(format!("a cluster has 1 to {NODES_MAX} nodes"));
        }
        let mut records = BTreeMap::new();
        for (id, addr) in nodes {
            if addr.is_empty() {
                return Err(format!("node {id} has no address"));
            }
            let record = NodeRecord { id: *id, addr: addr.clone(), status: NodeStatus::Active };
            if records.insert(*id, record).is_some() {
                return Err(format!("node {id} is listed twice"));
            }
        }
        let ids: Vec<NodeId> = records.keys().copied().collect();
        let per_shard = (replication as usize).min(ids.len());
        let placement =
            (0..shard_count as usize).map(|s| (0..per_shard).map(|k| ids[(s + k) % ids.len()]).collect()).collect();
        Ok(Layout { shard_count, replication, nodes: records, placement, version: 1 })
    }

    pub fn active(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values().filter(|n| n.status == NodeStatus::Active)
    }

    pub fn addr(&self, id: NodeId) -> Option<&str> {
        self.nodes.get(&id).map(|n| n.addr.as_str())
    }

    /// Replicas each node holds.
    pub fn load(&self) -> BTreeMap<NodeId, usize> {
        let mut load: BTreeMap<NodeId, usize> = self.active().map(|n| (n.id, 0)).collect();
        for replicas in &self.placement {
            for id in replicas {
                *load.entry(*id).or_insert(0) += 1;
            }
        }
        load
    }

    /// The meta group's intended voters (the first active nodes by id) and learners (the rest).
    pub fn meta_members(&self) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let active: Vec<NodeId> = self.active().map(|n| n.id).collect();
        let voters = active.iter().take(META_VOTERS_MAX).copied().collect();
        let learners = active.iter().skip(META_VOTERS_MAX).copied().collect();
        (voters, learners)
    }

    /// The next replica move towards a balanced layout, or `None` when balanced. Priorities:
    /// replicas on nodes that are not active leave first; then under- or over-replicated shards;
    /// then the busiest node gives a replica to the idlest while they differ by more than one.
    pub fn next_move(&self) -> Option<Move> {
        let load = self.load();
        let active: BTreeSet<NodeId> = self.active().map(|n| n.id).collect();
        if active.is_empty() {
            return None;
        }
        let want = (self.replication as usize).min(active.len());
        // The idlest active node not yet holding `replicas`.
        let idlest = |replicas: &[NodeId]| {
            active
                .iter()
                .filter(|id| !replicas.contains(id))
                .min_by_key(|id| (load.get(id).copied().unwrap_or(0), **id))
                .copied()
        };
        for (shard, replicas) in self.placement.iter().enumerate() {
            let shard = shard as u32;
            if let Some(&gone) = replicas.iter().find(|id| !active.contains(id)) {
                let mut next: Vec<NodeId> = replicas.iter().copied().filter(|id| *id != gone).collect();
                if next.len() < want {
                    if let Some(add) = idlest(replicas) {
                        next.push(add);
                    }
                }
                if next.is_empty() {
                    continue; // Nowhere to go: keep the replica rather than lose the shard.
                }
                return Some(Move { shard, replicas: next, leaving: Some(gone) });
            }
            if replicas.len() < want {
                let add = idlest(replicas)?;
                let mut next = replicas.clone();
                next.push(add);
                return Some(Move { shard, replicas: next, leaving: None });
            }
            if replicas.len() > want {
                let remove = *replicas.iter().max_by_key(|id| (load.get(id).copied().unwrap_or(0), **id))?;
                let next = replicas.iter().copied().filter(|id| *id != remove).collect();
                return Some(Move { shard, replicas: next, leaving: Some(remove) });
            }
        }
        let (&busiest, &most) = load.iter().filter(|(id, _)| active.contains(id)).max_by_key(|(id, n)| (**n, **id))?;
        let (&idle, &least) = load.iter().filter(|(id, _)| active.contains(id)).min_by_key(|(id, n)| (**n, **id))?;
        if most <= least + 1 {
            return None;
        }
        let shard = self.placement.iter().position(|r| r.contains(&busiest) && !r.contains(&idle))?;
        let replicas = self.placement[shard].iter().map(|id| if *id == busiest { idle } else { *id }).collect();
        Some(Move { shard: shard as u32, replicas, leaving: Some(busiest) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u64) -> Vec<(NodeId, String)> {
        (1..=n).map(|i| (i, format!("127.0.0.1:70{i:02}"))).collect()
    }

    /// Applies moves until the planner is done, checking each step changes one replica.
    fn settle(layout: &mut Layout) -> usize {
        let mut steps = 0;
        while let Some(m) = layout.next_move() {
            let before: BTreeSet<_> = layout.placement[m.shard as usize].iter().copied().collect();
            let after: BTreeSet<_> = m.replicas.iter().copied().collect();
            assert!(before.symmetric_difference(&after).count() <= 2, "one replica per step: {before:?} → {after:?}");
            layout.placement[m.shard as usize] = m.replicas;
            steps += 1;
            assert!(steps < 1_000, "the planner converges");
        }
        steps
    }

    fn assert_balanced(layout: &Layout) {
        let want = (layout.replication as usize).min(layout.active().count());
        for replicas in &layout.placement {
            assert_eq!(replicas.len(), want);
            assert!(replicas.iter().all(|id| layout.nodes[id].status == NodeStatus::Active));
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), replicas.len(), "no node twice");
        }
        let load = layout.load();
        let (min, max) = (load.values().min().unwrap(), load.values().max().unwrap());
        assert!(max - min <= 1, "balanced: {load:?}");
    }

    #[test]
    fn initial_layout_spreads_replicas_round_robin() {
        let layout = Layout::initial(8, 3, &nodes(3)).unwrap();
        assert!(layout.placement.iter().all(|r| r.len() == 3));
        assert_eq!(layout.next_move(), None);
        let small = Layout::initial(4, 3, &nodes(1)).unwrap();
        assert!(small.placement.iter().all(|r| r == &vec![1]), "replication capped by nodes");
        assert!(Layout::initial(0, 3, &nodes(3)).is_err());
        assert!(Layout::initial(8, 3, &[(1, "a".into()), (1, "b".into())]).is_err());
    }

    #[test]
    fn a_new_node_receives_replicas_until_balanced() {
        let mut layout = Layout::initial(8, 3, &nodes(3)).unwrap();
        layout.nodes.insert(4, NodeRecord { id: 4, addr: "x".into(), status: NodeStatus::Active });
        let steps = settle(&mut layout);
        assert!(steps >= 5, "node 4 takes its share ({steps} moves)");
        assert_balanced(&layout);
        assert_eq!(layout.load()[&4], 6);
    }

    #[test]
    fn a_draining_node_is_emptied_without_losing_replication() {
        let mut layout = Layout::initial(8, 3, &nodes(4)).unwrap();
        settle(&mut layout);
        layout.nodes.get_mut(&2).unwrap().status = NodeStatus::Draining;
        settle(&mut layout);
        assert!(layout.placement.iter().all(|r| !r.contains(&2)));
        assert_balanced(&layout);
    }

    #[test]
    fn growing_from_one_node_raises_replication_to_the_factor() {
        let mut layout = Layout::initial(4, 3, &nodes(1)).unwrap();
        for id in 2..=3 {
            layout.nodes.insert(id, NodeRecord { id, addr: "x".into(), status: NodeStatus::Active });
        }
        settle(&mut layout);
        assert_balanced(&layout);
        assert!(layout.placement.iter().all(|r| r.len() == 3));
    }

    #[test]
    fn meta_group_has_at_most_five_voters() {
        let layout = Layout::initial(2, 3, &nodes(7)).unwrap();
        let (voters, learners) = layout.meta_members();
        assert_eq!(voters, (1..=5).collect());
        assert_eq!(learners, [6, 7].into());
    }
}
