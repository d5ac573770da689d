//! The change-feed consumer: one loop per shard follows the committed change records in
//! log-index order from the checkpoint stored in the index, re-reads the events they name, and
//! writes the documents with the new checkpoint. The shards' pages go through one committer,
//! which writes every page waiting as one index write, at most once per `write_interval_min`: a
//! busy cluster costs the index one commit (one fsync, one new segment) per interval, however
//! many shards it has.
//!
//! Architecture invariant: a checkpoint is written only together with (or after) the documents
//! of every record it covers, and a document carries the highest log index of the records that
//! made it be read, so a crash or restart replays records and never skips one, and a replay
//! never regresses a document.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use raft_store::{Answer, Change, ChangesPage, EventId, GroupId, Query, LIST_LIMIT_MAX};
use seams::{Cluster, ClusterError, Consistency};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::document::Document;
use crate::error::IndexError;
use crate::index::{merge_checkpoints, Checkpoints, Index};

/// Change records one feed read asks for at most.
pub const FEED_PAGE_RECORDS_MAX: usize = 1_000;
/// Events one page of a full re-read asks for (the store's list limit).
const REREAD_PAGE_EVENTS: usize = LIST_LIMIT_MAX;

#[derive(Clone, Debug)]
pub struct FollowerConfig {
    /// Change records per feed read, at most [`FEED_PAGE_RECORDS_MAX`].
    pub page_records_max: usize,
    /// Index writes start at least this far apart; the pages of every shard that arrive meanwhile
    /// share the next one, so a busy cluster's records cost one commit (one fsync, one new
    /// segment) per interval instead of one per shard and page. A page after a quiet spell is
    /// written at once, so this bounds the extra delay to search freshness, it does not add to
    /// every write.
    pub write_interval_min: Duration,
    /// How long a feed read waits for a record before it answers empty.
    pub poll_wait: Duration,
    /// Event reads in flight at once while a page is turned into documents.
    pub reads_in_flight_max: usize,
    /// Backoff after a failure: doubles from the first value to the second.
    pub retry_delay_min: Duration,
    pub retry_delay_max: Duration,
}

impl Default for FollowerConfig {
    fn default() -> Self {
        FollowerConfig {
            page_records_max: FEED_PAGE_RECORDS_MAX,
            write_interval_min: Duration::from_millis(500),
            poll_wait: Duration::from_secs(5),
            reads_in_flight_max: 16,
            retry_delay_min: Duration::from_millis(100),
            retry_delay_max: Duration::from_secs(10),
        }
    }
}

/// Follows every shard until stopped or dropped. An index write in progress when it stops
/// completes on its own (documents and checkpoint together), so stopping at any moment is safe.
pub struct Follower {
    /// `None` once stopped.
    task: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts [`follow`] on the current tokio runtime.
    pub fn start(cluster: Arc<dyn Cluster>, index: Arc<dyn Index>, config: FollowerConfig) -> Follower {
        Follower { task: Some(tokio::spawn(follow(cluster, index, config))) }
    }

