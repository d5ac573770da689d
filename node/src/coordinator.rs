//! Cluster-wide operations a node carries out: creating a cluster, and — on the meta group's
//! leader — moving replicas until the layout is balanced.
//!
//! A move is: make the shard's membership the planned replica set (the shard's leader adds the
//! new node as a learner, waits for it to catch up by log or snapshot, then changes the voters),
//! record it in the layout, then tell the node that left to drop its copy. Every step is safe to
//! repeat, so a move interrupted by a crash is planned and carried out again. Bookings go on
//! throughout: Raft changes membership through joint consensus.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft_store::{Answer, Command, GroupId, Layout, NodeId, NodeStatus, Outcome, Query, Refusal};

use crate::host::{Node, ProposeError};
use crate::router::{call_leader, CallError};
use crate::wire::{NodeReply, NodeRequest, TransportError, WireError};

/// How often the meta leader looks for a replica to move.
const REBALANCE_TICK_MS: u64 = 1_000;
/// Rebalance ticks between two leadership moves: each costs the group an election.
const LEADER_BALANCE_TICKS: u64 = 10;
/// Longest a membership change may take, catching a new replica up included.
const MEMBERSHIP_CHANGE_TIMEOUT_MS: u64 = 120_000;
/// Longest cluster initialization may wait for the meta group's first leader.
const INIT_TIMEOUT_MS: u64 = 60_000;
const CALL_TIMEOUT_MS: u64 = 10_000;

/// Why a cluster operation failed. Each variant shows the message of the [`WireError`] it becomes
/// when the operation was asked for by another process (`InitCluster`).
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The layout asked for is not one a cluster can have; raft-store says why in words.
    #[error("refused: {0}")]
    InvalidLayout(String),
    /// This node's own part failed.
    #[error("{0}")]
    Local(#[from] ProposeError),
    /// Another node refused; its error is passed on as it is.
    #[error("{source}")]
    Peer {
        node: NodeId,
        #[source]
        source: WireError,
    },
    #[error("refused: node {node} cannot join: {source}")]
    JoinRefused {
        node: NodeId,
        #[source]
        source: WireError,
    },
    #[error("{source}")]
    Unreachable {
        node: NodeId,
        #[source]
        source: TransportError,
    },
    /// The node that was to initialize a group could not be reached.
    #[error("node {node}: {source}")]
    InitGroupUnreachable {
        node: NodeId,
        #[source]
        source: TransportError,
    },
    #[error("node {node} answered {reply:?}")]
    Answered { node: NodeId, reply: Box<NodeReply> },
    #[error("unexpected reply {0:?}")]
    UnexpectedReply(Box<NodeReply>),
    /// A group's leader could not be called.
    #[error("{0}")]
    Call(#[from] CallError),
    /// The meta group refused the initial layout.
    #[error("refused: {0:?}")]
    LayoutRefused(Refusal),
    /// The meta group refused a change of the layout; the state machine says why.
    #[error("refused: {detail}")]
    MetaRefused { detail: String },
    #[error("unexpected outcome {0:?}")]
    UnexpectedOutcome(Box<Outcome>),
    #[error("empty shard")]
    EmptyShard(u32),
}

impl From<CoordinatorError> for WireError {
    fn from(e: CoordinatorError) -> WireError {
        match e {
            CoordinatorError::Local(e) => e.into(),
            CoordinatorError::Peer { source, .. } | CoordinatorError::Call(CallError::Refused(source)) => source,
            CoordinatorError::InvalidLayout(detail) | CoordinatorError::MetaRefused { detail } => {
                WireError::Invalid(detail)
            }
            CoordinatorError::JoinRefused { node, source } => {
                WireError::Invalid(format!("node {node} cannot join: {source}"))
            }
            CoordinatorError::LayoutRefused(refusal) => WireError::Invalid(format!("{refusal:?}")),
            other => WireError::Fatal(other.to_string()),
        }
    }
}

fn addrs(layout: &Layout, ids: impl IntoIterator<Item = NodeId>) -> BTreeMap<NodeId, String> {
    ids.into_iter().filter_map(|id| layout.addr(id).map(|a| (id, a.to_owned()))).collect()
}

/// Creates a cluster of `nodes`: every node joins, the meta group starts on its voters and
/// records the layout, then each shard starts on its replicas. Safe to repeat.
pub async fn init_cluster(
    node: &Arc<Node>,
    nodes: Vec<(NodeId, String)>,
    shard_count: u32,
    replication: u32,
) -> Result<Layout, CoordinatorError> {
    let layout = Layout::initial(shard_count, replication, &nodes).map_err(CoordinatorError::InvalidLayout)?;
    for (id, addr) in &nodes {
        join_node(node, *id, addr, shard_count).await?;
    }
    let (voters, _) = layout.meta_members();
    let meta_members = addrs(&layout, voters.iter().copied());
    let candidates: Vec<(NodeId, String)> = meta_members.clone().into_iter().collect();
    init_group_on(node, GroupId::META, &candidates[0], meta_members).await?;
    let command = Command::InitLayout { shard_count, replication, nodes: nodes.clone() };
    let layout = record_layout(node, &candidates, command).await?;
    for (shard, replicas) in layout.placement.iter().enumerate() {
        let members = addrs(&layout, replicas.iter().copied());
        // The placement's first replica rotates over the nodes; the node that initializes a group
        // becomes its first leader, so this spreads the leaders and with them the writes.
        let first = replicas
            .first()
            .and_then(|id| members.get(id).map(|a| (*id, a.clone())))
            .ok_or(CoordinatorError::EmptyShard(shard as u32))?;
        init_group_on(node, GroupId::shard(shard as u32), &first, members).await?;
    }
    tracing::info!(nodes = nodes.len(), shard_count, replication, "cluster initialized");
    Ok(layout)
}

/// Has node `id` (this one or another) join a cluster of `shard_count` shards.
async fn join_node(node: &Arc<Node>, id: NodeId, addr: &str, shard_count: u32) -> Result<(), CoordinatorError> {
    if id == node.id() {
        return Ok(node.join(shard_count).await?);
    }
    let timeout = Duration::from_millis(CALL_TIMEOUT_MS);
    match node.client().call(addr, NodeRequest::Join { shard_count }, timeout).await {
        Ok(NodeReply::Done) => Ok(()),
        Ok(NodeReply::Error(source)) => Err(CoordinatorError::JoinRefused { node: id, source }),
        Ok(other) => Err(CoordinatorError::Answered { node: id, reply: Box::new(other) }),
        Err(source) => Err(CoordinatorError::Unreachable { node: id, source }),
    }
}

/// Proposes the initial layout to the meta group's leader, wherever it was elected.
async fn record_layout(
    node: &Arc<Node>,
    candidates: &[(NodeId, String)],
    command: Command,
) -> Result<Layout, CoordinatorError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(INIT_TIMEOUT_MS);
    let proposal = raft_store::Proposal::internal(command);
    let request =
        move || NodeRequest::Propose { group: GroupId::META, proposal: proposal.clone(), quick_refusal: false };
    let noop = |_: NodeId, _: Option<String>| {};
    let timeout = Duration::from_millis(CALL_TIMEOUT_MS);
    let (_, reply) =
        call_leader(node.client().as_ref(), GroupId::META, candidates, &request, timeout, deadline, &noop).await?;
    match reply {
        NodeReply::Outcome(Outcome::Layout(layout)) => Ok(*layout),
        NodeReply::Outcome(Outcome::Refused(r)) => Err(CoordinatorError::LayoutRefused(r)),
        other => Err(CoordinatorError::UnexpectedReply(Box::new(other))),
    }
}

