//! `boxoffice cluster …`: the operator's commands, sent to any node over the internal API.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use node::{
    call_leader, CallError, DamagedGroup, DiskUsage, NodeClient, NodeInfo, NodeReply, NodeRequest, NodeStatusReply,
    RpcNodeClient, Version,
};
use node::{TransportError, WireError};
use raft_store::{Command, GroupId, Layout, NodeId, NodeStatus, Outcome, Proposal, Refusal};
use serde::Serialize;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A replica this many entries behind its leader or fewer counts as caught up.
const HEALTHY_LAG_MAX: u64 = 1_000;
/// How often `--wait-healthy` asks again.
const HEALTH_POLL_MS: u64 = 500;
const INIT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ClusterCliError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Leader(#[from] CallError),
    #[error("the node refused: {0}")]
    Node(WireError),
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    #[error("no node reachable from {0} knows a cluster layout (not initialized?)")]
    NoLayout(String),
    #[error("the cluster refused the change: {0:?}")]
    Refused(Refusal),
    #[error("node {id} at {addr} cannot join: {source}")]
    Join { id: NodeId, addr: String, source: Box<ClusterCliError> },
    #[error("the cluster did not settle within {0:?}")]
    Unsettled(Duration),
    #[error("node {id} holds no replica of {group}")]
    NotReplica { id: NodeId, group: GroupId },
    #[error("{group} has no replica besides node {id}'s to rebuild it from: restore it from a backup")]
    NoOtherReplica { id: NodeId, group: GroupId },
    #[error("the cluster is not healthy after {waited:?}: {problems}")]
    Unhealthy { waited: Duration, problems: String },
    #[error(
        "node {id} runs version {version}, and node {other} runs {other_version}: nodes more than one minor \
         version apart cannot run in one cluster (upgrade one minor version at a time)"
    )]
    Version { id: NodeId, version: Version, other: NodeId, other_version: Version },
}

pub struct Cli {
    client: RpcNodeClient,
    /// The node the operator talks to.
    node: String,
}

fn unexpected(reply: NodeReply) -> ClusterCliError {
    match reply {
        NodeReply::Error(e) => ClusterCliError::Node(e),
        other => ClusterCliError::Unexpected(format!("{other:?}")),
    }
}

impl Cli {
    /// An operator's client of the cluster that `node` belongs to.
    pub fn new(node: &str, access: &crate::access::Access) -> Result<Cli, pki::PkiError> {
        Ok(Cli { client: RpcNodeClient::new(&access.credential, &access.secret)?, node: node.to_owned() })
    }

    pub fn client(&self) -> &RpcNodeClient {
        &self.client
    }

    /// The node the operator talks to.
    pub fn node(&self) -> &str {
        &self.node
    }

    async fn call(&self, addr: &str, request: NodeRequest, timeout: Duration) -> Result<NodeReply, ClusterCliError> {
        Ok(self.client.call(addr, request, timeout).await?)
    }

    /// The newest layout the cluster's nodes report: asked of the given node, the peers it knows
    /// and every node the layout names (a node can lag, or hold no meta replica at all).
    pub async fn layout(&self) -> Result<Layout, ClusterCliError> {
        let mut to_ask = vec![self.node.clone()];
        let mut asked = std::collections::BTreeSet::new();
        let mut newest: Option<Layout> = None;
        while let Some(addr) = to_ask.pop() {
            if !asked.insert(addr.clone()) || asked.len() > raft_store::META_VOTERS_MAX * 4 {
                continue;
            }
            let Ok(NodeReply::Routing(reply)) = self.call(&addr, NodeRequest::Routing, Duration::from_secs(3)).await
            else {
                continue;
            };
            to_ask.extend(reply.peers);
            if let Some(layout) = reply.layout {
                to_ask.extend(layout.active().map(|n| n.addr.clone()));
                if newest.as_ref().is_none_or(|n| n.version < layout.version) {
                    newest = Some(*layout);
                }
            }
        }
        newest.ok_or_else(|| ClusterCliError::NoLayout(self.node.clone()))
    }

