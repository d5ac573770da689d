//! A `Cluster` of real state machines without Raft: one `Machine` per group behind a mutex,
//! a counter for log indexes, and the test's clock. Raft itself is tested in raft-store and node;
//! here the api meets the real booking rules.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use raft_store::{Answer, ChangesPage, GroupId, Machine, Outcome, Proposal, Query, Request};
use tokio::sync::watch;

use crate::cluster::{BoxFuture, Cluster, ClusterError, GroupHealth, Readiness, Submit};
use crate::dto::now_ms;
use crate::Consistency;

/// A failure to inject into every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Unavailable,
    Internal,
    Panic,
}

pub(crate) struct TestCluster {
    shard_count: u32,
    /// Index `g` holds group `GroupId(g)`: the meta group, then the shards.
    groups: Vec<Mutex<Machine>>,
    /// Per shard, the last applied index: the change feed waits on it.
    applied: Vec<watch::Sender<u64>>,
    /// Added to the wall clock, so a test can move time forward without sleeping.
    clock_offset_ms: AtomicI64,
    fault: Mutex<Option<Fault>>,
    submits: AtomicUsize,
    /// Reads of event details and seat maps (what the read cache stands in front of).
    browsing_reads: AtomicUsize,
    /// Each such read takes this long, so concurrent requests overlap.
    browsing_read_delay_ms: AtomicU64,
    /// The next feed read answers `Compacted` once.
    compact_next_feed: AtomicBool,
    ready: AtomicBool,
}

impl TestCluster {
    pub(crate) fn new(shard_count: u32) -> Arc<TestCluster> {
        let groups = (0..=shard_count).map(|g| Mutex::new(Machine::new(GroupId(g), shard_count))).collect();
        let applied = (0..shard_count).map(|_| watch::channel(0).0).collect();
        Arc::new(TestCluster {
            shard_count,
            groups,
            applied,
            clock_offset_ms: AtomicI64::new(0),
            fault: Mutex::new(None),
            submits: AtomicUsize::new(0),
            browsing_reads: AtomicUsize::new(0),
            browsing_read_delay_ms: AtomicU64::new(0),
            compact_next_feed: AtomicBool::new(false),
            ready: AtomicBool::new(true),
        })
    }

    pub(crate) fn now_ms(&self) -> i64 {
        now_ms() + self.clock_offset_ms.load(Ordering::SeqCst)
    }

    /// Moves the cluster's clock (the time leaders stamp on commands) forward.
    pub(crate) fn advance(&self, by: Duration) {
        self.clock_offset_ms.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    pub(crate) fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap() = fault;
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub(crate) fn compact_next_feed(&self) {
        self.compact_next_feed.store(true, Ordering::SeqCst);
    }

    /// Commands that reached the store so far, refused ones included.
    pub(crate) fn submits(&self) -> usize {
        self.submits.load(Ordering::SeqCst)
    }

    /// Reads of event details and seat maps so far.
    pub(crate) fn browsing_reads(&self) -> usize {
        self.browsing_reads.load(Ordering::SeqCst)
    }

    pub(crate) fn set_browsing_read_delay(&self, delay: Duration) {
        self.browsing_read_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn group(&self, group: GroupId) -> MutexGuard<'_, Machine> {
        self.groups[group.0 as usize].lock().unwrap()
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

    fn apply(&self, submit: Submit) -> Result<Outcome, ClusterError> {
        self.check_fault()?;
        self.submits.fetch_add(1, Ordering::SeqCst);
        let group = submit.command.group(self.shard_count);
        let mut machine = self.group(group);
        let index = machine.last_index() + 1;
        let proposal =
            Proposal { request_id: Some(submit.request_id), fingerprint: submit.fingerprint, command: submit.command };
        let outcome = machine.apply(index, &Request::single(self.now_ms(), proposal)).remove(0);
        machine.check_invariants().expect("the state machine's invariants hold after every command");
        if let Some(shard) = group.as_shard() {
            self.applied[shard as usize].send_replace(index);
        }
        Ok(outcome)
    }

    fn read(&self, group: GroupId, query: &Query) -> Result<Answer, ClusterError> {
        self.check_fault()?;
        Ok(self.group(group).query(query, self.now_ms()))
    }

    async fn feed(
        &self,
        shard: u32,
        after_index: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangesPage, ClusterError> {
        if self.compact_next_feed.swap(false, Ordering::SeqCst) {
            let last_index = self.group(GroupId::shard(shard)).last_index();
            return Ok(ChangesPage::Compacted { oldest_retained_index: last_index, last_index });
        }
        // Subscribe before reading, so a command applied in between wakes the wait below.
        let mut applied = self.applied[shard as usize].subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let page = match self.read(GroupId::shard(shard), &Query::Changes { after_index, limit })? {
                Answer::Changes(page) => page,
                other => panic!("a changes query answered {other:?}"),
            };
            let empty = matches!(&page, ChangesPage::Records { changes, .. } if changes.is_empty());
            if !empty {
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
        Box::pin(async move { self.apply(submit) })
    }

    fn query(
        &self,
        group: GroupId,
        query: Query,
        _consistency: Consistency,
    ) -> BoxFuture<'_, Result<Answer, ClusterError>> {
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
                last_applied_index: self.group(GroupId(g)).last_index(),
            })
            .collect();
        Box::pin(async move { Readiness { ready, groups } })
    }
}
