//! A `Cluster` of real state machines without Raft, for the follower's tests: one `Machine` per
//! group behind a mutex, consecutive log indexes, the wall clock, a long-polling change feed,
//! and two faults a real store has: dropped change records, and reads that fail.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::{BoxFuture, Cluster, ClusterError, Consistency, GroupHealth, Readiness, Submit};
use raft_store::{
    shard_of, Answer, ChangesPage, Command, EventId, EventPatch, EventSpec, EventView, GeoPoint, GroupId, Machine,
    Outcome, Proposal, Query, Request, RequestId, Section, SectionKind, SectionPrice, Selection, UserId, Venue,
    VenueId,
};
use tokio::sync::watch;

use crate::document::usd;

const DAY_MS: i64 = 24 * 3_600_000;

pub(crate) struct TestCluster {
    shard_count: u32,
    /// Index `g` holds group `GroupId(g)`: the meta group, then the shards.
    groups: Vec<Mutex<Machine>>,
    /// Per shard, the last applied index: the feed waits on it.
    applied: Vec<watch::Sender<u64>>,
    /// Per shard, records at or below this index are gone from the feed.
    dropped_through: Vec<AtomicU64>,
    /// Reads (`query`) still to fail.
    failing_reads: AtomicUsize,
    /// Per shard, the `after_index` of every feed read, in order.
    feed_reads: Mutex<Vec<Vec<u64>>>,
    /// Pages of full shard re-reads answered.
    rereads: AtomicUsize,
    next_id: AtomicU64,
}

impl TestCluster {
    pub(crate) fn new(shard_count: u32) -> Arc<TestCluster> {
        Arc::new(TestCluster {
            shard_count,
            groups: (0..=shard_count).map(|g| Mutex::new(Machine::new(GroupId(g), shard_count))).collect(),
            applied: (0..shard_count).map(|_| watch::channel(0).0).collect(),
            dropped_through: (0..shard_count).map(|_| AtomicU64::new(0)).collect(),
            failing_reads: AtomicUsize::new(0),
            feed_reads: Mutex::new(vec![Vec::new(); shard_count as usize]),
            rereads: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    fn group(&self, group: GroupId) -> MutexGuard<'_, Machine> {
        self.groups[group.0 as usize].lock().unwrap()
    }

    pub(crate) fn now_ms() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
    }

    /// Applies a command as the next entry of its group's log.
    pub(crate) fn run(&self, command: Command) -> Outcome {
        let group = command.group(self.shard_count);
        let mut machine = self.group(group);
        let index = machine.last_index() + 1;
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut request_id = [0u8; 16];
        request_id[..8].copy_from_slice(&n.to_be_bytes());
        let proposal = Proposal { request_id: Some(RequestId(request_id)), fingerprint: n, command };
        let outcome = machine.apply(index, &Request::single(Self::now_ms(), proposal)).remove(0);
        if let Some(shard) = group.as_shard() {
            self.applied[shard as usize].send_replace(index);
        }
        outcome
    }

    /// Creates an event at a general-admission hall in `city`, `days` from now.
    pub(crate) fn create_event(&self, name: &str, city: &str, days: i64) -> EventId {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let event_id = EventId::from_u64(n);
        let venue = Venue {
            venue_id: VenueId::from_u64(n),
            name: format!("{city} Hall"),
            city: city.into(),
            country: "PT".into(),
            location: GeoPoint { lat: 38.7, lon: -9.1 },
            sections: vec![Section {
                id: "GA".into(),
                name: "Floor".into(),
                kind: SectionKind::General { capacity: 100 },
            }],
        };
        let spec = EventSpec {
            event_id: event_id.clone(),
            name: name.into(),
            description: format!("{name} live"),
            category: "music".into(),
            performers: vec!["The Testers".into()],
            venue,
            starts_at_ms: Self::now_ms() + days * DAY_MS,
            on_sale_at_ms: 0,
            prices: vec![SectionPrice { section: "GA".into(), price: usd(2_500) }],
            per_user_limit: None,
            high_traffic: false,
        };
        let outcome = self.run(Command::CreateEvent(spec));
        assert!(matches!(outcome, Outcome::Event(_)), "{outcome:?}");
        event_id
    }

    pub(crate) fn rename(&self, event_id: &EventId, name: &str) {
        let patch = EventPatch { name: Some(name.into()), ..EventPatch::default() };
        let outcome = self.run(Command::UpdateEvent { event_id: event_id.clone(), patch });
        assert!(matches!(outcome, Outcome::Event(_)), "{outcome:?}");
    }

    pub(crate) fn hold(&self, event_id: &EventId, quantity: u32) {
        let outcome = self.run(Command::Hold {
            event_id: event_id.clone(),
            user: UserId::parse("alice").unwrap(),
            selection: Selection::General { section: "GA".into(), quantity },
            ttl_ms: DAY_MS,
            access: None,
        });
        assert!(matches!(outcome, Outcome::Hold(_)), "{outcome:?}");
    }

    pub(crate) fn event(&self, event_id: &EventId) -> EventView {
        let group = GroupId::shard(shard_of(event_id, self.shard_count));
        match self.group(group).query(&Query::Event(event_id.clone()), Self::now_ms()) {
            Answer::Event(Some(view)) => *view,
            other => panic!("{other:?}"),
        }
    }

    pub(crate) fn last_indexes(&self) -> BTreeMap<u32, u64> {
        (0..self.shard_count).map(|s| (s, self.group(GroupId::shard(s)).last_index())).collect()
    }

    /// Drops every change record written so far from the feed, as retention does.
    pub(crate) fn drop_records(&self) {
        for (shard, last) in self.last_indexes() {
            self.dropped_through[shard as usize].store(last, Ordering::SeqCst);
        }
    }

    pub(crate) fn fail_reads(&self, count: usize) {
        self.failing_reads.store(count, Ordering::SeqCst);
    }

    pub(crate) fn feed_reads(&self, shard: u32) -> Vec<u64> {
        self.feed_reads.lock().unwrap()[shard as usize].clone()
    }

    pub(crate) fn rereads(&self) -> usize {
        self.rereads.load(Ordering::SeqCst)
    }

    fn read(&self, group: GroupId, query: &Query) -> Result<Answer, ClusterError> {
        let failing = self.failing_reads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(ClusterError::Unavailable("injected".into()));
        }
        if matches!(query, Query::AllEvents { .. }) {
            self.rereads.fetch_add(1, Ordering::SeqCst);
        }
        Ok(self.group(group).query(query, Self::now_ms()))
    }

