//! The read lease a confirmed heartbeat round grants a group's leader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use openraft::ServerState;
use raft_store::{NodeAddr, NodeId};

pub(super) type Metrics = openraft::RaftMetrics<NodeId, NodeAddr>;

/// A leader's lease on linearizable reads, from its last confirmed heartbeat round.
///
/// A round that a quorum answered, started at `t` in term `T`, proves that each of those voters
/// heard from this leader after `t`; openraft's followers then refuse every vote request for
/// `election_timeout_max` (their leader lease), so no other leader can be elected before
/// `t + election_timeout_max` on their clocks. A restarted node forgets that promise, so it
/// answers no vote request for as long after it starts (`Node::start`). Until `t` plus half
/// that lease (the other half is the margin for clock rates and for the metrics this reads, which
/// openraft publishes a moment after it changes state), while this node still leads in term `T`,
/// its applied state reflects every write acknowledged before a read: the round waited for
/// everything committed before it to be applied, and this leader applies each later write before
/// it acknowledges it. Reads then need no round of their own.
pub(super) struct ReadLease {
    node: NodeId,
    /// The term and the start of the latest confirmed round; none before the first.
    granted: Mutex<Option<(u64, tokio::time::Instant)>>,
    /// How long after its start a confirmed round vouches for reads.
    length: Duration,
    /// Age after which a read also asks for a new round, without waiting for it.
    renew_after: Duration,
    /// A renewal round is queued or running.
    renewing: AtomicBool,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum LeaseCheck {
    /// Reads may be answered now.
    Holds,
    /// Reads may be answered now, and a renewal should start.
    Aging,
    /// Reads must wait for a round.
    Lapsed,
}

impl ReadLease {
    pub(super) fn new(node: NodeId, config: &openraft::Config) -> ReadLease {
        let length = Duration::from_millis(config.election_timeout_max / 2);
        ReadLease { node, granted: Mutex::new(None), length, renew_after: length / 4, renewing: AtomicBool::new(false) }
    }

    /// Whether the lease vouches for a read now, by the group's latest metrics.
    pub(super) fn check(&self, m: &Metrics) -> LeaseCheck {
        self.check_at(m, tokio::time::Instant::now())
    }

    fn check_at(&self, m: &Metrics, now: tokio::time::Instant) -> LeaseCheck {
        let Some((term, started)) = *self.granted.lock().unwrap_or_else(|e| e.into_inner()) else {
            return LeaseCheck::Lapsed;
        };
        let age = now.saturating_duration_since(started);
        #[cfg(madsim)]
        let age = if raft_store::planted::is_planted(raft_store::planted::Bug::LeaseNeverExpires) {
            Duration::ZERO
        } else {
            age
        };
        if !leads(m, self.node) || m.current_term != term || age >= self.length {
            LeaseCheck::Lapsed
        } else if age > self.renew_after {
            LeaseCheck::Aging
        } else {
            LeaseCheck::Holds
        }
    }

    /// Records a round confirmed in `term` that started at `started`; an earlier round never
    /// replaces a later one of the same term.
    pub(super) fn grant(&self, term: u64, started: tokio::time::Instant) {
        let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        if granted.is_none_or(|(t, s)| t != term || s < started) {
            *granted = Some((term, started));
        }
    }

    /// True for the one caller that should queue a renewal.
    pub(super) fn start_renewal(&self) -> bool {
        !self.renewing.swap(true, Ordering::AcqRel)
    }

    pub(super) fn renewal_done(&self) {
        self.renewing.store(false, Ordering::Release);
    }
}

/// Whether these metrics show `node` leading its group.
pub(super) fn leads(m: &Metrics, node: NodeId) -> bool {
    m.state == ServerState::Leader && m.current_leader == Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader_metrics(node: NodeId, term: u64) -> Metrics {
        let mut m = openraft::RaftMetrics::new_initial(node);
        m.state = ServerState::Leader;
        m.current_leader = Some(node);
        m.current_term = term;
        m
    }

    fn lease() -> ReadLease {
        let config = openraft::Config { election_timeout_min: 600, election_timeout_max: 1_200, ..Default::default() };
        ReadLease::new(1, &config)
    }

    #[test]
    fn a_lease_holds_only_after_a_round_while_leading_in_its_term() {
        let lease = lease();
        let start = tokio::time::Instant::now();
        let m = leader_metrics(1, 3);
        assert_eq!(lease.check_at(&m, start), LeaseCheck::Lapsed, "no round confirmed yet");
        lease.grant(3, start);
        assert_eq!(lease.check_at(&m, start), LeaseCheck::Holds);
        assert_eq!(lease.check_at(&leader_metrics(1, 4), start), LeaseCheck::Lapsed, "a later term");
        let mut follower = leader_metrics(1, 3);
        follower.state = ServerState::Follower;
        follower.current_leader = Some(2);
        assert_eq!(lease.check_at(&follower, start), LeaseCheck::Lapsed, "no longer leading");
    }

    #[test]
    fn a_lease_ages_then_lapses_within_half_the_followers_lease() {
        let lease = lease();
        let start = tokio::time::Instant::now();
        let m = leader_metrics(1, 3);
        lease.grant(3, start);
        let at = |ms| lease.check_at(&m, start + Duration::from_millis(ms));
        assert_eq!(at(100), LeaseCheck::Holds);
        assert_eq!(at(200), LeaseCheck::Aging, "older than a quarter of its length");
        assert_eq!(at(599), LeaseCheck::Aging);
        assert_eq!(at(600), LeaseCheck::Lapsed, "half of election_timeout_max");
        // A round that started earlier never shortens a later one.
        lease.grant(3, start - Duration::from_millis(300));
        assert_eq!(at(599), LeaseCheck::Aging);
        lease.grant(3, start + Duration::from_millis(500));
        assert_eq!(at(1_000), LeaseCheck::Aging);
    }

    #[test]
    fn one_caller_queues_a_renewal_until_it_is_done() {
        let lease = lease();
        assert!(lease.start_renewal());
        assert!(!lease.start_renewal());
        lease.renewal_done();
        assert!(lease.start_renewal());
    }
}
