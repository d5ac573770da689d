//! The meta group's state: catalog data that spans shards (venues) and the cluster's layout
//! (nodes, shard placement).

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use super::ctx::Ctx;
use crate::command::{Answer, Command, Outcome, Query, Refusal};
use crate::ids::NodeId;
use crate::ids::VenueId;
use crate::layout::{Layout, NodeRecord, NodeStatus, NODES_MAX};
use crate::model::Venue;

/// Persistent and shared like a shard's state (see `shard/state.rs`): a snapshot's copy is O(1).
/// Venues and the layout are replaced whole, never changed in place.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaState {
    #[serde(deserialize_with = "crate::cautious::ord_map")]
    venues: OrdMap<VenueId, Arc<Venue>>,
    layout: Option<Arc<Layout>>,
}

fn invalid(detail: impl Into<String>) -> Outcome {
    Outcome::Refused(Refusal::Invalid { detail: detail.into() })
}

fn conflict(detail: impl Into<String>) -> Outcome {
    Outcome::Refused(Refusal::Conflict { detail: detail.into() })
}

impl MetaState {
    pub(crate) fn apply(&mut self, _ctx: Ctx, command: &Command) -> Outcome {
        match command {
            Command::CreateVenue(venue) => self.create_venue(venue),
            Command::InitLayout { shard_count, replication, nodes } => {
                self.init_layout(*shard_count, *replication, nodes)
            }
            Command::AddNode { id, addr } => self.change_layout(|l| add_node(l, *id, addr)),
            Command::DrainNode { id } => self.change_layout(|l| drain_node(l, *id)),
            Command::SetPlacement { shard, replicas } => self.change_layout(|l| set_placement(l, *shard, replicas)),
            Command::ForgetNode { id } => self.change_layout(|l| forget_node(l, *id)),
            Command::Expire => Outcome::Done,
            _ => Outcome::Refused(Refusal::WrongGroup),
        }
    }

    fn create_venue(&mut self, venue: &Venue) -> Outcome {
        if let Err(detail) = venue.validate() {
            return Outcome::Refused(Refusal::Invalid { detail });
        }
        if self.venues.contains_key(&venue.venue_id) {
            return Outcome::Refused(Refusal::Conflict { detail: format!("venue {} exists", venue.venue_id) });
        }
        self.venues.insert(venue.venue_id.clone(), Arc::new(venue.clone()));
        Outcome::Venue(venue.clone())
    }

    fn init_layout(&mut self, shard_count: u32, replication: u32, nodes: &[(NodeId, String)]) -> Outcome {
        let layout = match Layout::initial(shard_count, replication, nodes) {
            Ok(layout) => layout,
            Err(detail) => return invalid(detail),
        };
        match &self.layout {
            None => {
                self.layout = Some(Arc::new(layout.clone()));
                Outcome::Layout(Box::new(layout))
            }
            Some(existing) => {
                let same = existing.shard_count == shard_count
                    && existing.replication == replication
                    && nodes.iter().all(|(id, _)| existing.nodes.contains_key(id));
                if same {
                    Outcome::Layout(Box::new(Layout::clone(existing)))
                } else {
                    conflict("the cluster is already initialized with another layout")
                }
            }
        }
    }

    /// Applies `change` to the layout; a change that returns `Err` refuses the command and
    /// changes nothing. Every accepted change bumps the version.
    fn change_layout(&mut self, change: impl FnOnce(&mut Layout) -> Result<bool, Outcome>) -> Outcome {
        let Some(layout) = &self.layout else { return invalid("the cluster is not initialized") };
        let mut next = Layout::clone(layout);
        match change(&mut next) {
            Err(refused) => refused,
            Ok(changed) => {
                if changed {
                    next.version += 1;
                    self.layout = Some(Arc::new(next.clone()));
                }
                Outcome::Layout(Box::new(next))
            }
        }
    }

    /// A restored meta group keeps its catalog and takes the new cluster's layout.
    pub(crate) fn rebase(&mut self, layout: Option<Layout>) {
        self.layout = layout.map(Arc::new);
    }

    pub(crate) fn query(&self, query: &Query) -> Answer {
        match query {
            Query::Venue(id) => Answer::Venue(self.venues.get(id).map(|v| Venue::clone(v))),
            Query::Layout => Answer::Layout(self.layout.as_ref().map(|l| Box::new(Layout::clone(l)))),
            _ => Answer::WrongGroup,
        }
    }
}

/// `Ok(true)` when the layout changed, `Ok(false)` when it already was so.
fn add_node(layout: &mut Layout, id: NodeId, addr: &str) -> Result<bool, Outcome> {
    if addr.is_empty() || addr.len() > 256 {
        return Err(invalid("a node address is 1 to 256 bytes"));
    }
    let full = layout.nodes.len() >= NODES_MAX;
    match layout.nodes.get_mut(&id) {
        Some(node) if node.status == NodeStatus::Active => {
            let changed = node.addr != addr;
            node.addr = addr.to_owned();
            Ok(changed)
        }
        Some(node) => Err(conflict(format!("node {id} is {:?}; a node id is never reused", node.status))),
        None if full => Err(invalid(format!("a cluster has at most {NODES_MAX} nodes"))),
        None => {
            layout.nodes.insert(id, NodeRecord { id, addr: addr.to_owned(), status: NodeStatus::Active });
            Ok(true)
        }
    }
}

fn drain_node(layout: &mut Layout, id: NodeId) -> Result<bool, Outcome> {
    let active = layout.active().count();
    let Some(node) = layout.nodes.get_mut(&id) else {
        return Err(Outcome::Refused(Refusal::not_found(format!("node {id}"))));
    };
    match node.status {
        NodeStatus::Draining => Ok(false),
        NodeStatus::Removed => Err(conflict(format!("node {id} was removed"))),
        NodeStatus::Active if active <= 1 => Err(invalid("the last active node cannot be drained")),
        NodeStatus::Active => {
            node.status = NodeStatus::Draining;
            Ok(true)
        }
    }
}

fn set_placement(layout: &mut Layout, shard: u32, replicas: &[NodeId]) -> Result<bool, Outcome> {
    if shard >= layout.shard_count {
        return Err(invalid(format!("shard {shard} does not exist")));
    }
    let distinct: std::collections::BTreeSet<_> = replicas.iter().collect();
    if replicas.is_empty() || distinct.len() != replicas.len() {
        return Err(invalid("a shard has one or more distinct replicas"));
    }
    if let Some(bad) = replicas.iter().find(|id| layout.nodes.get(id).is_none_or(|n| n.status == NodeStatus::Removed)) {
        return Err(invalid(format!("node {bad} cannot hold replicas")));
    }
    let slot = &mut layout.placement[shard as usize];
    let changed = slot.as_slice() != replicas;
    *slot = replicas.to_vec();
    Ok(changed)
}

fn forget_node(layout: &mut Layout, id: NodeId) -> Result<bool, Outcome> {
    let holds_replicas = layout.placement.iter().any(|r| r.contains(&id));
    let Some(node) = layout.nodes.get_mut(&id) else {
        return Err(Outcome::Refused(Refusal::not_found(format!("node {id}"))));
    };
    match node.status {
        NodeStatus::Removed => Ok(false),
        NodeStatus::Active => Err(invalid(format!("node {id} is active: drain it first"))),
        NodeStatus::Draining if holds_replicas => Err(invalid(format!("node {id} still holds replicas"))),
        NodeStatus::Draining => {
            node.status = NodeStatus::Removed;
            Ok(true)
        }
    }
}