    /// Stops following and waits until the loops are gone.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // Cancelled is the expected outcome; a panic was already reported by the runtime.
            let _ = task.await;
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Follows every shard of `cluster` into `index`; runs until the future is dropped (use
/// [`Follower`] to run it as a task that stops on drop). Failures are logged and retried with
/// backoff: a record is never skipped.
pub async fn follow(cluster: Arc<dyn Cluster>, index: Arc<dyn Index>, config: FollowerConfig) {
    let shard_count = cluster.shard_count();
    // Each shard has one page in flight at most.
    let (pages, waiting) = mpsc::channel(shard_count.max(1) as usize);
    let committer = commit_pages(index.clone(), config.write_interval_min, waiting);
    let shared = Shared { cluster, index, config, pages };
    let shards = (0..shard_count).map(|shard| follow_shard(&shared, shard));
    futures_util::future::join(committer, futures_util::future::join_all(shards)).await;
}

struct Shared {
    cluster: Arc<dyn Cluster>,
    index: Arc<dyn Index>,
    config: FollowerConfig,
    /// Into the committer.
    pages: mpsc::Sender<Page>,
}

/// Documents and checkpoints on their way into the index, and where the write's outcome goes.
struct Page {
    docs: Vec<Document>,
    checkpoints: Checkpoints,
    written: oneshot::Sender<Result<(), Arc<IndexError>>>,
}

/// Writes the pages as they come, every page waiting in one index write, the writes starting at
/// least `interval` apart (a page after a quiet spell is written at once). After a round with a
/// failed write, the next round writes each page alone: one shard's page that keeps failing (a
/// document Elasticsearch rejects) must not hold back the others, as it would if every shared
/// write carried it. A round without a failure brings sharing back.
async fn commit_pages(index: Arc<dyn Index>, interval: Duration, mut pages: mpsc::Receiver<Page>) {
    let mut last_started: Option<Instant> = None;
    let mut alone = false;
    while let Some(first) = pages.recv().await {
        if let Some(last) = last_started {
            // Pages arriving meanwhile share this write.
            tokio::time::sleep_until(last + interval).await;
        }
        let mut waiting = vec![first];
        while let Ok(more) = pages.try_recv() {
            waiting.push(more);
        }
        last_started = Some(Instant::now());
        let writes = if alone { waiting.into_iter().map(|page| vec![page]).collect() } else { vec![waiting] };
        alone = false;
        for pages in writes {
            alone |= !write_pages(index.as_ref(), pages).await;
        }
    }
}

/// Writes `pages` as one index write and tells each page the outcome; whether it succeeded.
async fn write_pages(index: &dyn Index, pages: Vec<Page>) -> bool {
    let mut docs = Vec::new();
    let mut checkpoints = Checkpoints::new();
    let mut replies = Vec::with_capacity(pages.len());
    for page in pages {
        docs.extend(page.docs);
        merge_checkpoints(&mut checkpoints, page.checkpoints);
        replies.push(page.written);
    }
    let started = Instant::now();
    let count = docs.len() as u64;
    let pages_in = replies.len();
    let result = index.apply(docs, checkpoints).await.map_err(Arc::new);
    let ok = result.is_ok();
    if ok {
        metrics::histogram!("boxoffice_indexer_apply_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("boxoffice_indexer_pages_per_write").record(pages_in as f64);
        metrics::counter!("boxoffice_indexer_documents_total").increment(count);
    }
    for written in replies {
        // A shard loop that was stopped no longer waits; nothing to tell it.
        let _ = written.send(result.clone());
    }
    ok
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Index(#[from] Arc<IndexError>),
    #[error("the committer stopped")]
    CommitterStopped,
    #[error("unexpected answer: {0}")]
    Unexpected(&'static str),
}

async fn follow_shard(shared: &Shared, shard: u32) {
    let mut backoff = Backoff::new(&shared.config);
    let mut after = loop {
        match shared.index.checkpoints().await {
            Ok(checkpoints) => break checkpoints.get(&shard).copied().unwrap_or(0),
            Err(e) => {
                tracing::warn!(shard, error = %e, "reading the index's checkpoints failed; retrying");
                backoff.wait().await;
            }
        }
    };
    tracing::info!(shard, after, "following the change feed");
    backoff.reset();
    loop {
        match step(shared, shard, after).await {
            Ok(next) => {
                after = next;
                backoff.reset();
            }
            Err(e) => {
                tracing::warn!(shard, after, error = %e, "indexing the change feed failed; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// Reads one page of the feed after `after` and indexes it; returns the new checkpoint.
async fn step(shared: &Shared, shard: u32, after: u64) -> Result<u64, StepError> {
    let limit = shared.config.page_records_max.clamp(1, FEED_PAGE_RECORDS_MAX);
    match shared.cluster.changes(shard, after, limit, shared.config.poll_wait).await? {
        ChangesPage::Records { changes, last_index } => {
            let Some(through) = changes.last().map(|c| c.index) else {
                record_lag(shard, last_index, after);
                return Ok(after);
            };
            debug_assert!(changes.iter().all(|c| c.index > after), "the feed answers records after `after` only");
            let docs = read_events(shared, shard, touched(&changes)).await?;
            apply(shared, docs, Checkpoints::from([(shard, through)])).await?;
            record_lag(shard, last_index, through);
            Ok(through)
        }
        ChangesPage::Compacted { last_index, .. } => {
            tracing::warn!(shard, after, last_index, "change records were dropped; re-reading the whole shard");
            let resume = reread_shard(shared, shard).await?;
            record_lag(shard, last_index, resume);
            Ok(resume)
        }
    }
}

/// Each event the records name, with the highest log index that names it. A buyer's order or
/// ticket changes nothing a search document holds (its seats' records do).
fn touched(changes: &[Change]) -> BTreeMap<EventId, u64> {
    let mut touched = BTreeMap::new();
    for change in changes.iter().filter(|c| c.kind.is_public()) {
        let version = touched.entry(change.event_id.clone()).or_insert(change.index);
        *version = (*version).max(change.index);
    }
    touched
}

/// Reads each event once, linearizably: a replica behind the record could return an older state
/// than the version the document will carry.
async fn read_events(
    shared: &Shared,
    shard: u32,
    versions: BTreeMap<EventId, u64>,
) -> Result<Vec<Document>, StepError> {
    let reads = futures_util::stream::iter(versions)
        .map(|(id, version)| read_event(shared, shard, id, version))
        .buffered(shared.config.reads_in_flight_max.max(1));
    let docs: Vec<Option<Document>> = reads.try_collect().await?;
    Ok(docs.into_iter().flatten().collect())
}

async fn read_event(shared: &Shared, shard: u32, id: EventId, version: u64) -> Result<Option<Document>, StepError> {
    let query = Query::Event(id.clone());
    match shared.cluster.query(GroupId::shard(shard), query, Consistency::Linearizable).await? {
        Answer::Event(Some(view)) => Ok(Some(Document::from_view(&view, version, shard))),
        Answer::Event(None) => {
            // Events are never deleted; a record for an unknown event is a store bug, not ours.
            tracing::warn!(shard, event = %id, "a change record names an event its shard does not have");
            Ok(None)
        }
        _ => Err(StepError::Unexpected("an event read did not answer an event")),
    }
}

/// Writes every event of the shard, page by page, each document versioned with the log index
/// its page was read at; then the checkpoint, and returns it: the first page's index. That is
/// conservative: records after it are replayed, and a replayed record older than a later page's
/// read cannot regress its document.
async fn reread_shard(shared: &Shared, shard: u32) -> Result<u64, StepError> {
    let mut after: Option<EventId> = None;
    let mut first_index = None;
    loop {
        let page = Query::AllEvents { after: after.clone(), limit: REREAD_PAGE_EVENTS };
        let (events, last_index) =
            match shared.cluster.query(GroupId::shard(shard), page, Consistency::Linearizable).await? {
                Answer::AllEvents { events, last_index } => (events, last_index),
                _ => return Err(StepError::Unexpected("a shard re-read did not answer events")),
            };
        let resume = *first_index.get_or_insert(last_index);
        // Only an empty page ends the re-read: the store may cap pages below what was asked.
        let Some(last) = events.last() else {
            apply(shared, Vec::new(), Checkpoints::from([(shard, resume)])).await?;
            return Ok(resume);
        };
        after = Some(last.spec.event_id.clone());
        let docs = events.iter().map(|view| Document::from_view(view, last_index, shard)).collect();
        // No checkpoint yet: until the last page is in, the shard is not covered.
        apply(shared, docs, Checkpoints::new()).await?;
    }
}

/// Hands a page to the committer and waits until it is written with the pages of other shards.
async fn apply(shared: &Shared, docs: Vec<Document>, checkpoints: Checkpoints) -> Result<(), StepError> {
    let (written, outcome) = oneshot::channel();
    shared.pages.send(Page { docs, checkpoints, written }).await.map_err(|_| StepError::CommitterStopped)?;
    Ok(outcome.await.map_err(|_| StepError::CommitterStopped)??)
}

fn record_lag(shard: u32, last_index: u64, checkpoint: u64) {
    metrics::gauge!("boxoffice_indexer_lag_entries", "shard" => shard.to_string())
        .set(last_index.saturating_sub(checkpoint) as f64);
}

struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(config: &FollowerConfig) -> Backoff {
        let min = config.retry_delay_min.max(Duration::from_millis(1));
        Backoff { next: min, min, max: config.retry_delay_max.max(min) }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}
