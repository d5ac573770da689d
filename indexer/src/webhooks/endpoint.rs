//! One worker per endpoint: delivers the endpoint's events one at a time, in feed order, each
//! retried with backoff until it is delivered or given up.
//!
//! The shards hand events to a bounded queue. When it is full, the endpoint is *behind* on that
//! shard: the shard stops queueing for it, and the worker, once its queue holds nothing more of
//! the shard, reads the shard's feed on its own from where it fell behind until it reaches what
//! the shard has handed out, and is then queued to again. So a slow or failing endpoint costs
//! the others nothing, and misses nothing (the feed keeps its records, within its retention).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft_store::{ChangesPage, Webhook};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::event::{events_of, WebhookEvent};
use super::shard::{compacted_resume, Pending};
use super::{lock, Shared, PAGE_RECORDS_MAX};

/// A worker that is behind looks at its shards again at least this often.
const BEHIND_RECHECK: Duration = Duration::from_secs(1);
/// Queued deliveries between two pages read for a shard the endpoint is behind on, so a busy
/// queue of other shards does not keep it behind for good.
const QUEUED_PER_CATCH_UP_PAGE: usize = 64;

/// An event queued for one endpoint; the shard's position waits for it while it exists.
pub(super) struct Delivery {
    pub event: Arc<WebhookEvent>,
    pub _pending: Pending,
}

pub(super) enum Offer {
    Queued,
    /// The queue is full: the endpoint is behind.
    Full,
    /// The worker stopped (its endpoint was deleted).
    Stopped,
}

/// The handle of an endpoint's worker; dropping it stops the worker.
pub(super) struct Worker {
    queue: mpsc::Sender<Delivery>,
    /// Per shard, deliveries queued or in flight.
    queued: Arc<[AtomicUsize]>,
    task: JoinHandle<()>,
}

impl Worker {
    fn spawn(shared: Arc<Shared>, endpoint: Arc<Webhook>) -> Worker {
        let (queue, receiver) = mpsc::channel(shared.config.queue_per_endpoint_max.max(1));
        let queued: Arc<[AtomicUsize]> = shared.shards.iter().map(|_| AtomicUsize::new(0)).collect();
        let task = tokio::spawn(run(shared, endpoint, receiver, queued.clone()));
        Worker { queue, queued, task }
    }

    pub(super) fn offer(&self, shard: u32, delivery: Delivery) -> Offer {
        let queued = &self.queued[shard as usize];
        queued.fetch_add(1, Ordering::SeqCst);
        match self.queue.try_send(delivery) {
            Ok(()) => Offer::Queued,
            Err(e) => {
                queued.fetch_sub(1, Ordering::SeqCst);
                match e {
                    mpsc::error::TrySendError::Full(_) => Offer::Full,
                    mpsc::error::TrySendError::Closed(_) => Offer::Stopped,
                }
            }
        }
    }

