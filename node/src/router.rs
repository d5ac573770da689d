//! Routing from a stateless api instance to the cluster: which nodes hold a group, which of them
//! leads it, and calling it there with retries.
//!
//! The routing table is learned from the nodes (the layout from the meta group, leader hints from
//! each node's own Raft instances), refreshed in the background and corrected by every redirect.
//! A command is retried with the same request id after a timeout, a redirect or a failed node, so
//! a retry never applies twice: the state machine answers it with the first outcome.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use raft_store::{Answer, ChangesPage, GroupId, Layout, NodeId, Outcome, Proposal, Query};
use seams::{BoxFuture, Cluster, ClusterError, Consistency, GroupHealth, Readiness, Submit};

use crate::wire::{NodeClient, NodeReply, NodeRequest, TransportError, WireError};

/// How long a client request may take to find a leader before it is answered 503.
pub const LEADER_WAIT_MS: u64 = 10_000;
/// Timeout of one attempt at one node.
const ATTEMPT_TIMEOUT_MS: u64 = 5_000;
/// Pause before trying again when no node knows a leader (an election is under way).
const NO_LEADER_PAUSE_MS: u64 = 50;
/// How often the routing table is refreshed in the background.
const REFRESH_INTERVAL_MS: u64 = 1_000;
/// Timeout of one routing query.
const ROUTING_TIMEOUT_MS: u64 = 1_000;
/// Redirects followed for one attempt at most, so two nodes that disagree cannot loop forever.
const REDIRECTS_MAX: usize = 8;