    pub async fn init(
        &self,
        nodes: Vec<(NodeId, String)>,
        shard_count: u32,
        replication: u32,
    ) -> Result<String, ClusterCliError> {
        let request = NodeRequest::InitCluster { nodes, shard_count, replication };
        match self.call(&self.node, request, INIT_TIMEOUT).await? {
            NodeReply::Layout(Some(layout)) => Ok(format!(
                "cluster initialized: {} nodes, {} shards, replication {}",
                layout.nodes.len(),
                layout.shard_count,
                layout.replication
            )),
            other => Err(unexpected(other)),
        }
    }

    async fn propose_meta(&self, layout: &Layout, command: Command) -> Result<Layout, ClusterCliError> {
        let candidates: Vec<(NodeId, String)> = layout.active().map(|n| (n.id, n.addr.clone())).collect();
        let proposal = Proposal::internal(command);
        let request =
            move || NodeRequest::Propose { group: GroupId::META, proposal: proposal.clone(), quick_refusal: false };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let noop = |_: NodeId, _: Option<String>| {};
        let (_, reply) =
            call_leader(&self.client, GroupId::META, &candidates, &request, CALL_TIMEOUT, deadline, &noop).await?;
        match reply {
            NodeReply::Outcome(Outcome::Layout(layout)) => Ok(*layout),
            NodeReply::Outcome(Outcome::Refused(r)) => Err(ClusterCliError::Refused(r)),
            other => Err(unexpected(other)),
        }
    }

    /// Has node `id` at `addr` join a cluster of `shard_count` shards.
    pub async fn join(&self, id: NodeId, addr: &str, shard_count: u32) -> Result<(), ClusterCliError> {
        let join = |source| ClusterCliError::Join { id, addr: addr.to_owned(), source: Box::new(source) };
        match self.call(addr, NodeRequest::Join { shard_count }, CALL_TIMEOUT).await {
            Ok(NodeReply::Done) => Ok(()),
            Ok(other) => Err(join(unexpected(other))),
            Err(e) => Err(join(e)),
        }
    }

