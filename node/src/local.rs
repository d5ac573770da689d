//! The api's view of a node in the same process: every group is local.
//!
//! Retries: a proposal that finds no leader (an election, a restart) is retried with the same
//! request id until a deadline, so a retry never applies twice.

use std::sync::Arc;
use std::time::Duration;

use raft_store::{Answer, ChangesPage, GroupId, Outcome, Proposal, Query};
use seams::{BoxFuture, Cluster, ClusterError, Consistency, Readiness, Submit};

use crate::host::{Node, ProposeError};
use crate::wire::WireError;

/// How long a request waits for a leader before the client gets 503.
const LEADER_WAIT_MS: u64 = 10_000;
/// Pause between attempts while no leader is known.
const RETRY_PAUSE_MS: u64 = 50;

pub struct LocalCluster {
    node: Arc<Node>,
}

impl LocalCluster {
    pub fn new(node: Arc<Node>) -> LocalCluster {
        LocalCluster { node }
    }
}

/// The api's error for `e`, judged as a remote caller would judge it (the same `WireError`).
fn to_cluster_error(e: ProposeError) -> ClusterError {
    match WireError::from(e) {
        WireError::NotLeader { .. } => ClusterError::Unavailable("no leader".into()),
        WireError::UnknownGroup(g) => ClusterError::Internal(format!("no such group {g}")),
        WireError::NotJoined => ClusterError::Unavailable("the node has not joined a cluster".into()),
        WireError::Invalid(e) | WireError::Fatal(e) => ClusterError::Internal(e),
        forbidden @ WireError::Forbidden { .. } => ClusterError::Internal(forbidden.to_string()),
    }
}

/// Runs `attempt` until it succeeds, fails for a reason other than a missing leader, or the
/// deadline passes.
async fn with_retries<T, F, Fut>(mut attempt: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProposeError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, attempt()).await {
            Err(_) => return Err(ClusterError::Unavailable("timed out waiting for the store".into())),
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(ProposeError::NotLeader { .. })) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
            }
            Ok(Err(e)) => return Err(to_cluster_error(e)),
        }
    }
}

impl Cluster for LocalCluster {
    fn shard_count(&self) -> u32 {
        self.node.shard_count().unwrap_or(1)
    }

    fn submit(&self, submit: Submit) -> BoxFuture<'_, Result<Outcome, ClusterError>> {
        Box::pin(async move {
            let group = submit.command.group(self.shard_count());
            let proposal = Proposal {
                request_id: Some(submit.request_id),
                fingerprint: submit.fingerprint,
                keyed: submit.keyed,
                command: submit.command,
            };
            // Only the first attempt may be refused without a log entry: a retry must find
            // whatever the first one did.
            let mut quick_refusal = !submit.keyed;
            with_retries(|| self.node.propose(group, proposal.clone(), std::mem::take(&mut quick_refusal))).await
        })
    }

    fn query(
        &self,
        group: GroupId,
        query: Query,
        consistency: Consistency,
    ) -> BoxFuture<'_, Result<Answer, ClusterError>> {
        Box::pin(async move {
            let linearizable = consistency == Consistency::Linearizable;
            with_retries(|| self.node.read(group, &query, linearizable)).await
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
            self.node.changes(GroupId::shard(shard), after_index, limit, wait).await.map_err(to_cluster_error)
        })
    }

    fn readiness(&self) -> BoxFuture<'_, Readiness> {
        Box::pin(async move {
            let groups = self.node.health();
            Readiness { ready: groups.iter().all(|g| g.leader.is_some()), groups }
        })
    }
}