/// Opens the group on every member, then makes `first` initialize it (and so lead it first).
async fn init_group_on(
    node: &Arc<Node>,
    group: GroupId,
    (id, addr): &(NodeId, String),
    members: BTreeMap<NodeId, String>,
) -> Result<(), CoordinatorError> {
    for (member, member_addr) in members.iter().filter(|(m, _)| *m != id) {
        open_group_at(node, group, *member, member_addr).await?;
    }
    if *id == node.id() {
        return Ok(node.init_group(group, members).await?);
    }
    let request = NodeRequest::InitGroup { group, members };
    match node.client().call(addr, request, Duration::from_millis(CALL_TIMEOUT_MS)).await {
        Ok(NodeReply::Done) => Ok(()),
        Ok(NodeReply::Error(source)) => Err(CoordinatorError::Peer { node: *id, source }),
        Ok(other) => Err(CoordinatorError::UnexpectedReply(Box::new(other))),
        Err(source) => Err(CoordinatorError::InitGroupUnreachable { node: *id, source }),
    }
}

/// Has `member` (this node or another) start an empty copy of `group`.
async fn open_group_at(node: &Arc<Node>, group: GroupId, member: NodeId, addr: &str) -> Result<(), CoordinatorError> {
    if member == node.id() {
        node.ensure_group(group).await?;
        return Ok(());
    }
    let request = NodeRequest::OpenGroup { group };
    match node.client().call(addr, request, Duration::from_millis(CALL_TIMEOUT_MS)).await {
        Ok(NodeReply::Done) => Ok(()),
        Ok(NodeReply::Error(source)) => Err(CoordinatorError::Peer { node: member, source }),
        Ok(other) => Err(CoordinatorError::Answered { node: member, reply: Box::new(other) }),
        Err(source) => Err(CoordinatorError::Unreachable { node: member, source }),
    }
}

