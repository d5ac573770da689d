//! Each group's batcher: the one way into a group's log. Proposals queue; the batcher takes every
//! proposal waiting (up to a bound) into one entry, stamps it with this node's clock, and proposes
//! it. At most `ENTRIES_IN_FLIGHT_MAX` entries are in flight; while they are, the next one fills
//! up, which is how one flush carries many commands.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use raft_store::{GroupId, Outcome, Proposal, Raft, Request};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::error::ProposeError;
use super::handoff::Handoff;
use crate::clock::Clock;

/// Proposals in one log entry at most.
const ENTRY_PROPOSALS_MAX: usize = 512;
/// Proposals waiting for an entry, per group; a full queue makes proposers wait.
const PROPOSAL_QUEUE_MAX: usize = 16_384;
/// Entries a group's batcher has proposed and not yet seen applied. While they are in flight, new
/// proposals gather into the next entry: that is how one flush carries many commands.
const ENTRIES_IN_FLIGHT_MAX: usize = 2;

/// A proposal waiting for its group's next log entry, and where its outcome goes.
struct Pending {
    proposal: Proposal,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
}

/// Where a group's proposals queue: client commands and the leader's duties alike.
#[derive(Clone)]
pub(super) struct Batcher {
    group: GroupId,
    queue: mpsc::Sender<Pending>,
    handoff: Handoff,
}

impl Batcher {
    /// Starts the batcher of `group`, which proposes to `raft` and stamps entries by `clock`.
    pub(super) fn spawn(group: GroupId, raft: Raft, clock: Clock, handoff: Handoff) -> (Batcher, JoinHandle<()>) {
        let (queue, pending) = mpsc::channel(PROPOSAL_QUEUE_MAX);
        let task = tokio::spawn(run_batcher(group, raft, pending, clock));
        (Batcher { group, queue, handoff }, task)
    }

    /// Queues `proposal` for the group's next entry and waits for its outcome.
    pub(super) async fn submit(&self, proposal: Proposal) -> Result<Outcome, ProposeError> {
        self.handoff.check(self.group)?;
        let (reply, outcome) = oneshot::channel();
        if self.queue.send(Pending { proposal, reply }).await.is_err() {
            return Err(ProposeError::BatcherStopped(self.group));
        }
        match outcome.await {
            Ok(result) => result,
            Err(_) => Err(ProposeError::BatcherStopped(self.group)),
        }
    }
}

async fn run_batcher(group: GroupId, raft: Raft, mut queue: mpsc::Receiver<Pending>, clock: Clock) {
    let in_flight = Arc::new(Semaphore::new(ENTRIES_IN_FLIGHT_MAX));
    while let Some(first) = queue.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let batch = fill_entry(first, &mut queue);
        metrics::histogram!("boxoffice_entry_proposals").record(batch.len() as f64);
        let raft = raft.clone();
        let time_ms = clock.now_ms();
        tokio::spawn(propose_entry(group, raft, batch, time_ms, permit));
    }
}

/// `first` and every proposal already waiting behind it, up to `ENTRY_PROPOSALS_MAX`.
fn fill_entry(first: Pending, queue: &mut mpsc::Receiver<Pending>) -> Vec<Pending> {
    let mut batch = vec![first];
    while batch.len() < ENTRY_PROPOSALS_MAX {
        match queue.try_recv() {
            Ok(more) => batch.push(more),
            Err(_) => break,
        }
    }
    batch
}

/// Proposes one entry stamped `time_ms` and hands each proposal its outcome. The in-flight
/// `permit` is released as soon as the entry is decided, so the next one can go.
async fn propose_entry(group: GroupId, raft: Raft, batch: Vec<Pending>, time_ms: i64, permit: OwnedSemaphorePermit) {
    let (proposals, replies): (Vec<Proposal>, Vec<_>) = batch.into_iter().map(|p| (p.proposal, p.reply)).unzip();
    let count = proposals.len();
    let result = raft.client_write(Request { time_ms, proposals }).await;
    drop(permit);
    match result {
        Ok(response) => {
            let applied = response.data;
            assert_eq!(applied.outcomes.len(), count, "one outcome per proposal");
            // Counted where the entry was proposed (once per entry, on its leader), whichever
            // command's apply ended them; most entries end none.
            if applied.expired_holds > 0 {
                metrics::counter!("boxoffice_expired_holds_total").increment(u64::from(applied.expired_holds));
            }
            if applied.expired_orders > 0 {
                metrics::counter!("boxoffice_expired_orders_total").increment(u64::from(applied.expired_orders));
            }
            for (reply, outcome) in replies.into_iter().zip(applied.outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            for reply in replies {
                let error = match e.clone() {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                        ProposeError::not_leader(group, f.leader_id, f.leader_node)
                    }
                    // The group stopped here (its replica was removed, leadership handed over
                    // at shutdown, or its storage failed): it lives on at its other replicas,
                    // where the caller retries with the same request id, which finds the entry
                    // if it was committed.
                    RaftError::Fatal(fatal) => {
                        tracing::info!(%group, error = %fatal, "a proposal's group stopped here; the caller retries elsewhere");
                        ProposeError::not_leader(group, None, None)
                    }
                    other => ProposeError::Write(Box::new(other)),
                };
                let _ = reply.send(Err(error));
            }
        }
    }
}
