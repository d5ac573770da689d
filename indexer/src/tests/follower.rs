use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use raft_store::{shard_of, EventId};
use seams::SearchBackend;

use seams::TestCluster;

use super::catalog::Catalog;
use super::query;
use crate::{Document, EmbeddedIndex, Follower, FollowerConfig, Index};

const SHARDS: u32 = 3;
/// How long a change may take to reach the index here; the product promises 2 s.
const DEADLINE: Duration = Duration::from_secs(10);

fn config() -> FollowerConfig {
    FollowerConfig {
        poll_wait: Duration::from_millis(500),
        retry_delay_min: Duration::from_millis(10),
        retry_delay_max: Duration::from_millis(100),
        ..FollowerConfig::default()
    }
}

fn start(cluster: &Arc<TestCluster>, index: &Arc<EmbeddedIndex>) -> Follower {
    Follower::start(cluster.clone(), index.clone(), config())
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The event's summary as the index serves it, if a search for `name` finds it under that name.
async fn indexed(index: &EmbeddedIndex, id: &EventId, name: &str) -> Option<raft_store::EventSummary> {
    let page = index.search(query(Some(name))).await.ok()?;
    page.hits.into_iter().map(|h| h.event).find(|e| &e.event_id == id && e.name == name)
}

/// Waits until every event of the cluster is indexed exactly as the cluster has it now.
async fn wait_until_current(cluster: &TestCluster, index: &EmbeddedIndex, ids: &[EventId]) {
    for id in ids {
        let expected = Document::from_view(&cluster.event(id), 0, 0).summary();
        eventually(&format!("{id} to be indexed as {expected:?}"), || async {
            indexed(index, id, &expected.name).await.filter(|e| *e == expected)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_and_changed_events_reach_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::new(SHARDS);
    let index = EmbeddedIndex::open(dir.path()).unwrap();
    let follower = start(&cluster, &index);

    let ids: Vec<EventId> = (0..6).map(|i| cluster.create_event(&format!("Show{i}"), "Lisbon", i + 1)).collect();
    assert!(ids.iter().map(|id| shard_of(id, SHARDS)).collect::<std::collections::BTreeSet<_>>().len() > 1);
    wait_until_current(&cluster, &index, &ids).await;

    // Reads that fail are retried; nothing is skipped.
    cluster.fail_reads(3);
    cluster.rename(&ids[0], "Renamed");
    cluster.hold(&ids[1], 7);
    wait_until_current(&cluster, &index, &ids).await;
    assert!(indexed(&index, &ids[0], "Show0").await.is_none(), "the old name is gone");
    assert_eq!(indexed(&index, &ids[1], "Show1").await.unwrap().available, 93);
    assert_eq!(index.len(), 6);

    let last = cluster.last_indexes();
    eventually("checkpoints to reach every shard's last index", || async {
        (index.checkpoints().await.ok()? == last).then_some(())
    })
    .await;
    follower.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_feed_triggers_a_full_reread_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Two shards of about 130 events each: re-reads take more than one page of 100.
    let cluster = TestCluster::new(2);
    let mut ids: Vec<EventId> = (0..260).map(|i| cluster.create_event(&format!("Gig{i}"), "Porto", i + 1)).collect();
    cluster.rename(&ids[3], "Encore");
    // Every record so far is gone: only a full re-read can find these events.
    cluster.drop_records();
    let at = cluster.last_indexes();

    let index = EmbeddedIndex::open(dir.path()).unwrap();
    let follower = start(&cluster, &index);
    eventually("the re-read to write every event", || async { (index.len() == 260).then_some(()) }).await;
    wait_until_current(&cluster, &index, &ids).await;
    assert!(cluster.rereads() >= 2 * 3, "each shard was re-read in two pages and an empty one");
    eventually("checkpoints at the re-read's index", || async {
        (index.checkpoints().await.ok()? == at).then_some(())
    })
    .await;

    // The feed goes on from there.
    ids.push(cluster.create_event("Afterparty", "Porto", 300));
    cluster.rename(&ids[5], "Matinee");
    wait_until_current(&cluster, &index, &ids).await;
    assert_eq!(index.len(), 261);
    follower.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_resumes_from_the_stored_checkpoint_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::new(SHARDS);
    let mut ids: Vec<EventId> = (0..9).map(|i| cluster.create_event(&format!("Play{i}"), "Faro", i + 1)).collect();
    let stored = {
        let index = EmbeddedIndex::open(dir.path()).unwrap();
        let follower = start(&cluster, &index);
        wait_until_current(&cluster, &index, &ids).await;
        let last = cluster.last_indexes();
        eventually("checkpoints to cover every record", || async {
            (index.checkpoints().await.ok()? == last).then_some(())
        })
        .await;
        follower.stop().await;
        index.checkpoints().await.unwrap()
    };

    // While no follower runs: changes, bookings and new events.
    cluster.rename(&ids[0], "Revival");
    cluster.hold(&ids[4], 10);
    ids.push(cluster.create_event("Premiere", "Faro", 30));
    let reads_before: Vec<usize> = (0..SHARDS).map(|s| cluster.feed_reads(s).len()).collect();

    let index = EmbeddedIndex::open(dir.path()).unwrap();
    assert_eq!(index.checkpoints().await.unwrap(), stored, "checkpoints survive the restart");
    let follower = start(&cluster, &index);
    wait_until_current(&cluster, &index, &ids).await;
    for shard in 0..SHARDS {
        // The first feed read after the restart starts at the stored checkpoint, not at zero.
        let first = cluster.feed_reads(shard)[reads_before[shard as usize]];
        assert_eq!(Some(&first), stored.get(&shard), "shard {shard}");
    }
    assert_eq!(cluster.rereads(), 0, "no re-read was needed");
    assert!(indexed(&index, &ids[0], "Play0").await.is_none(), "the old name is gone");
    assert_eq!(index.len(), 10);
    follower.stop().await;
}

/// Events named `{name}0`, `{name}1`, … until every shard has one; one per shard, shard order
/// aside.
fn one_event_per_shard(cluster: &TestCluster, name: &str, city: &str) -> Vec<EventId> {
    let mut ids: Vec<EventId> = Vec::new();
    for i in 0.. {
        let id = cluster.create_event(&format!("{name}{i}"), city, i + 1);
        if !ids.iter().any(|known| shard_of(known, SHARDS) == shard_of(&id, SHARDS)) {
            ids.push(id);
        }
        if ids.len() == SHARDS as usize {
            break;
        }
    }
    ids
}

/// An embedded index that records when each write started and which shards' checkpoints it
/// carried, and refuses every write carrying a document of `poison`, as Elasticsearch refuses a
/// document its mapping cannot take.
struct Recording {
    inner: Arc<EmbeddedIndex>,
    poison: Option<EventId>,
    writes: std::sync::Mutex<Vec<(tokio::time::Instant, Vec<u32>)>>,
}

impl Recording {
    fn new(inner: &Arc<EmbeddedIndex>, poison: Option<EventId>) -> Arc<Recording> {
        Arc::new(Recording { inner: inner.clone(), poison, writes: Default::default() })
    }
}

impl SearchBackend for Recording {
    fn search(&self, query: seams::SearchQuery) -> seams::BoxFuture<'_, Result<seams::SearchPage, seams::SearchError>> {
        self.inner.search(query)
    }
}

impl Index for Recording {
    fn apply(
        &self,
        docs: Vec<Document>,
        checkpoints: crate::Checkpoints,
    ) -> seams::BoxFuture<'_, Result<(), crate::IndexError>> {
        let shards = checkpoints.keys().copied().collect();
        self.writes.lock().unwrap().push((tokio::time::Instant::now(), shards));
        if docs.iter().any(|d| Some(&d.event_id) == self.poison.as_ref()) {
            let refused = crate::IndexError::Rejected { status: 400, detail: "mapper_parsing_exception".into() };
            return Box::pin(async move { Err(refused) });
        }
        self.inner.apply(docs, checkpoints)
    }

    fn checkpoints(&self) -> seams::BoxFuture<'_, Result<crate::Checkpoints, crate::IndexError>> {
        self.inner.checkpoints()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_shards_share_index_writes_that_start_an_interval_apart() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::new(SHARDS);
    // An event on every shard.
    let ids = one_event_per_shard(&cluster, "Fest", "Braga");
    let inner = EmbeddedIndex::open(dir.path()).unwrap();
    let recording = Recording::new(&inner, None);
    let interval = Duration::from_millis(200);
    let follower = Follower::start(
        cluster.clone(),
        recording.clone(),
        FollowerConfig { write_interval_min: interval, ..config() },
    );

    // Every shard changes every 10 ms for 2 s.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut round = 0;
    while tokio::time::Instant::now() < until {
        for id in &ids {
            cluster.rename(id, &format!("Fest round {round}"));
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_until_current(&cluster, &inner, &ids).await;
    follower.stop().await;

    let writes = recording.writes.lock().unwrap().clone();
    for pair in writes.windows(2) {
        let apart = pair[1].0 - pair[0].0;
        assert!(apart >= interval, "two index writes started {apart:?} apart, under the {interval:?} interval");
    }
    assert!(
        writes.iter().any(|(_, shards)| shards.len() == SHARDS as usize),
        "the pages of every shard shared a write at least once: {writes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_keeps_failing_does_not_hold_back_the_other_shards() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::new(SHARDS);
    let ids = one_event_per_shard(&cluster, "Feira", "Evora");
    let inner = EmbeddedIndex::open(dir.path()).unwrap();
    let poison = ids[0].clone();
    let refusing = Recording::new(&inner, Some(poison.clone()));
    // The refused shard retries well within the interval, so it has a page waiting at every write.
    let config = FollowerConfig { write_interval_min: Duration::from_millis(200), ..config() };
    let follower = Follower::start(cluster.clone(), refusing, config);

    wait_until_current(&cluster, &inner, &ids[1..]).await;
    for id in &ids[1..] {
        cluster.rename(id, "Renamed while one shard fails");
    }
    wait_until_current(&cluster, &inner, &ids[1..]).await;
    assert!(indexed(&inner, &poison, "Feira0").await.is_none(), "the refused event never reached the index");
    follower.stop().await;
}