/// Calls the leader of a group: starts from `candidates` (hinted leader first), follows redirects,
/// moves on from nodes that fail or time out, and pauses while no leader is known, until
/// `deadline`. `on_leader` hears of every leader learned. Errors other than "not the leader" and
/// transport failures are returned as they are.
pub async fn call_leader(
    client: &dyn NodeClient,
    group: GroupId,
    candidates: &[(NodeId, String)],
    request: &(dyn Fn() -> NodeRequest + Send + Sync),
    attempt_timeout: Duration,
    deadline: tokio::time::Instant,
    on_leader: &(dyn Fn(NodeId, Option<String>) + Send + Sync),
) -> Result<(NodeId, NodeReply), CallError> {
    if candidates.is_empty() {
        return Err(CallError::NoReplicas(group));
    }
    let mut next = 0usize;
    let mut target: (Option<NodeId>, String) = (Some(candidates[0].0), candidates[0].1.clone());
    let mut redirects = 0;
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(CallError::Timeout(group));
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = client.call(&target.1, request(), attempt_timeout.min(remaining)).await;
        match result {
            Ok(NodeReply::Error(WireError::NotLeader { leader: Some(leader), leader_addr, .. }))
                if redirects < REDIRECTS_MAX =>
            {
                redirects += 1;
                on_leader(leader, leader_addr.clone());
                let addr =
                    leader_addr.or_else(|| candidates.iter().find(|(id, _)| *id == leader).map(|(_, a)| a.clone()));
                match addr {
                    Some(addr) => target = (Some(leader), addr),
                    None => {
                        next = (next + 1) % candidates.len();
                        target = (Some(candidates[next].0), candidates[next].1.clone());
                    }
                }
            }
            Ok(NodeReply::Error(WireError::NotLeader { .. })) | Err(_) => {
                if let Err(e) = &result {
                    tracing::debug!(%group, addr = %target.1, error = %e, "attempt failed");
                }
                redirects = 0;
                next = (next + 1) % candidates.len();
                target = (Some(candidates[next].0), candidates[next].1.clone());
                if next == 0 {
                    tokio::time::sleep(Duration::from_millis(NO_LEADER_PAUSE_MS)).await;
                }
            }
            Ok(NodeReply::Error(WireError::UnknownGroup(_) | WireError::NotJoined)) => {
                // That node no longer (or does not yet) hold the group: try the others.
                next = (next + 1) % candidates.len();
                target = (Some(candidates[next].0), candidates[next].1.clone());
                if next == 0 {
                    return Err(CallError::Moved(group));
                }
            }
            Ok(NodeReply::Error(e)) => return Err(CallError::Refused(e)),
            Ok(reply) => {
                let node = target.0.unwrap_or_default();
                on_leader(node, Some(target.1.clone()));
                return Ok((node, reply));
            }
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("no leader of {0} answered in time")]
    Timeout(GroupId),
    #[error("no node is known to hold {0}")]
    NoReplicas(GroupId),
    #[error("{0} has moved: the routing table is stale")]
    Moved(GroupId),
    #[error(transparent)]
    Refused(WireError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl From<CallError> for ClusterError {
    fn from(e: CallError) -> ClusterError {
        match e {
            CallError::Refused(WireError::Fatal(detail) | WireError::Invalid(detail)) => ClusterError::Internal(detail),
            // A credential of the wrong role: a deployment's mistake, which no retry mends.
            CallError::Refused(forbidden @ WireError::Forbidden { .. }) => {
                ClusterError::Internal(forbidden.to_string())
            }
            other => ClusterError::Unavailable(other.to_string()),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Table {
    layout: Option<Layout>,
    /// Leader and term of each group, from the freshest hint.
    leaders: BTreeMap<GroupId, (NodeId, u64)>,
    /// Groups whose leader, in the last refresh, itself confirmed it leads with a quorum; with
    /// its applied index.
    confirmed: BTreeMap<GroupId, u64>,
}

pub struct Router {
    client: Arc<dyn NodeClient>,
    seeds: Vec<String>,
    table: RwLock<Table>,
}

impl Router {
    pub fn new(client: Arc<dyn NodeClient>, seeds: Vec<String>) -> Arc<Router> {
        Arc::new(Router { client, seeds, table: RwLock::new(Table::default()) })
    }

    fn table(&self) -> Table {
        self.table.read().map(|t| t.clone()).unwrap_or_default()
    }

    pub fn layout(&self) -> Option<Layout> {
        self.table().layout
    }

    /// Asks every known node for its routing view and merges them: the newest layout, and for
    /// each group the leader reported with the highest term.
    pub async fn refresh(&self) -> Result<(), ClusterError> {
        let table = self.table();
        let mut addrs: Vec<String> = self.seeds.clone();
        if let Some(layout) = &table.layout {
            addrs.extend(
                layout.nodes.values().filter(|n| n.status != raft_store::NodeStatus::Removed).map(|n| n.addr.clone()),
            );
        }
        addrs.sort();
        addrs.dedup();
        let timeout = Duration::from_millis(ROUTING_TIMEOUT_MS);
        let calls = addrs.iter().map(|addr| self.client.call(addr, NodeRequest::Routing, timeout));
        let replies = futures_util::future::join_all(calls).await;
        let mut next = table;
        next.confirmed.clear();
        let mut heard = false;
        let mut peers: Vec<String> = Vec::new();
        for reply in replies.into_iter().flatten() {
            let NodeReply::Routing(routing) = reply else { continue };
            heard = true;
            peers.extend(routing.peers);
            if let Some(layout) = routing.layout {
                if next.layout.as_ref().is_none_or(|l| l.version < layout.version) {
                    next.layout = Some(*layout);
                }
            }
            for hint in routing.leaders {
                if hint.confirmed {
                    next.confirmed.insert(hint.group, hint.last_applied_index);
                }
                let Some(leader) = hint.leader else { continue };
                let newer = next.leaders.get(&hint.group).is_none_or(|(_, term)| *term <= hint.term);
                if newer {
                    next.leaders.insert(hint.group, (leader, hint.term));
                }
            }
        }
        if next.layout.is_none() && !peers.is_empty() {
            // The nodes asked hold no meta replica: their peers may.
            peers.retain(|p| !addrs.contains(p));
            let calls = peers.iter().map(|addr| self.client.call(addr, NodeRequest::Routing, timeout));
            for reply in futures_util::future::join_all(calls).await.into_iter().flatten() {
                if let NodeReply::Routing(routing) = reply {
                    if let Some(layout) = routing.layout {
                        if next.layout.as_ref().is_none_or(|l| l.version < layout.version) {
                            next.layout = Some(*layout);
                        }
                    }
                }
            }
        }
        if let Ok(mut t) = self.table.write() {
            *t = next;
        }
        if heard {
            Ok(())
        } else {
            Err(ClusterError::Unavailable("no node answered a routing query".into()))
        }
    }

    /// Refreshes the table every second for as long as the router lives.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let router = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(REFRESH_INTERVAL_MS)).await;
                let Some(router) = router.upgrade() else { return };
                if let Err(e) = router.refresh().await {
                    tracing::warn!(error = %e, "routing refresh failed");
                }
            }
        });
    }

    /// Nodes to try for a group: the hinted leader first, then its replicas.
    fn candidates(&self, group: GroupId) -> Vec<(NodeId, String)> {
        let table = self.table();
        let Some(layout) = &table.layout else {
            return self.seeds.iter().map(|a| (0, a.clone())).collect();
        };
        let replicas: Vec<NodeId> = match group.as_shard() {
            None => layout.active().map(|n| n.id).collect(),
            Some(s) => layout.placement.get(s as usize).cloned().unwrap_or_default(),
        };
        let mut out: Vec<(NodeId, String)> = Vec::new();
        if let Some((leader, _)) = table.leaders.get(&group) {
            if let Some(addr) = layout.addr(*leader) {
                out.push((*leader, addr.to_owned()));
            }
        }
        for id in replicas {
            if out.iter().all(|(o, _)| *o != id) {
                if let Some(addr) = layout.addr(id) {
                    out.push((id, addr.to_owned()));
                }
            }
        }
        out
    }

    fn learn_leader(&self, group: GroupId, leader: NodeId) {
        if let Ok(mut t) = self.table.write() {
            let term = t.leaders.get(&group).map_or(0, |(_, term)| *term);
            t.leaders.insert(group, (leader, term));
        }
    }

    /// Calls the leader of `group`, refreshing the table when the group seems to have moved.
    async fn on_leader(
        &self,
        group: GroupId,
        request: &(dyn Fn() -> NodeRequest + Send + Sync),
    ) -> Result<NodeReply, ClusterError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
        loop {
            let candidates = self.candidates(group);
            let learn = |leader: NodeId, _addr: Option<String>| self.learn_leader(group, leader);
            let attempt = Duration::from_millis(ATTEMPT_TIMEOUT_MS);
            match call_leader(self.client.as_ref(), group, &candidates, request, attempt, deadline, &learn).await {
                Ok((_, reply)) => return Ok(reply),
                Err(CallError::Moved(_) | CallError::NoReplicas(_)) if tokio::time::Instant::now() < deadline => {
                    let _ = self.refresh().await;
                    tokio::time::sleep(Duration::from_millis(NO_LEADER_PAUSE_MS)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn shard_count_or_unavailable(&self) -> Result<u32, ClusterError> {
        self.layout()
            .map(|l| l.shard_count)
            .ok_or_else(|| ClusterError::Unavailable("the cluster layout is not known yet".into()))
    }
}

fn unexpected(reply: NodeReply) -> ClusterError {
    ClusterError::Internal(format!("unexpected reply {reply:?}"))
}

impl Cluster for Router {
    fn shard_count(&self) -> u32 {
        // The api asks only after start-up has learned the layout; 1 keeps the map total meanwhile.
        self.layout().map_or(1, |l| l.shard_count)
    }

    fn submit(&self, submit: Submit) -> BoxFuture<'_, Result<Outcome, ClusterError>> {
        Box::pin(async move {
            let shard_count = self.shard_count_or_unavailable()?;
            let group = submit.command.group(shard_count);
            let proposal = Proposal {
                request_id: Some(submit.request_id),
                fingerprint: submit.fingerprint,
                keyed: submit.keyed,
                command: submit.command,
            };
            // Only the first attempt may be refused without a log entry: a retry must find
            // whatever the first one did.
            let first = AtomicBool::new(!submit.keyed);
            let request = move || NodeRequest::Propose {
                group,
                proposal: proposal.clone(),
                quick_refusal: first.swap(false, Ordering::Relaxed),
            };
            match self.on_leader(group, &request).await? {
                NodeReply::Outcome(outcome) => Ok(outcome),
                other => Err(unexpected(other)),
            }
        })
    }

    fn query(
        &self,
        group: GroupId,
        query: Query,
        consistency: Consistency,
    ) -> BoxFuture<'_, Result<Answer, ClusterError>> {
        Box::pin(async move {
            // The api chose `group` from the shard count: meaningless until the layout is known.
            self.shard_count_or_unavailable()?;
            let linearizable = consistency == Consistency::Linearizable;
            let request = move || NodeRequest::Read { group, query: query.clone(), linearizable };
            let reply = if linearizable {
                self.on_leader(group, &request).await?
            } else {
                self.any_replica(group, &request).await?
            };
            match reply {
                NodeReply::Answer(answer) => Ok(answer),
                other => Err(unexpected(other)),
            }
        })
    }

    fn changes(
        &self,
        shard: u32,
        after_index: u64,
        limit: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ChangesPage, ClusterError>> {
        Box::pin(async move {
            self.shard_count_or_unavailable()?;
            let group = GroupId::shard(shard);
            let wait_ms = wait.as_millis() as u64;
            let request = move || NodeRequest::Changes { group, after_index, limit, wait_ms };
            match self.any_replica(group, &request).await? {
                NodeReply::Changes(page) => Ok(page),
                other => Err(unexpected(other)),
            }
        })
    }

    fn readiness(&self) -> BoxFuture<'_, Readiness> {
        Box::pin(async move {
            let table = self.table();
            let Some(layout) = &table.layout else { return Readiness { ready: false, groups: Vec::new() } };
            let groups: Vec<GroupHealth> = std::iter::once(GroupId::META)
                .chain((0..layout.shard_count).map(GroupId::shard))
                .map(|g| GroupHealth {
                    group: g,
                    leader: table.confirmed.get(&g).and(table.leaders.get(&g)).map(|(l, _)| *l),
                    last_applied_index: table.confirmed.get(&g).copied().unwrap_or(0),
                })
                .collect();
            Readiness { ready: groups.iter().all(|g| g.leader.is_some()), groups }
        })
    }
}

impl Router {
    /// Any replica that answers: the leader first (freshest), then the others.
    async fn any_replica(
        &self,
        group: GroupId,
        request: &(dyn Fn() -> NodeRequest + Send + Sync),
    ) -> Result<NodeReply, ClusterError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
        let mut last = ClusterError::Unavailable(format!("no replica of {group} answered"));
        while tokio::time::Instant::now() < deadline {
            for (_, addr) in self.candidates(group) {
                let timeout = Duration::from_millis(ATTEMPT_TIMEOUT_MS).max(request_wait(&request()));
                match self.client.call(&addr, request(), timeout).await {
                    Ok(NodeReply::Error(e)) => last = ClusterError::Unavailable(e.to_string()),
                    Ok(reply) => return Ok(reply),
                    Err(e) => last = ClusterError::Unavailable(e.to_string()),
                }
            }
            let _ = self.refresh().await;
            tokio::time::sleep(Duration::from_millis(NO_LEADER_PAUSE_MS)).await;
        }
        Err(last)
    }
}

/// A long-poll's own wait, plus room for the reply.
fn request_wait(request: &NodeRequest) -> Duration {
    match request {
        NodeRequest::Changes { wait_ms, .. } => Duration::from_millis(wait_ms + ATTEMPT_TIMEOUT_MS),
        _ => Duration::ZERO,
    }
}
