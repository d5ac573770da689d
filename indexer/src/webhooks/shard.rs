//! One loop per shard: reads the change feed after the shard's position, turns its order and
//! ticket records into events, and hands each to the workers of the endpoints subscribed to it.
//! And what the shard's position is made of: how far records were handed out, which deliveries
//! of them are still pending, and which endpoints read the shard on their own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft_store::{ChangesPage, WebhookId};
use tokio::time::Instant;

use super::endpoint::{Delivery, Offer};
use super::event::{events_of, WebhookEvent};
use super::positions::Positions;
use super::registry::Snapshot;
use super::{lock, Shared, PAGE_RECORDS_MAX};

/// Backoff after a failed read: doubles from the first to the second.
const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(10);

/// What the shard's position is made of.
pub(super) struct ShardProgress {
    handoff: Mutex<Handoff>,
    /// Deliveries queued and not yet done, by log index. Locked after `handoff` when both are.
    pending: Arc<Mutex<BTreeMap<u64, usize>>>,
    /// The feed's last index as the latest read said, for the lag gauge.
    last_index: AtomicU64,
}

pub(super) struct Handoff {
    /// Every record through this index was handed out: queued on its endpoints, or left to an
    /// endpoint that reads the shard on its own.
    pub dispatched_through: u64,
    /// The endpoints that read this shard on their own (their queue was full), and the index
    /// through which each is done.
    pub lagging: BTreeMap<WebhookId, u64>,
}

impl ShardProgress {
    /// The shard as the saved positions left it.
    pub(super) fn resume(saved: &Positions, shard: u32) -> ShardProgress {
        let lagging =
            saved.lagging.iter().filter_map(|(id, shards)| Some((id.clone(), *shards.get(&shard)?))).collect();
        let dispatched_through = saved.shards.get(&shard).copied().unwrap_or(0);
        ShardProgress {
            handoff: Mutex::new(Handoff { dispatched_through, lagging }),
            pending: Arc::new(Mutex::new(BTreeMap::new())),
            last_index: AtomicU64::new(0),
        }
    }

    pub(super) fn handoff(&self) -> std::sync::MutexGuard<'_, Handoff> {
        lock(&self.handoff)
    }

    /// The index through which every delivery is done (none pending at or below it), and the
    /// lagging endpoints' own.
    pub(super) fn done_through(&self) -> (u64, BTreeMap<WebhookId, u64>) {
        let handoff = self.handoff();
        let pending = lock(&self.pending);
        let first_pending = pending.keys().next().copied();
        let done = first_pending.map_or(handoff.dispatched_through, |first| {
            debug_assert!(first <= handoff.dispatched_through, "a pending delivery was handed out");
            handoff.dispatched_through.min(first - 1)
        });
        (done, handoff.lagging.clone())
    }

    pub(super) fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Relaxed)
    }

    /// A delivery of the record at `index`, pending until it is dropped.
    fn pending(&self, index: u64) -> Pending {
        *lock(&self.pending).entry(index).or_default() += 1;
        Pending { pending: self.pending.clone(), index }
    }
}

/// Holds back the shard's position while a delivery of its record is queued or in flight.
pub(super) struct Pending {
    pending: Arc<Mutex<BTreeMap<u64, usize>>>,
    index: u64,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut pending = lock(&self.pending);
        if let Some(count) = pending.get_mut(&self.index) {
            *count -= 1;
            if *count == 0 {
                pending.remove(&self.index);
            }
        }
    }
}

/// Where to continue after the feed answered `Compacted`: before the oldest record it still
/// has, or (if that was refused too: the feed keeps no record, and names its last index) after.
pub(super) fn compacted_resume(after: u64, oldest_retained_index: u64) -> u64 {
    let before_oldest = oldest_retained_index.saturating_sub(1);
    if before_oldest > after {
        before_oldest
    } else {
        oldest_retained_index.max(after)
    }
}

/// Follows the shard until the task is stopped. Failures are logged and retried: a record is
/// never skipped, except those the feed no longer has.
pub(super) async fn follow(shared: Arc<Shared>, shard: u32) {
    let progress = &shared.shards[shard as usize];
    let mut after = progress.handoff().dispatched_through;
    let mut retry_delay = RETRY_DELAY_MIN;
    let mut next_read = Instant::now();
    loop {
        tokio::time::sleep_until(next_read).await;
        match step(&shared, shard, after).await {
            Ok((next, had_events)) => {
                if had_events {
                    next_read = Instant::now() + shared.config.page_interval_min;
                }
                after = next;
                retry_delay = RETRY_DELAY_MIN;
            }
            Err(error) => {
                tracing::warn!(shard, after, %error, "following the change feed for webhooks failed; retrying");
                tokio::time::sleep(retry_delay).await;
                retry_delay = (retry_delay * 2).min(RETRY_DELAY_MAX);
            }
        }
    }
}

