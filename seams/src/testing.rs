//! `TestCluster`: a [`Cluster`] of real state machines without Raft, for the tests of the tiers in
//! front of the store (the api, the indexer). One `Machine` per group behind a mutex, consecutive
//! log indexes, the wall clock plus an offset a test moves, a long-polling change feed, and the
//! faults a real store shows: unavailable or failing calls, a panic, dropped change records.
//! Raft itself is tested in raft-store and node; here the tiers meet the real booking rules.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raft_store::{
    Answer, ChangesPage, Command, GroupId, Machine, MemCold, Outcome, Proposal, Query, Request, RequestId,
};
use tokio::sync::watch;

use crate::{BoxFuture, Cluster, ClusterError, Consistency, GroupHealth, Readiness, Submit};

/// A failure to inject into every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No leader can be reached (the tier answers 503).
    Unavailable,
    /// A broken invariant (500), with a detail the client must not see.
    Internal,
    /// The call panics.
    Panic,
}

pub struct TestCluster {
    shard_count: u32,
    /// Index `g` holds group `GroupId(g)`: the meta group, then the shards, each with its cold
    /// store (remembered outcomes, the archive).
    groups: Vec<Mutex<(Machine, MemCold)>>,
    /// Per shard, the last applied index: the change feed waits on it.
    applied: Vec<watch::Sender<u64>>,
    /// Per shard, records at or below this index are gone from the feed.
    dropped_through: Vec<AtomicU64>,
    /// Added to the wall clock, so a test can move time forward without sleeping.
    clock_offset_ms: AtomicI64,
    fault: Mutex<Option<Fault>>,
    /// Reads (`query`) still to fail as unavailable.
    failing_reads: AtomicUsize,
    ready: AtomicBool,
    /// Commands that reached the store, refused ones included.
    submits: AtomicUsize,
    /// Reads of event details and seat maps (what the api's read cache stands in front of).
    browsing_reads: AtomicUsize,
    /// Each such read takes this long, so concurrent requests overlap.
    browsing_read_delay_ms: AtomicU64,
    /// Per shard, the `after_index` of every feed read, in order.
    feed_reads: Mutex<Vec<Vec<u64>>>,
    /// Pages of full shard re-reads (`Query::AllEvents`) answered.
    rereads: AtomicUsize,
    /// Source of the request ids of [`TestCluster::run`].
    next_id: AtomicU64,
}

