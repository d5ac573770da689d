//! Each group's read barrier: confirms that this node still leads, for linearizable reads and
//! quick refusals. Each round calls openraft's `ensure_linearizable` (a heartbeat to every voter,
//! then waiting for the read index to be applied) for every waiter queued before the round began,
//! so a burst of readers costs one round, not one each; waiters arriving during a round wait for
//! the next, which starts after them. A confirmed round renews the group's [`ReadLease`], and
//! while the lease holds no round is needed at all.

use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, RaftError};
use raft_store::{GroupId, NodeAddr, NodeId, Raft};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::error::ProposeError;
use super::handoff::Handoff;
use super::lease::{LeaseCheck, ReadLease};

/// Callers waiting for a confirmation of leadership, per group: as many as proposals may wait.
const BARRIER_WAITERS_MAX: usize = 16_384;

type Waiter = oneshot::Sender<Result<(), ProposeError>>;
type Unconfirmed = RaftError<NodeId, CheckIsLeaderError<NodeId, NodeAddr>>;

/// A group's read barrier and the lease its rounds grant.
pub(super) struct ReadBarrier {
    group: GroupId,
    waiters: mpsc::Sender<Waiter>,
    lease: Arc<ReadLease>,
    handoff: Handoff,
}

impl ReadBarrier {
    /// Starts the barrier of `group`, whose leases vouch for `node` as its leader.
    pub(super) fn spawn(
        group: GroupId,
        node: NodeId,
        raft: Raft,
        config: &openraft::Config,
        handoff: Handoff,
    ) -> (ReadBarrier, JoinHandle<()>) {
        let (waiters, queue) = mpsc::channel(BARRIER_WAITERS_MAX);
        let lease = Arc::new(ReadLease::new(node, config));
        let task = tokio::spawn(run_read_barrier(group, raft, queue, lease.clone()));
        (ReadBarrier { group, waiters, lease, handoff }, task)
    }

    /// Returns once this node has confirmed it still leads the group of `raft` and has applied
    /// everything committed before this call: at once while its read lease holds (renewing it in
    /// the background once it is old), else after a heartbeat round that a quorum answered,
    /// shared by every concurrent caller.
    pub(super) async fn confirm(&self, raft: &Raft) -> Result<(), ProposeError> {
        // A replica handing its leadership over confirms nothing: a heartbeat round would renew
        // its followers' leases, and the lease it holds may outlive its leadership.
        self.handoff.check(self.group)?;
        #[cfg(madsim)]
        if raft_store::planted::is_planted(raft_store::planted::Bug::TrustStaleLeader) {
            return Ok(());
        }
        match self.lease.check(&raft.metrics().borrow()) {
            LeaseCheck::Holds => return Ok(()),
            LeaseCheck::Aging => {
                self.renew();
                return Ok(());
            }
            LeaseCheck::Lapsed => {}
        }
        let (reply, confirmed) = oneshot::channel();
        self.waiters.send(reply).await.map_err(|_| ProposeError::BarrierStopped(self.group))?;
        match confirmed.await {
            Ok(result) => result,
            Err(_) => Err(ProposeError::BarrierStopped(self.group)),
        }
    }

    /// Queues one renewal round unless one is queued or running already.
    fn renew(&self) {
        if self.lease.start_renewal() {
            // Nobody waits for this round's answer; the lease it grants is the point.
            let (reply, _) = oneshot::channel();
            if self.waiters.try_send(reply).is_err() {
                self.lease.renewal_done();
            }
        }
    }
}

async fn run_read_barrier(group: GroupId, raft: Raft, mut waiters: mpsc::Receiver<Waiter>, lease: Arc<ReadLease>) {
    while let Some(first) = waiters.recv().await {
        let mut round = vec![first];
        while let Ok(more) = waiters.try_recv() {
            round.push(more);
        }
        metrics::histogram!("boxoffice_read_barrier_waiters").record(round.len() as f64);
        let term = raft.metrics().borrow().current_term;
        let started = tokio::time::Instant::now();
        let confirmed = raft.ensure_linearizable().await;
        lease.renewal_done();
        if confirmed.is_ok() && raft.metrics().borrow().current_term == term {
            lease.grant(term, started);
        }
        let result = confirmed.map(|_| ());
        if let Err(RaftError::APIError(e @ CheckIsLeaderError::QuorumNotEnough(_))) = &result {
            tracing::debug!(%group, error = %e, "leadership not confirmed");
        }
        for waiter in round {
            let _ = waiter.send(result.clone().map_err(|e| unconfirmed(group, e)));
        }
    }
}

/// What a waiter hears when the round did not confirm this node's leadership.
fn unconfirmed(group: GroupId, e: Unconfirmed) -> ProposeError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
            ProposeError::not_leader(group, f.leader_id, f.leader_node)
        }
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)) => ProposeError::not_leader(group, None, None),
        // The group stopped here: the caller reads at another replica.
        RaftError::Fatal(_) => ProposeError::not_leader(group, None, None),
    }
}
