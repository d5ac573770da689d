//! A group's periodic duties: while this node leads a shard, proposing `Expire` and running the
//! waiting rooms' admission; on every voter, standing for election when no leader is known.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use raft_store::{Answer, Command, EventId, GroupState, NodeId, Outcome, Proposal, Query, Raft};

use super::batcher::Batcher;
use super::error::ProposeError;
use crate::admission::{Controller, ADMISSION_TICK};
use crate::clock::Clock;

/// How often each shard's leader looks for due holds to expire.
const EXPIRE_TICK_MS: u64 = 500;
/// How often a shard leader looks for events to archive; a step moves `ARCHIVE_ORDERS_PER_COMMAND_MAX`
/// orders, so a large event leaves memory in seconds, not all at once.
const ARCHIVE_TICK_MS: u64 = 200;

/// What a shard leader's periodic duties work with: they act only while this node leads, and
/// propose through the group's batcher like any client command.
#[derive(Clone)]
pub(super) struct LeaderDuty {
    pub(super) node_id: NodeId,
    pub(super) raft: Raft,
    pub(super) state: Arc<GroupState>,
    pub(super) batcher: Batcher,
    pub(super) clock: Clock,
    pub(super) archive_after_ms: i64,
}

impl LeaderDuty {
    fn leading(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        self.batcher.submit(Proposal::internal(command)).await
    }
}

/// Proposes `Expire` whenever this node leads the shard and a hold or payment is due, so expired
/// seats reach the change feed even when no other command arrives.
pub(super) async fn expire_duty(duty: LeaderDuty) {
    let group = duty.state.group();
    loop {
        tokio::time::sleep(Duration::from_millis(EXPIRE_TICK_MS)).await;
        if !duty.leading() || !duty.state.read().machine.has_due_deadlines(duty.clock.now_ms()) {
            continue;
        }
        match duty.propose(Command::Expire).await {
            Ok(Outcome::Expired { holds, orders }) => {
                // Counted by the batcher, with the holds other entries expire.
                tracing::debug!(%group, holds, orders, "expired");
            }
            Ok(other) => tracing::warn!(%group, ?other, "unexpected expire outcome"),
            Err(e) => tracing::debug!(%group, error = %e, "expire not proposed"),
        }
    }
}

/// Proposes `Archive` while this node leads the shard and an event started more than the archive
/// delay ago: events leave memory a bounded step per command, each step a log entry every
/// replica applies alike.
pub(super) async fn archive_duty(duty: LeaderDuty) {
    let group = duty.state.group();
    loop {
        tokio::time::sleep(Duration::from_millis(ARCHIVE_TICK_MS)).await;
        let started_before_ms = duty.clock.now_ms().saturating_sub(duty.archive_after_ms);
        if !duty.leading() || !duty.state.read().machine.has_archive_work(started_before_ms) {
            continue;
        }
        match duty.propose(Command::Archive { started_before_ms }).await {
            Ok(Outcome::Archived { orders, events }) => {
                tracing::debug!(%group, orders, events, "archived");
                metrics::counter!("boxoffice_archived_orders_total").increment(u64::from(orders));
                metrics::counter!("boxoffice_archived_events_total").increment(u64::from(events));
            }
            Ok(other) => tracing::warn!(%group, ?other, "unexpected archive outcome"),
            Err(e) => tracing::debug!(%group, error = %e, "archive not proposed"),
        }
    }
}

/// Runs the admission controller of every open waiting room of the shard while this node leads
/// it: reads the queue views from the local state (current on the leader) and proposes the
/// advances, feeding each proposal's commit latency back into its event's controller.
pub(super) async fn admission_duty(duty: LeaderDuty) {
    let group = duty.state.group();
    let mut controllers: BTreeMap<EventId, Controller> = BTreeMap::new();
    loop {
        tokio::time::sleep(ADMISSION_TICK).await;
        if !duty.leading() {
            // A new leader starts from the initial rate: it has not measured anything yet.
            controllers.clear();
            continue;
        }
        // The leader's own clock: it judges the queues as the command it proposes will be.
        let now_ms = duty.clock.now_ms();
        let views = match duty.state.query(&Query::Queues, now_ms) {
            Ok(Answer::Queues(views)) => views,
            _ => continue,
        };
        controllers.retain(|id, _| views.iter().any(|v| v.event_id == *id));
        for view in views {
            let controller = controllers.entry(view.event_id.clone()).or_default();
            let Some(to) = controller.next(&view, now_ms) else { continue };
            let command = Command::AdvanceQueue { event_id: view.event_id.clone(), to };
            let started = tokio::time::Instant::now();
            match duty.propose(command).await {
                Ok(Outcome::Queue(after)) => {
                    controller.observe(started.elapsed());
                    metrics::gauge!("boxoffice_queue_watermark", "event" => view.event_id.to_string())
                        .set(after.queue.watermark as f64);
                    tracing::debug!(%group, event_id = %view.event_id, watermark = after.queue.watermark, "admitted");
                }
                Ok(other) => tracing::warn!(%group, ?other, "unexpected advance outcome"),
                Err(e) => tracing::debug!(%group, error = %e, "advance not proposed"),
            }
        }
    }
}

/// Stands for election at a random moment while this replica knows no leader.
///
/// openraft 0.9 draws each replica's election timeout once, when the group starts, and checks it
/// on a tick shared by nothing but the start time. Replicas that start together (a whole cluster
/// restarted at once) can then time out on the same tick, term after term, each voting for
/// itself: the simulation found a meta group leaderless for minutes that way. A nudge at a
/// freshly drawn moment, off the tick, breaks the tie; a replica that hears from a leader never
/// nudges.
pub(super) async fn election_nudge(node_id: NodeId, raft: Raft, election_max: Duration) {
    use openraft::AsyncRuntime;
    use rand::Rng;
    // The runtime's generator: under the simulation it is the seeded one, so runs replay.
    type Runtime = <raft_store::TypeConfig as openraft::RaftTypeConfig>::AsyncRuntime;
    loop {
        let wait = election_max + election_max.mul_f64(Runtime::thread_rng().gen_range(0.0..1.0));
        tokio::time::sleep(wait).await;
        let m = raft.metrics().borrow().clone();
        let voter = m.membership_config.membership().voter_ids().any(|v| v == node_id);
        if m.current_leader.is_none() && voter && m.state != ServerState::Shutdown {
            tracing::info!(node = node_id, "no leader known: standing for election");
            let _ = raft.trigger().elect().await;
        }
    }
}