    fn queued_total(&self) -> usize {
        self.queued.iter().map(|q| q.load(Ordering::SeqCst)).sum()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    /// Starts a worker for each endpoint without one, and stops the workers of endpoints that
    /// are gone: their queued deliveries are dropped, and they are no longer behind anywhere.
    pub(super) fn sync_workers(self: &Arc<Self>, endpoints: &[Arc<Webhook>]) {
        let gone: Vec<(raft_store::WebhookId, Worker)> = {
            let mut workers = lock(&self.workers);
            for endpoint in endpoints {
                if !workers.contains_key(&endpoint.webhook_id) {
                    tracing::info!(webhook = %endpoint.webhook_id, url = %endpoint.url, "delivering to a webhook endpoint");
                    workers.insert(endpoint.webhook_id.clone(), Worker::spawn(self.clone(), endpoint.clone()));
                }
            }
            let stale: Vec<_> =
                workers.keys().filter(|id| !endpoints.iter().any(|e| &e.webhook_id == *id)).cloned().collect();
            stale.into_iter().filter_map(|id| workers.remove(&id).map(|w| (id, w))).collect()
        };
        for (id, worker) in gone {
            let dropped = worker.queued_total();
            drop(worker);
            metrics::counter!("boxoffice_webhook_deliveries_total", "result" => "dropped").increment(dropped as u64);
            tracing::info!(webhook = %id, dropped, "a webhook endpoint was deleted: nothing more is delivered to it");
        }
        for progress in &self.shards {
            progress.handoff().lagging.retain(|id, _| endpoints.iter().any(|e| &e.webhook_id == id));
        }
    }

    /// Delivers `event` to `endpoint`: attempts until one is answered 2xx, or the delivery is
    /// given up (logged, counted failed).
    async fn deliver(&self, endpoint: &Webhook, event: &WebhookEvent) {
        let config = &self.config;
        let first = Instant::now();
        let mut attempt = 1u32;
        loop {
            let error = match self.sender.send(endpoint, event).await {
                Ok(()) => {
                    metrics::counter!("boxoffice_webhook_deliveries_total", "result" => "delivered").increment(1);
                    tracing::debug!(webhook = %endpoint.webhook_id, event = %event.id, attempt, "webhook delivered");
                    return;
                }
                Err(error) => error,
            };
            if attempt >= config.attempts_max || first.elapsed() >= config.give_up_after {
                metrics::counter!("boxoffice_webhook_deliveries_total", "result" => "failed").increment(1);
                tracing::warn!(
                    webhook = %endpoint.webhook_id,
                    url = %endpoint.url,
                    event = %event.id,
                    event_type = event.event_type.as_str(),
                    attempts = attempt,
                    %error,
                    "a webhook delivery is given up"
                );
                return;
            }
            metrics::counter!("boxoffice_webhook_deliveries_total", "result" => "retried").increment(1);
            let delay = retry_delay(config.retry_delay_min, config.retry_delay_max, attempt);
            tracing::info!(
                webhook = %endpoint.webhook_id,
                event = %event.id,
                attempt,
                %error,
                retry_in_ms = delay.as_millis() as u64,
                "a webhook delivery failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// The wait after failed attempt `attempt` (from 1): `min` doubling up to `max`, drawn between
/// half of it and all of it, so endpoints back from an outage are not retried in lockstep.
pub(super) fn retry_delay(min: Duration, max: Duration, attempt: u32) -> Duration {
    let doubled = min.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max.max(min));
    let half_ms = (doubled.as_millis() / 2) as u64;
    Duration::from_millis(half_ms + rand::thread_rng().gen_range(0..=half_ms))
}

/// The worker: its queue in order; and the shards it is behind on, a page at a time, whenever
/// its queue holds nothing of them.
async fn run(
    shared: Arc<Shared>,
    endpoint: Arc<Webhook>,
    mut queue: mpsc::Receiver<Delivery>,
    queued: Arc<[AtomicUsize]>,
) {
    let mut since_catch_up = 0usize;
    loop {
        let idle = queued.iter().all(|q| q.load(Ordering::SeqCst) == 0);
        if idle || since_catch_up >= QUEUED_PER_CATCH_UP_PAGE {
            since_catch_up = 0;
            if catch_up(&shared, &endpoint, &queued).await {
                continue;
            }
        }
        let behind = shared.shards.iter().any(|p| p.handoff().lagging.contains_key(&endpoint.webhook_id));
        let next = if behind {
            match tokio::time::timeout(BEHIND_RECHECK, queue.recv()).await {
                Ok(next) => next,
                Err(_) => continue,
            }
        } else {
            queue.recv().await
        };
        // `None`: the handle is gone; the task is being stopped.
        let Some(delivery) = next else { return };
        shared.deliver(&endpoint, &delivery.event).await;
        queued[delivery.event.shard as usize].fetch_sub(1, Ordering::SeqCst);
        drop(delivery);
        since_catch_up += 1;
    }
}

/// Reads and delivers one page of a shard the endpoint is behind on and whose queued deliveries
/// are all done, or rejoins a shard it has caught up with. Whether it did either.
async fn catch_up(shared: &Shared, endpoint: &Webhook, queued: &[AtomicUsize]) -> bool {
    let id = &endpoint.webhook_id;
    for (shard, progress) in (0u32..).zip(&shared.shards) {
        if queued[shard as usize].load(Ordering::SeqCst) > 0 {
            continue;
        }
        let (after, through) = {
            let mut handoff = progress.handoff();
            let Some(&after) = handoff.lagging.get(id) else { continue };
            if after >= handoff.dispatched_through {
                // Under the lock the shard hands out with: its next event is queued to us.
                handoff.lagging.remove(id);
                tracing::info!(webhook = %id, shard, after, "a webhook endpoint caught up with the change feed");
                return true;
            }
            (after, handoff.dispatched_through)
        };
        let page = match shared.cluster.changes(shard, after, PAGE_RECORDS_MAX, Duration::ZERO).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(webhook = %id, shard, after, %error, "reading the change feed for a webhook endpoint failed");
                continue;
            }
        };
        let changes = match page {
            ChangesPage::Records { changes, .. } => changes,
            ChangesPage::Compacted { oldest_retained_index, .. } => {
                let resume = compacted_resume(after, oldest_retained_index).min(through);
                tracing::warn!(
                    webhook = %id,
                    shard,
                    after,
                    resume,
                    "the change feed no longer has the records this webhook endpoint is behind on: their events are skipped"
                );
                advance(shared, shard, endpoint, resume);
                return true;
            }
        };
        let whole_page = changes.len() >= PAGE_RECORDS_MAX;
        let margin_ms = shared.config.clock_margin.as_millis() as i64;
        for event in events_of(shard, &changes).into_iter().filter(|e| e.index <= through) {
            let subscribed = endpoint.subscribes_to(event.event_type)
                && event.time_ms.saturating_add(margin_ms) >= endpoint.created_at_ms;
            if subscribed {
                // What comes before this event's index is done.
                advance(shared, shard, endpoint, event.index - 1);
                shared.deliver(endpoint, &event).await;
            }
        }
        // A page that ends before `through` only because it is whole leaves the rest for the next.
        let done = match changes.last() {
            Some(last) if whole_page && last.index < through => last.index,
            _ => through,
        };
        advance(shared, shard, endpoint, done);
        return true;
    }
    false
}

/// Records that the endpoint is done with the shard through `index`.
fn advance(shared: &Shared, shard: u32, endpoint: &Webhook, index: u64) {
    let mut handoff = shared.shards[shard as usize].handoff();
    if let Some(after) = handoff.lagging.get_mut(&endpoint.webhook_id) {
        *after = (*after).max(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_with_jitter_up_to_the_cap() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(600));
        for (attempt, nominal_ms) in [(1, 1_000), (2, 2_000), (3, 4_000), (10, 512_000), (11, 600_000), (40, 600_000)] {
            for _ in 0..50 {
                let delay = retry_delay(min, max, attempt).as_millis() as u64;
                assert!((nominal_ms / 2..=nominal_ms).contains(&delay), "attempt {attempt}: {delay} ms");
            }
        }
    }
}