    /// A node's version and disk; `None` from a node older than the request.
    pub async fn info(&self, addr: &str) -> Result<Option<NodeInfo>, ClusterCliError> {
        match self.call(addr, NodeRequest::Info, Duration::from_secs(3)).await? {
            NodeReply::Info(info) => Ok(Some(info)),
            NodeReply::Error(WireError::Invalid(why)) if why.contains(node::UNKNOWN_KIND_REFUSAL) => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Refuses node `id` at `addr` if its version cannot run beside an active node's.
    async fn check_version(&self, layout: &Layout, id: NodeId, addr: &str) -> Result<(), ClusterCliError> {
        let Some(joining) = self.info(addr).await? else { return Ok(()) };
        for n in layout.active().filter(|n| n.id != id) {
            let Ok(Some(other)) = self.info(&n.addr).await else { continue };
            if !joining.version.works_with(other.version) {
                return Err(ClusterCliError::Version {
                    id,
                    version: joining.version,
                    other: n.id,
                    other_version: other.version,
                });
            }
        }
        Ok(())
    }

    pub async fn add_node(&self, id: NodeId, addr: &str) -> Result<Layout, ClusterCliError> {
        let layout = self.layout().await?;
        self.check_version(&layout, id, addr).await?;
        self.join(id, addr, layout.shard_count).await?;
        self.propose_meta(&layout, Command::AddNode { id, addr: addr.to_owned() }).await
    }

    pub async fn remove_node(&self, id: NodeId) -> Result<Layout, ClusterCliError> {
        let layout = self.layout().await?;
        self.propose_meta(&layout, Command::DrainNode { id }).await
    }

    /// Waits until a layout at least as new as `since` has no replica move left and no node
    /// draining. (The node asked may apply the meta log a moment after the leader: an older
    /// layout says nothing about the change just made.)
    pub async fn wait_balanced(&self, since: u64, timeout: Duration) -> Result<Layout, ClusterCliError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(layout) = self.layout().await {
                let draining = layout.nodes.values().any(|n| n.status == NodeStatus::Draining);
                if layout.version >= since && layout.next_move().is_none() && !draining {
                    return Ok(layout);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterCliError::Unsettled(timeout));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Rebuilds node `id`'s copy of `group` (a damaged one, say) from the other replicas: the
    /// group's leader removes it from the membership, the node deletes its copy, and the leader
    /// adds it back as a learner, which catches up from a snapshot and becomes a voter again.
    /// Each step is safe to repeat.
    pub async fn repair(&self, id: NodeId, group: GroupId, timeout: Duration) -> Result<(), ClusterCliError> {
        let layout = self.layout().await?;
        let (voters, learners) = members_of(&layout, group);
        let addr = match voters.get(&id).or_else(|| learners.get(&id)) {
            Some(addr) => addr.clone(),
            None => return Err(ClusterCliError::NotReplica { id, group }),
        };
        let without = |m: &BTreeMap<NodeId, String>| -> BTreeMap<NodeId, String> {
            m.iter().filter(|(n, _)| **n != id).map(|(n, a)| (*n, a.clone())).collect()
        };
        if without(&voters).is_empty() {
            return Err(ClusterCliError::NoOtherReplica { id, group });
        }
        println!("{group}: removing node {id}'s copy from the membership");
        self.ensure_members(&layout, group, without(&voters), without(&learners), timeout).await?;
        println!("{group}: deleting node {id}'s copy");
        match self.call(&addr, NodeRequest::DropGroup { group }, CALL_TIMEOUT).await? {
            NodeReply::Done => {}
            other => return Err(unexpected(other)),
        }
        println!("{group}: adding node {id} back; it catches up from a snapshot");
        self.ensure_members(&layout, group, voters, learners, timeout).await
    }

    async fn ensure_members(
        &self,
        layout: &Layout,
        group: GroupId,
        voters: BTreeMap<NodeId, String>,
        learners: BTreeMap<NodeId, String>,
        timeout: Duration,
    ) -> Result<(), ClusterCliError> {
        let (all_voters, all_learners) = members_of(layout, group);
        let candidates: Vec<(NodeId, String)> = all_voters.into_iter().chain(all_learners).collect();
        let request = move || NodeRequest::EnsureMembers { group, voters: voters.clone(), learners: learners.clone() };
        let deadline = tokio::time::Instant::now() + timeout;
        let noop = |_: NodeId, _: Option<String>| {};
        let (_, reply) = call_leader(&self.client, group, &candidates, &request, timeout, deadline, &noop).await?;
        match reply {
            NodeReply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Nodes, shards, leaders, replicas, lag, health and disk.
    pub async fn status(&self) -> Result<ClusterReport, ClusterCliError> {
        let layout = self.layout().await?;
        let mut statuses: BTreeMap<NodeId, Result<NodeStatusReply, ClusterCliError>> = BTreeMap::new();
        let mut infos: BTreeMap<NodeId, NodeInfo> = BTreeMap::new();
        for n in layout.nodes.values().filter(|n| n.status != NodeStatus::Removed) {
            let status = match self.call(&n.addr, NodeRequest::Status, Duration::from_secs(3)).await {
                Ok(NodeReply::Status(s)) => Ok(s),
                Ok(other) => Err(unexpected(other)),
                Err(e) => Err(e),
            };
            if status.is_ok() {
                if let Ok(Some(info)) = self.info(&n.addr).await {
                    infos.insert(n.id, info);
                }
            }
            statuses.insert(n.id, status);
        }
        Ok(ClusterReport::new(&layout, &statuses, &infos))
    }

    /// Waits until [`ClusterReport::unhealthy`] finds nothing, up to `timeout`; the last report.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<ClusterReport, ClusterCliError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = self.status().await;
            let problems = match &last {
                Ok(report) => report.unhealthy(),
                Err(e) => vec![e.to_string()],
            };
            if problems.is_empty() {
                return last;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterCliError::Unhealthy { waited: timeout, problems: problems.join("; ") });
            }
            tokio::time::sleep(Duration::from_millis(HEALTH_POLL_MS)).await;
        }
    }

    /// Hands `group`'s leadership to node `to` (or the most up-to-date other replica): asks its
    /// leader, which stops taking writes until the successor is elected. Returns the new leader.
    pub async fn transfer_leader(&self, group: GroupId, to: Option<NodeId>) -> Result<NodeId, ClusterCliError> {
        let layout = self.layout().await?;
        let (voters, learners) = members_of(&layout, group);
        let candidates: Vec<(NodeId, String)> = voters.into_iter().chain(learners).collect();
        let request = move || NodeRequest::TransferLeader { group, to };
        let timeout = Duration::from_millis(node::HAND_OVER_TIMEOUT_MS) + CALL_TIMEOUT;
        let deadline = tokio::time::Instant::now() + timeout;
        let noop = |_: NodeId, _: Option<String>| {};
        match call_leader(&self.client, group, &candidates, &request, timeout, deadline, &noop).await?.1 {
            NodeReply::Leader { leader, .. } => Ok(leader),
            other => Err(unexpected(other)),
        }
    }
}

fn as_strings<S: serde::Serializer>(versions: &[Version], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(versions.iter().map(ToString::to_string))
}

/// A group's intended voters and learners, with their addresses.
fn members_of(layout: &Layout, group: GroupId) -> (BTreeMap<NodeId, String>, BTreeMap<NodeId, String>) {
    let addrs = |ids: Vec<NodeId>| -> BTreeMap<NodeId, String> {
        ids.into_iter().filter_map(|id| layout.addr(id).map(|a| (id, a.to_owned()))).collect()
    };
    match group.as_shard() {
        Some(s) => (addrs(layout.placement.get(s as usize).cloned().unwrap_or_default()), BTreeMap::new()),
        None => {
            let (voters, learners) = layout.meta_members();
            (addrs(voters.into_iter().collect()), addrs(learners.into_iter().collect()))
        }
    }
}

/// The cluster as `cluster status` reports it; `--json` prints this as it is.
#[derive(Debug, Serialize)]
pub struct ClusterReport {
    pub shard_count: u32,
    pub replication: u32,
    pub layout_version: u64,
    /// The shard whose replicas move next; `None`: the placement is balanced.
    pub moving_shard: Option<u32>,
    /// Every release the reachable nodes run, lowest first: two during a rolling upgrade.
    #[serde(serialize_with = "as_strings")]
    pub versions: Vec<Version>,
    pub nodes: Vec<NodeReport>,
    pub groups: Vec<GroupReport>,
}

#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub id: NodeId,
    pub addr: String,
    /// `active`, `draining` or `removed`.
    pub status: String,
    /// Whether it answered the status request.
    pub reachable: bool,
    /// Groups hosted, and led, there (`None` when unreachable).
    pub groups: Option<usize>,
    pub leading: Option<usize>,
    /// Copies that did not open there: stopped until repaired.
    pub damaged: Vec<DamagedGroup>,
    /// The release it runs (`None`: unreachable, or older than the question).
    pub version: Option<String>,
    pub disk: Option<DiskUsage>,
}

#[derive(Debug, Serialize)]
pub struct GroupReport {
    /// `meta` or `shard-N`.
    pub group: String,
    pub leader: Option<NodeId>,
    pub term: Option<u64>,
    /// The replicas the layout places there.
    pub replicas: Vec<NodeId>,
    /// The leader's applied index.
    pub applied_index: Option<u64>,
    /// Entries each other replica's log is behind the leader's, by node id.
    pub lag: BTreeMap<NodeId, u64>,
}

impl ClusterReport {
    fn new(
        layout: &Layout,
        statuses: &BTreeMap<NodeId, Result<NodeStatusReply, ClusterCliError>>,
        infos: &BTreeMap<NodeId, NodeInfo>,
    ) -> ClusterReport {
        let nodes = layout
            .nodes
            .values()
            .map(|n| {
                let reply = statuses.get(&n.id).and_then(|s| s.as_ref().ok());
                NodeReport {
                    id: n.id,
                    addr: n.addr.clone(),
                    status: format!("{:?}", n.status).to_lowercase(),
                    reachable: reply.is_some(),
                    groups: reply.map(|s| s.groups.len()),
                    leading: reply.map(|s| s.groups.iter().filter(|g| g.leader == Some(n.id)).count()),
                    damaged: reply.map(|s| s.damaged.clone()).unwrap_or_default(),
                    version: infos.get(&n.id).map(|i| i.version.to_string()),
                    disk: infos.get(&n.id).and_then(|i| i.disk),
                }
            })
            .collect();
        let groups = std::iter::once(GroupId::META)
            .chain((0..layout.shard_count).map(GroupId::shard))
            .map(|g| {
                let all: Vec<(NodeId, &node::GroupStatus)> = statuses
                    .iter()
                    .filter_map(|(id, s)| {
                        s.as_ref().ok().and_then(|s| s.groups.iter().find(|x| x.group == g)).map(|x| (*id, x))
                    })
                    .collect();
                let leader = all.iter().filter_map(|(_, x)| x.leader.map(|l| (x.term, l))).max();
                let leader_report = leader.and_then(|(_, l)| all.iter().find(|(id, _)| *id == l).map(|(_, x)| *x));
                let replicas = match g.as_shard() {
                    Some(s) => layout.placement.get(s as usize).cloned().unwrap_or_default(),
                    None => layout.meta_members().0.into_iter().chain(layout.meta_members().1).collect(),
                };
                let lag = all
                    .iter()
                    .filter(|(id, _)| Some(*id) != leader.map(|(_, l)| l))
                    .map(|(id, x)| {
                        (*id, leader_report.map_or(0, |l| l.last_log_index.saturating_sub(x.last_log_index)))
                    })
                    .collect();
                GroupReport {
                    group: g.to_string(),
                    leader: leader.map(|(_, l)| l),
                    term: leader.map(|(t, _)| t),
                    replicas,
                    applied_index: leader_report.map(|x| x.last_applied_index),
                    lag,
                }
            })
            .collect();
        ClusterReport {
            shard_count: layout.shard_count,
            replication: layout.replication,
            layout_version: layout.version,
            moving_shard: layout.next_move().map(|m| m.shard),
            versions: infos
                .values()
                .map(|i| i.version)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            nodes,
            groups,
        }
    }

