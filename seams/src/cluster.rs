//! What the tiers in front of the store (api, indexer) need from it: the seam between them and
//! Raft.
//!
//! The node crate implements [`Cluster`]: in-process for `boxoffice dev`, over the network for a
//! stateless `boxoffice api` in front of a cluster. Implementations route each command to the
//! leader of the group that owns it, stamp nothing themselves (the proposing leader stamps time),
//! and retry transient failures with the same request id, so a retry never applies twice.

use std::time::Duration;

use raft_store::{Answer, ChangesPage, Command, GroupId, Outcome, Query, RequestId};

use crate::BoxFuture;

/// A client command with its idempotency identity.
#[derive(Clone, Debug)]
pub struct Submit {
    pub command: Command,
    /// Derived from the `Idempotency-Key` and the user, or random for a request without one.
    pub request_id: RequestId,
    /// Hash of the HTTP request (method, path, canonical body): a reused key with another
    /// fingerprint is refused by the state machine.
    pub fingerprint: u64,
    /// The client sent an `Idempotency-Key`, so every outcome, refusals included, must be
    /// remembered for its retries. Without one, a refusal may come from the leader's confirmed
    /// state without a log entry.
    pub keyed: bool,
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read started (leader, leadership confirmed).
    Linearizable,
    /// Any replica, at most a bounded time behind the leader: for browsing.
    Stale,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum ClusterError {
    /// No leader could be reached in time; the client may retry (503).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A bug or a broken invariant (500); details go to the log, not the client.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupHealth {
    pub group: GroupId,
    pub leader: Option<u64>,
    pub last_applied_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub groups: Vec<GroupHealth>,
}

pub trait Cluster: Send + Sync + 'static {
    /// Number of event shards; fixed for the life of the cluster.
    fn shard_count(&self) -> u32;

    /// Proposes a command to the group that owns it and returns its outcome.
    fn submit(&self, submit: Submit) -> BoxFuture<'_, Result<Outcome, ClusterError>>;

    /// Reads from one group.
    fn query(
        &self,
        group: GroupId,
        query: Query,
        consistency: Consistency,
    ) -> BoxFuture<'_, Result<Answer, ClusterError>>;

    /// Change records of a shard after `after_index`, waiting up to `wait` for one to arrive.
    fn changes(
        &self,
        shard: u32,
        after_index: u64,
        limit: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ChangesPage, ClusterError>>;

    /// Whether every group has a leader this tier can reach.
    fn readiness(&self) -> BoxFuture<'_, Readiness>;
}