impl TestCluster {
    pub fn new(shard_count: u32) -> Arc<TestCluster> {
        Arc::new(TestCluster {
            shard_count,
            groups: (0..=shard_count)
                .map(|g| Mutex::new((Machine::new(GroupId(g), shard_count), MemCold::default())))
                .collect(),
            applied: (0..shard_count).map(|_| watch::channel(0).0).collect(),
            dropped_through: (0..shard_count).map(|_| AtomicU64::new(0)).collect(),
            clock_offset_ms: AtomicI64::new(0),
            fault: Mutex::new(None),
            failing_reads: AtomicUsize::new(0),
            ready: AtomicBool::new(true),
            submits: AtomicUsize::new(0),
            browsing_reads: AtomicUsize::new(0),
            browsing_read_delay_ms: AtomicU64::new(0),
            feed_reads: Mutex::new(vec![Vec::new(); shard_count as usize]),
            rereads: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    /// The cluster's clock: the time leaders would stamp on commands.
    pub fn now_ms(&self) -> i64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        wall + self.clock_offset_ms.load(Ordering::SeqCst)
    }

    /// Moves the cluster's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock_offset_ms.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap() = fault;
    }

    /// The next `count` reads fail as unavailable.
    pub fn fail_reads(&self, count: usize) {
        self.failing_reads.store(count, Ordering::SeqCst);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Drops every change record written so far from the feed, as retention does: a read from
    /// before them answers `Compacted`.
    pub fn drop_records(&self) {
        for (shard, last) in self.last_indexes() {
            self.dropped_through[shard as usize].store(last, Ordering::SeqCst);
        }
    }

    pub fn submits(&self) -> usize {
        self.submits.load(Ordering::SeqCst)
    }

    pub fn browsing_reads(&self) -> usize {
        self.browsing_reads.load(Ordering::SeqCst)
    }

    pub fn set_browsing_read_delay(&self, delay: Duration) {
        self.browsing_read_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// The `after_index` of every feed read of `shard` so far, in order.
    pub fn feed_reads(&self, shard: u32) -> Vec<u64> {
        self.feed_reads.lock().unwrap()[shard as usize].clone()
    }

    /// Pages of full shard re-reads answered so far.
    pub fn rereads(&self) -> usize {
        self.rereads.load(Ordering::SeqCst)
    }

    fn group(&self, group: GroupId) -> MutexGuard<'_, (Machine, MemCold)> {
        self.groups[group.0 as usize].lock().unwrap()
    }

    /// Answers `query` from `group`'s state at the cluster's clock.
    pub fn read_now(&self, group: GroupId, query: &Query) -> Answer {
        let g = self.group(group);
        g.0.query(query, self.now_ms(), &g.1).expect("the in-memory cold store reads")
    }

    /// The last applied index of `group`.
    pub fn last_index(&self, group: GroupId) -> u64 {
        self.group(group).0.last_index()
    }

    /// Shard → its last applied index.
    pub fn last_indexes(&self) -> BTreeMap<u32, u64> {
        (0..self.shard_count).map(|s| (s, self.last_index(GroupId::shard(s)))).collect()
    }

    /// Applies `command` under a request id of its own, as the next entry of its group's log.
    pub fn run(&self, command: Command) -> Outcome {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut request_id = [0xffu8; 16];
        request_id[8..].copy_from_slice(&n.to_be_bytes());
        self.apply(Proposal { request_id: Some(RequestId(request_id)), fingerprint: n, keyed: true, command })
    }

    fn apply(&self, proposal: Proposal) -> Outcome {
        self.submits.fetch_add(1, Ordering::SeqCst);
        let group = proposal.command.group(self.shard_count);
        let mut g = self.group(group);
        let (machine, cold) = &mut *g;
        let index = machine.last_index() + 1;
        let applied =
            machine.apply(index, &Request::single(self.now_ms(), proposal), cold).expect("the cold store reads");
        cold.write(applied.writes);
        let outcome = applied.outcomes.into_iter().next().expect("one outcome per proposal");
        machine.check_invariants().expect("the state machine's invariants hold after every command");
        if let Some(shard) = group.as_shard() {
            self.applied[shard as usize].send_replace(index);
        }
        outcome
    }

    fn check_fault(&self) -> Result<(), ClusterError> {
        let fault = *self.fault.lock().unwrap();
        match fault {
            None => Ok(()),
            Some(Fault::Unavailable) => Err(ClusterError::Unavailable("no leader for the group".into())),
            Some(Fault::Internal) => Err(ClusterError::Internal("secret internal detail".into())),
            Some(Fault::Panic) => panic!("injected panic"),
        }
    }

    fn read(&self, group: GroupId, query: &Query) -> Result<Answer, ClusterError> {
        self.check_fault()?;
        if self.failing_reads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(ClusterError::Unavailable("injected".into()));
        }
        if matches!(query, Query::AllEvents { .. }) {
            self.rereads.fetch_add(1, Ordering::SeqCst);
        }
        Ok(self.read_now(group, query))
    }

    /// The feed page after `after_index`: `Compacted` if records it needs were dropped.
    fn page(&self, shard: u32, after_index: u64, limit: usize) -> Result<ChangesPage, ClusterError> {
        self.check_fault()?;
        let dropped = self.dropped_through[shard as usize].load(Ordering::SeqCst);
        let answer = self.read_now(GroupId::shard(shard), &Query::Changes { after_index, limit });
        match answer {
            Answer::Changes(ChangesPage::Records { last_index, .. }) if after_index < dropped => {
                Ok(ChangesPage::Compacted { oldest_retained_index: dropped + 1, last_index })
            }
            Answer::Changes(page) => Ok(page),
            other => Err(ClusterError::Internal(format!("a changes query answered {other:?}"))),
        }
    }

    async fn feed(
        &self,
        shard: u32,
        after_index: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangesPage, ClusterError> {
        self.feed_reads.lock().unwrap()[shard as usize].push(after_index);
        // Subscribe before reading, so a command applied in between wakes the wait below.
        let mut applied = self.applied[shard as usize].subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let page = self.page(shard, after_index, limit)?;
            if !matches!(&page, ChangesPage::Records { changes, .. } if changes.is_empty()) {
                return Ok(page);
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(page),
            }
        }
    }
}

impl Cluster for TestCluster {
    fn shard_count(&self) -> u32 {
        self.shard_count
    }

    fn submit(&self, submit: Submit) -> BoxFuture<'_, Result<Outcome, ClusterError>> {
        Box::pin(async move {
            self.check_fault()?;
            let Submit { command, request_id, fingerprint, keyed } = submit;
            Ok(self.apply(Proposal { request_id: Some(request_id), fingerprint, keyed, command }))
        })
    }

    fn query(&self, group: GroupId, query: Query, _: Consistency) -> BoxFuture<'_, Result<Answer, ClusterError>> {
        Box::pin(async move {
            if matches!(query, Query::Event(_) | Query::Seats(_)) {
                self.browsing_reads.fetch_add(1, Ordering::SeqCst);
                let delay = self.browsing_read_delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
            }
            self.read(group, &query)
        })
    }

    fn changes(
        &self,
        shard: u32,
        after_index: u64,
        limit: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ChangesPage, ClusterError>> {
        Box::pin(self.feed(shard, after_index, limit, wait))
    }

    fn readiness(&self) -> BoxFuture<'_, Readiness> {
        let ready = self.ready.load(Ordering::SeqCst);
        let groups = (0..=self.shard_count)
            .map(|g| GroupHealth {
                group: GroupId(g),
                leader: (ready || g == 0).then_some(1),
                last_applied_index: self.last_index(GroupId(g)),
            })
            .collect();
        Box::pin(async move { Readiness { ready, groups } })
    }
}