    /// What keeps the cluster from being healthy: an active node that does not answer or holds a
    /// damaged copy, a group without a leader, a replica more than `HEALTHY_LAG_MAX` entries behind.
    pub fn unhealthy(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for n in self.nodes.iter().filter(|n| n.status == "active") {
            if !n.reachable {
                problems.push(format!("node {} does not answer", n.id));
            }
            for d in &n.damaged {
                problems.push(format!("node {}'s copy of {} is damaged", n.id, d.group));
            }
        }
        if let Some((lowest, highest)) = node::incompatible_versions(&self.versions) {
            problems.push(format!("nodes run versions {lowest} and {highest}, more than one minor version apart"));
        }
        for g in &self.groups {
            if g.leader.is_none() {
                problems.push(format!("{} has no leader", g.group));
            }
            for (id, behind) in g.lag.iter().filter(|(_, behind)| **behind > HEALTHY_LAG_MAX) {
                problems.push(format!("node {id} is {behind} entries behind in {}", g.group));
            }
        }
        problems
    }

    /// The text report: a table of nodes, a table of groups, then any damaged copies.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cluster: {} shards, replication {}, layout version {}",
            self.shard_count, self.replication, self.layout_version
        );
        let pending = self.moving_shard.map_or("balanced".to_owned(), |s| format!("moving shard {s} next"));
        let _ = writeln!(out, "placement: {pending}");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<6} {:<24} {:<9} {:<11} {:>6} {:>7} {:>10}  VERSION",
            "NODE", "ADDRESS", "STATUS", "HEALTH", "GROUPS", "LEADING", "DISK FREE"
        );
        let dash = || "-".to_owned();
        for n in &self.nodes {
            let health = match (n.reachable, n.damaged.len()) {
                (false, _) if n.status == "removed" => dash(),
                (false, _) => "unreachable".to_owned(),
                (true, 0) => "up".to_owned(),
                (true, d) => format!("{d} DAMAGED"),
            };
            let free = n
                .disk
                .map_or_else(dash, |d| format!("{:.0}%", 100.0 * d.free_bytes as f64 / d.total_bytes.max(1) as f64));
            let _ = writeln!(
                out,
                "{:<6} {:<24} {:<9} {:<11} {:>6} {:>7} {:>10}  {}",
                n.id,
                n.addr,
                n.status,
                health,
                n.groups.map_or_else(dash, |g| g.to_string()),
                n.leading.map_or_else(dash, |g| g.to_string()),
                free,
                n.version.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<10} {:<7} {:<7} {:<16} {:>10} {:<}",
            "GROUP", "LEADER", "TERM", "REPLICAS", "APPLIED", "LAG (entries behind the leader)"
        );
        for g in &self.groups {
            let lag: Vec<String> = g.lag.iter().map(|(id, behind)| format!("n{id}:{behind}")).collect();
            let health = if g.leader.is_none() { " NO LEADER" } else { "" };
            let _ = writeln!(
                out,
                "{:<10} {:<7} {:<7} {:<16} {:>10} {}{}",
                g.group,
                g.leader.map_or_else(dash, |l| l.to_string()),
                g.term.map_or_else(dash, |t| t.to_string()),
                format!("{:?}", g.replicas),
                g.applied_index.map_or_else(dash, |a| a.to_string()),
                lag.join(" "),
                health
            );
        }
        let damaged: Vec<(NodeId, &DamagedGroup)> =
            self.nodes.iter().flat_map(|n| n.damaged.iter().map(move |d| (n.id, d))).collect();
        if !damaged.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "DAMAGED COPIES (stopped; rebuild with `boxoffice cluster repair --id NODE --group GROUP`)"
            );
            for (id, d) in damaged {
                let _ = writeln!(out, "node {id} {}: {}", d.group, d.error);
            }
        }
        out
    }
}