/// Runs on every node; acts while this node leads the meta group.
pub async fn rebalance_duty(node: std::sync::Weak<Node>) {
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(REBALANCE_TICK_MS)).await;
        tick += 1;
        let Some(node) = node.upgrade() else { return };
        let leads_meta =
            node.group(GroupId::META).is_some_and(|g| g.raft.metrics().borrow().current_leader == Some(node.id()));
        if !leads_meta {
            continue;
        }
        match rebalance_once(&node).await {
            Ok(true) if tick.is_multiple_of(LEADER_BALANCE_TICKS) => {
                if let Err(e) = balance_leaders(&node).await {
                    tracing::debug!(error = %e, "leadership balancing skipped");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rebalance step failed; will retry"),
        }
    }
}

/// One step: fix the meta group's membership, or carry out one replica move, or forget one
/// drained node. `Ok(true)` when there was nothing to do: the placement is settled.
pub async fn rebalance_once(node: &Arc<Node>) -> Result<bool, CoordinatorError> {
    let layout = match node.read(GroupId::META, &Query::Layout, true).await? {
        Answer::Layout(Some(layout)) => *layout,
        _ => return Ok(false),
    };
    let meta = node.group(GroupId::META).ok_or(ProposeError::UnknownGroup(GroupId::META))?;
    let (voters, learners) = layout.meta_members();
    let membership = meta.raft.metrics().borrow().membership_config.membership().clone();
    let current_voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    let current_learners: std::collections::BTreeSet<NodeId> = membership.learner_ids().collect();
    if current_voters != voters || current_learners != learners {
        tracing::info!(?voters, ?learners, "changing the meta group's members");
        let leaving: Vec<NodeId> = current_voters
            .union(&current_learners)
            .filter(|id| !voters.contains(id) && !learners.contains(id))
            .copied()
            .collect();
        node.ensure_members(GroupId::META, addrs(&layout, voters), addrs(&layout, learners)).await?;
        for id in leaving {
            drop_copy(node, &layout, GroupId::META, id).await;
        }
        return Ok(false);
    }
    if let Some(step) = layout.next_move() {
        return carry_out(node, &layout, step).await.map(|()| false);
    }
    let drained = layout
        .nodes
        .values()
        .find(|n| n.status == NodeStatus::Draining && !layout.placement.iter().any(|r| r.contains(&n.id)));
    if let Some(gone) = drained {
        tracing::info!(node = gone.id, "node drained; forgetting it");
        propose_meta(node, Command::ForgetNode { id: gone.id }).await?;
        return Ok(false);
    }
    Ok(true)
}

/// Spreads leadership: when one node leads at least two groups more than another that holds a
/// replica of one of them, that other node stands for election in it. openraft 0.9 has no
/// leadership transfer; an election won by an up-to-date replica does the same, at the cost of
/// a moment without a leader.
pub async fn balance_leaders(node: &Arc<Node>) -> Result<(), CoordinatorError> {
    let Some(layout) = node.local_layout() else { return Ok(()) };
    let timeout = Duration::from_millis(CALL_TIMEOUT_MS);
    let mut leading: BTreeMap<NodeId, Vec<GroupId>> = layout.active().map(|n| (n.id, Vec::new())).collect();
    for n in layout.active() {
        let reply = if n.id == node.id() {
            Ok(NodeReply::Routing(crate::wire::RoutingReply { leaders: node.leader_hints(), ..Default::default() }))
        } else {
            node.client().call(&n.addr, NodeRequest::Routing, timeout).await
        };
        // A node that does not answer is not balanced now; try again later.
        let Ok(NodeReply::Routing(routing)) = reply else { return Ok(()) };
        for hint in routing.leaders.iter().filter(|h| h.confirmed && h.leader == Some(n.id)) {
            leading.entry(n.id).or_default().push(hint.group);
        }
    }
    let Some((&busiest, groups)) = leading.iter().max_by_key(|(id, g)| (g.len(), **id)) else { return Ok(()) };
    let (&idlest, idle) = leading.iter().min_by_key(|(id, g)| (g.len(), **id)).ok_or(ProposeError::NotJoined)?;
    if groups.len() < idle.len() + 2 {
        return Ok(());
    }
    let replicas_of = |g: GroupId| -> Vec<NodeId> {
        match g.as_shard() {
            Some(s) => layout.placement.get(s as usize).cloned().unwrap_or_default(),
            None => layout.meta_members().0.into_iter().collect(),
        }
    };
    let Some(&group) = groups.iter().find(|g| replicas_of(**g).contains(&idlest)) else { return Ok(()) };
    let addr = layout.addr(idlest).ok_or(ProposeError::NotJoined)?.to_owned();
    tracing::info!(%group, from = busiest, to = idlest, "moving leadership");
    match node.client().call(&addr, NodeRequest::Campaign { group }, timeout).await {
        Ok(NodeReply::Done) => Ok(()),
        Ok(NodeReply::Error(source)) => Err(CoordinatorError::Peer { node: idlest, source }),
        Ok(other) => Err(CoordinatorError::Answered { node: idlest, reply: Box::new(other) }),
        Err(source) => Err(CoordinatorError::Unreachable { node: idlest, source }),
    }
}