    /// The feed page after `after_index`: `Compacted` if records it needs were dropped.
    fn page(&self, shard: u32, after_index: u64, limit: usize) -> ChangesPage {
        let machine = self.group(GroupId::shard(shard));
        let dropped = self.dropped_through[shard as usize].load(Ordering::SeqCst);
        match machine.query(&Query::Changes { after_index, limit }, Self::now_ms()) {
            Answer::Changes(ChangesPage::Records { last_index, .. }) if after_index < dropped => {
                ChangesPage::Compacted { oldest_retained_index: dropped + 1, last_index }
            }
            Answer::Changes(page) => page,
            other => panic!("a changes query answered {other:?}"),
        }
    }

    async fn feed(&self, shard: u32, after_index: u64, limit: usize, wait: Duration) -> ChangesPage {
        self.feed_reads.lock().unwrap()[shard as usize].push(after_index);
        // Subscribe before reading, so a command applied in between wakes the wait below.
        let mut applied = self.applied[shard as usize].subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let page = self.page(shard, after_index, limit);
            if !matches!(&page, ChangesPage::Records { changes, .. } if changes.is_empty()) {
                return page;
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => continue,
                _ => return page,
            }
        }
    }
}

impl Cluster for TestCluster {
    fn shard_count(&self) -> u32 {
        self.shard_count
    }

    fn submit(&self, submit: Submit) -> BoxFuture<'_, Result<Outcome, ClusterError>> {
        Box::pin(async move { Ok(self.run(submit.command)) })
    }

    fn query(&self, group: GroupId, query: Query, _: Consistency) -> BoxFuture<'_, Result<Answer, ClusterError>> {
        Box::pin(async move { self.read(group, &query) })
    }

    fn changes(
        &self,
        shard: u32,
        after_index: u64,
        limit: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ChangesPage, ClusterError>> {
        Box::pin(async move { Ok(self.feed(shard, after_index, limit, wait).await) })
    }

    fn readiness(&self) -> BoxFuture<'_, Readiness> {
        let groups = (0..=self.shard_count)
            .map(|g| GroupHealth {
                group: GroupId(g),
                leader: Some(1),
                last_applied_index: self.group(GroupId(g)).last_index(),
            })
            .collect();
        Box::pin(async move { Readiness { ready: true, groups } })
    }
}