/// Reads one page after `after` and hands its events out; the new position, and whether the
/// page had events.
async fn step(shared: &Shared, shard: u32, after: u64) -> Result<(u64, bool), seams::ClusterError> {
    let progress = &shared.shards[shard as usize];
    match shared.cluster.changes(shard, after, PAGE_RECORDS_MAX, shared.config.poll_wait).await? {
        ChangesPage::Records { changes, last_index } => {
            progress.last_index.store(last_index, Ordering::Relaxed);
            let Some(through) = changes.last().map(|c| c.index) else { return Ok((after, false)) };
            debug_assert!(changes.iter().all(|c| c.index > after), "the feed answers records after `after` only");
            let events: Vec<Arc<WebhookEvent>> = events_of(shard, &changes).into_iter().map(Arc::new).collect();
            let Some(written_ms) = events.iter().map(|e| e.time_ms).max() else {
                let mut handoff = progress.handoff();
                handoff.dispatched_through = handoff.dispatched_through.max(through);
                return Ok((through, false));
            };
            let margin_ms = shared.config.clock_margin.as_millis() as i64;
            let endpoints = shared.registry.fresh(written_ms.saturating_add(margin_ms)).await;
            shared.hand_out(shard, &events, &endpoints, through);
            Ok((through, true))
        }
        ChangesPage::Compacted { oldest_retained_index, last_index } => {
            progress.last_index.store(last_index, Ordering::Relaxed);
            let resume = compacted_resume(after, oldest_retained_index);
            tracing::warn!(
                shard,
                after,
                resume,
                "the change feed no longer has the records after the webhook position: their events are skipped"
            );
            let mut handoff = progress.handoff();
            handoff.dispatched_through = handoff.dispatched_through.max(resume);
            Ok((resume, false))
        }
    }
}

impl Shared {
    /// Queues each event on the workers of its endpoints, in order. An endpoint whose queue is
    /// full reads the shard on its own from that event on (`endpoint.rs`).
    fn hand_out(&self, shard: u32, events: &[Arc<WebhookEvent>], endpoints: &Snapshot, through: u64) {
        let progress = &self.shards[shard as usize];
        let margin_ms = self.config.clock_margin.as_millis() as i64;
        let mut handoff = progress.handoff();
        {
            let workers = lock(&self.workers);
            for event in events {
                for endpoint in endpoints.subscribers(event, margin_ms) {
                    let id = &endpoint.webhook_id;
                    if handoff.lagging.contains_key(id) {
                        continue;
                    }
                    // None: deleted since the read (its worker stopped).
                    let Some(worker) = workers.get(id) else { continue };
                    let delivery = Delivery { event: event.clone(), _pending: progress.pending(event.index) };
                    match worker.offer(shard, delivery) {
                        Offer::Queued | Offer::Stopped => {}
                        Offer::Full => {
                            let from = event.index - 1;
                            tracing::warn!(
                                webhook = %id,
                                shard,
                                after = from,
                                "a webhook endpoint is behind its queue: it reads the change feed on its own"
                            );
                            handoff.lagging.insert(id.clone(), from);
                        }
                    }
                }
            }
        }
        handoff.dispatched_through = handoff.dispatched_through.max(through);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compacted_feed_resumes_at_its_oldest_record_or_its_end() {
        assert_eq!(compacted_resume(5, 100), 99, "the oldest retained record is next");
        assert_eq!(compacted_resume(99, 100), 100, "refused there too: past it");
        assert_eq!(compacted_resume(300, 0), 300, "never backwards");
    }

    #[test]
    fn the_position_stops_short_of_the_first_pending_delivery() {
        let progress = ShardProgress::resume(&Positions::default(), 0);
        progress.handoff().dispatched_through = 10;
        let (first, second) = (progress.pending(4), progress.pending(7));
        assert_eq!(progress.done_through().0, 3);
        drop(first);
        assert_eq!(progress.done_through().0, 6);
        let again = progress.pending(7);
        drop(second);
        assert_eq!(progress.done_through().0, 6, "one of two deliveries of index 7 is still pending");
        drop(again);
        assert_eq!(progress.done_through().0, 10);
    }
}