async fn carry_out(node: &Arc<Node>, layout: &Layout, step: raft_store::Move) -> Result<(), CoordinatorError> {
    let group = GroupId::shard(step.shard);
    tracing::info!(%group, replicas = ?step.replicas, leaving = ?step.leaving, "moving replicas");
    let voters = addrs(layout, step.replicas.iter().copied());
    let current = &layout.placement[step.shard as usize];
    let candidates: Vec<(NodeId, String)> =
        addrs(layout, current.iter().chain(&step.replicas).copied()).into_iter().collect();
    let request = move || NodeRequest::EnsureMembers { group, voters: voters.clone(), learners: BTreeMap::new() };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(MEMBERSHIP_CHANGE_TIMEOUT_MS);
    let noop = |_: NodeId, _: Option<String>| {};
    let timeout = Duration::from_millis(MEMBERSHIP_CHANGE_TIMEOUT_MS);
    call_leader(node.client().as_ref(), group, &candidates, &request, timeout, deadline, &noop).await?;
    propose_meta(node, Command::SetPlacement { shard: step.shard, replicas: step.replicas.clone() }).await?;
    if let Some(leaving) = step.leaving {
        drop_copy(node, layout, group, leaving).await;
    }
    Ok(())
}

/// Tells a node that left a group to stop it and delete its copy. Best effort: a copy that is no
/// longer a member stays inert until its node is back to drop it.
async fn drop_copy(node: &Arc<Node>, layout: &Layout, group: GroupId, leaving: NodeId) {
    let dropped = if leaving == node.id() {
        node.drop_group(group).await.map_err(CoordinatorError::from)
    } else {
        let Some(addr) = layout.addr(leaving) else { return };
        let reply =
            node.client().call(addr, NodeRequest::DropGroup { group }, Duration::from_millis(CALL_TIMEOUT_MS)).await;
        match reply {
            Ok(NodeReply::Done) => Ok(()),
            Ok(NodeReply::Error(source)) => Err(CoordinatorError::Peer { node: leaving, source }),
            Ok(other) => Err(CoordinatorError::Answered { node: leaving, reply: Box::new(other) }),
            Err(source) => Err(CoordinatorError::Unreachable { node: leaving, source }),
        }
    };
    if let Err(e) = dropped {
        tracing::warn!(%group, node = leaving, error = %e, "could not drop the moved replica");
    }
}

async fn propose_meta(node: &Arc<Node>, command: Command) -> Result<(), CoordinatorError> {
    match node.propose(GroupId::META, raft_store::Proposal::internal(command), false).await? {
        Outcome::Layout(_) => Ok(()),
        Outcome::Refused(Refusal::Invalid { detail } | Refusal::Conflict { detail }) => {
            Err(CoordinatorError::MetaRefused { detail })
        }
        other => Err(CoordinatorError::UnexpectedOutcome(Box::new(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coordinator_error_reads_the_same_after_it_crosses_the_wire() {
        let samples = vec![
            CoordinatorError::InvalidLayout("the replication factor is 1 to 5".into()),
            CoordinatorError::Local(ProposeError::NotJoined),
            CoordinatorError::Peer { node: 2, source: WireError::UnknownGroup(GroupId::META) },
            CoordinatorError::JoinRefused { node: 2, source: WireError::Invalid("no".into()) },
            CoordinatorError::Unreachable { node: 2, source: TransportError::Timeout("10.0.0.2:7000".into()) },
            CoordinatorError::InitGroupUnreachable { node: 2, source: TransportError::Timeout("10.0.0.2:7000".into()) },
            CoordinatorError::Answered { node: 2, reply: Box::new(NodeReply::Done) },
            CoordinatorError::Call(CallError::Timeout(GroupId::META)),
            CoordinatorError::Call(CallError::Refused(WireError::Fatal("gone".into()))),
            CoordinatorError::MetaRefused { detail: "unknown node".into() },
            CoordinatorError::EmptyShard(3),
        ];
        for e in samples {
            let text = e.to_string();
            assert_eq!(WireError::from(e).to_string(), text);
        }
    }
}
