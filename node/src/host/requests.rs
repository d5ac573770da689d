//! The request path: proposals, linearizable and local reads, the change-feed long-poll, and Raft
//! traffic from peers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use raft_store::{Answer, ChangesPage, GroupId, Outcome, Proposal, Query, Refusal};

use super::error::ProposeError;
use super::transfer::{Chunk, Purpose, Taken};
use super::{Group, Node};
use crate::wire::{RaftRpc, RaftRpcReply};

/// A follower answers a browsing (non-linearizable) read only if it heard from its leader within
/// this long: the bound on how stale such a read can be, beyond the follower's apply lag.
const STALE_READ_BOUND_MS: i64 = 2_000;

impl Node {
    /// Proposes a command as this group's leader and waits for its outcome. The command joins the
    /// group's next log entry, which the leader stamps with its clock.
    ///
    /// With `quick_refusal` (the client did not ask for the outcome to be remembered, and this is
    /// the first attempt), a command that the confirmed, current state refuses is answered without
    /// a log entry: the refusal changes nothing, so there is nothing to replicate or flush.
    pub async fn propose(
        &self,
        group: GroupId,
        proposal: Proposal,
        quick_refusal: bool,
    ) -> Result<Outcome, ProposeError> {
        let target = self.hosted(group)?;
        let name = proposal.command.name();
        let started = tokio::time::Instant::now();
        let refused = if quick_refusal { self.confirmed_refusal(&target, &proposal).await? } else { None };
        let (result, path) = match refused {
            Some(refusal) => {
                metrics::counter!("boxoffice_quick_refusals_total", "command" => name).increment(1);
                (Ok(Outcome::Refused(refusal)), "quick")
            }
            None => (target.batcher.submit(proposal).await, "log"),
        };
        metrics::histogram!("boxoffice_propose_seconds", "command" => name, "path" => path)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// The refusal the state machine would give `proposal` as the next command, judged on state
    /// that reflects every write acknowledged before this call (leadership confirmed by a quorum,
    /// everything committed applied): a linearizable read, at the cost of a heartbeat round shared
    /// with every other waiter instead of a log entry and a flush on every replica. The local state
    /// is asked first, so a command it would accept goes straight to the log.
    async fn confirmed_refusal(&self, target: &Group, proposal: &Proposal) -> Result<Option<Refusal>, ProposeError> {
        let refusal = |node: &Node| {
            let clock = &node.clock;
            target.state.refusal(proposal, clock.now_ms(), clock.passed_ms())
        };
        if refusal(self)?.is_none() {
            return Ok(None);
        }
        target.barrier.confirm(&target.raft).await?;
        Ok(refusal(self)?)
    }

    /// Reads from a group's applied state; `linearizable` first confirms leadership and waits for
    /// everything committed before the read to be applied.
    pub async fn read(&self, group: GroupId, query: &Query, linearizable: bool) -> Result<Answer, ProposeError> {
        let target = self.hosted(group)?;
        if linearizable {
            target.barrier.confirm(&target.raft).await?;
        } else {
            self.check_staleness(&target)?;
        }
        Ok(target.state.query(query, self.clock.passed_ms())?)
    }

    /// A follower that has not heard from a leader lately refuses browsing reads, so the caller
    /// asks another replica: stale reads are bounded by `STALE_READ_BOUND_MS`.
    fn check_staleness(&self, group: &Group) -> Result<(), ProposeError> {
        let m = group.raft.metrics().borrow().clone();
        if m.current_leader == Some(self.id) {
            return Ok(());
        }
        let last = group.last_leader_contact_ms.load(Ordering::Relaxed);
        if self.clock.now_ms().saturating_sub(last) <= STALE_READ_BOUND_MS {
            return Ok(());
        }
        Err(ProposeError::not_leader(group.id, m.current_leader, None))
    }

    /// Change records of a shard after `after_index`, waiting up to `wait` for one to be applied.
    pub async fn changes(
        &self,
        group: GroupId,
        after_index: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangesPage, ProposeError> {
        let target = self.hosted(group)?;
        let mut applied = target.state.watch_applied();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let page = match target.state.query(&Query::Changes { after_index, limit }, self.clock.passed_ms())? {
                Answer::Changes(page) => page,
                other => return Err(ProposeError::UnexpectedAnswer(Box::new(other))),
            };
            let empty = matches!(&page, ChangesPage::Records { changes, .. } if changes.is_empty());
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !empty || tokio::time::timeout(remaining, applied.changed()).await.is_err() {
                return Ok(page);
            }
        }
    }

    /// Dispatches a Raft message from a peer to its group. A group not hosted here is not started:
    /// the sender hears "unknown group", which it treats like an unreachable peer.
    pub async fn handle_raft(self: &Arc<Self>, rpc: RaftRpc) -> Result<RaftRpcReply, ProposeError> {
        let Some(group) = self.group(rpc.group()) else { return Ok(RaftRpcReply::UnknownGroup) };
        let reply = match rpc {
            RaftRpc::Append { req, .. } => {
                let reply = group.raft.append_entries(req).await;
                if matches!(&reply, Ok(r) if r.is_success()) {
                    group.last_leader_contact_ms.store(self.clock.now_ms(), Ordering::Relaxed);
                }
                RaftRpcReply::Append(reply)
            }
            // A candidate hears what an unreachable voter would say.
            RaftRpc::Vote { .. } if tokio::time::Instant::now() < self.votes_embargoed_until => {
                RaftRpcReply::UnknownGroup
            }
            RaftRpc::Vote { req, .. } => RaftRpcReply::Vote(group.raft.vote(req).await),
            RaftRpc::SnapshotChunk { group: id, transfer, seq, vote, chunk } => {
                let chunk = Chunk { group: id, transfer, seq, purpose: Purpose::Raft(vote), chunk };
                match self.take_chunk(chunk, || Ok(group.state.cold().clone())).await {
                    Ok(Taken::More) => RaftRpcReply::ChunkTaken,
                    Ok(Taken::Whole(data, _)) => {
                        let snapshot = raft_store::Snapshot { meta: data.meta().clone(), snapshot: Box::new(data) };
                        let installed = group.raft.install_full_snapshot(vote, snapshot).await;
                        let outcome = if installed.is_ok() { "installed" } else { "failed" };
                        metrics::counter!("boxoffice_snapshot_installs_total", "outcome" => outcome).increment(1);
                        RaftRpcReply::Snapshot(installed)
                    }
                    Err(e) => {
                        tracing::warn!(group = %id, error = %e, "a snapshot's chunk was refused");
                        return Err(e);
                    }
                }
            }
        };
        Ok(reply)
    }
}