/// The nodes of `cluster init`: `1=127.0.0.1:7001,2=127.0.0.1:7002`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeList(pub Vec<(NodeId, String)>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeListError {
    #[error("`{0}` is not ID=ADDRESS")]
    NotAPair(String),
    #[error("`{0}` is not a node id (ids start at 1)")]
    BadId(String),
}

impl NodeList {
    pub fn parse(text: &str) -> Result<NodeList, NodeListError> {
        let pairs = text.split(',').filter(|s| !s.trim().is_empty()).map(|pair| {
            let (id, addr) = pair.trim().split_once('=').ok_or_else(|| NodeListError::NotAPair(pair.to_owned()))?;
            match id.trim().parse::<NodeId>() {
                Ok(id) if id > 0 => Ok((id, addr.trim().to_owned())),
                _ => Err(NodeListError::BadId(id.to_owned())),
            }
        });
        Ok(NodeList(pairs.collect::<Result<_, _>>()?))
    }
}

#[cfg(test)]
mod tests {
    use super::{NodeList, NodeListError};

    #[test]
    fn node_lists_parse_and_bad_ones_are_refused() {
        let parsed = NodeList::parse("1=a:1, 2=b:2").unwrap();
        assert_eq!(parsed, NodeList(vec![(1, "a:1".to_string()), (2, "b:2".to_string())]));
        assert_eq!(NodeList::parse("a:1"), Err(NodeListError::NotAPair("a:1".into())));
        assert_eq!(NodeList::parse("x=a:1"), Err(NodeListError::BadId("x".into())));
        assert_eq!(NodeList::parse("0=a:1"), Err(NodeListError::BadId("0".into())));
    }
}
