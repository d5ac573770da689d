//! The endpoints, as of a known moment: a read of `Query::Webhooks` (linearizable, so it holds
//! every registration and deletion acknowledged before it started) with the wall-clock time it
//! started at. A page of records is matched against a read that started at least the clock
//! margin after the page's last record was written: then every endpoint registered before those
//! records is in it, and none deleted before them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raft_store::{Answer, GroupId, Query, Webhook};
use seams::Consistency;
use tokio::sync::{watch, Notify};

use super::event::WebhookEvent;
use super::Shared;

/// Waits between failed reads: doubles up to the poll interval.
const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
/// A record stamped this far ahead of this process's clock is worth a warning (the clocks differ
/// by more than the margin allows); waits for it are taken in steps of at most the second.
const AHEAD_WARN_MS: i64 = 5_000;
const AHEAD_WAIT_MS_MAX: i64 = 10_000;

pub(super) fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One read of the endpoints.
#[derive(Debug)]
pub(super) struct Snapshot {
    /// The wall-clock time the read started at; `i64::MIN` before the first read.
    pub as_of_ms: i64,
    pub endpoints: Vec<Arc<Webhook>>,
}

impl Snapshot {
    /// The endpoints `event` goes to: subscribed to its type, and registered before it was
    /// written (allowing for the clocks' difference: an endpoint registered a moment later may
    /// get it too, one registered before never misses it).
    pub(super) fn subscribers<'a>(
        &'a self,
        event: &'a WebhookEvent,
        margin_ms: i64,
    ) -> impl Iterator<Item = &'a Arc<Webhook>> + 'a {
        self.endpoints.iter().filter(move |w| {
            w.subscribes_to(event.event_type) && event.time_ms.saturating_add(margin_ms) >= w.created_at_ms
        })
    }
}

pub(super) struct Registry {
    current: watch::Sender<Arc<Snapshot>>,
    /// The freshest `as_of_ms` anyone waits for.
    wanted_ms: AtomicI64,
    wake: Notify,
}

impl Registry {
    pub(super) fn new() -> Registry {
        let empty = Arc::new(Snapshot { as_of_ms: i64::MIN, endpoints: Vec::new() });
        Registry { current: watch::Sender::new(empty), wanted_ms: AtomicI64::new(i64::MIN), wake: Notify::new() }
    }

    /// A read that started at `at_least_ms` or later: the latest if it did, else the next one,
    /// asked for now.
    pub(super) async fn fresh(&self, at_least_ms: i64) -> Arc<Snapshot> {
        let mut updates = self.current.subscribe();
        loop {
            let latest = updates.borrow_and_update().clone();
            if latest.as_of_ms >= at_least_ms {
                return latest;
            }
            self.wanted_ms.fetch_max(at_least_ms, Ordering::SeqCst);
            self.wake.notify_one();
            // The sender lives as long as the registry, which outlives this borrow.
            if updates.changed().await.is_err() {
                return latest;
            }
        }
    }
}

/// Reads the endpoints every `registry_poll`, or sooner when a shard waits for a fresher read;
/// starts a worker for each new endpoint and stops those of deleted ones.
pub(super) async fn refresh_loop(shared: Arc<Shared>) {
    let registry = &shared.registry;
    let mut retry_delay = RETRY_DELAY_MIN;
    loop {
        // A read must start after what it is wanted for was written, allowing for the clocks.
        let wanted = registry.wanted_ms.load(Ordering::SeqCst);
        let ahead_ms = wanted.saturating_sub(wall_ms());
        if ahead_ms > 0 {
            if ahead_ms > AHEAD_WARN_MS {
                tracing::warn!(ahead_ms, "change records are stamped ahead of this clock: webhooks wait for it");
            }
            tokio::time::sleep(Duration::from_millis(ahead_ms.min(AHEAD_WAIT_MS_MAX) as u64)).await;
            continue;
        }
        let as_of_ms = wall_ms();
        let read = shared.cluster.query(GroupId::META, Query::Webhooks, Consistency::Linearizable).await;
        match read {
            Ok(Answer::Webhooks(list)) => {
                let endpoints: Vec<Arc<Webhook>> = list.into_iter().map(Arc::new).collect();
                // Workers first: a shard that sees this read finds a worker for each endpoint.
                shared.sync_workers(&endpoints);
                registry.current.send_replace(Arc::new(Snapshot { as_of_ms, endpoints }));
                retry_delay = RETRY_DELAY_MIN;
            }
            other => {
                let error = match other {
                    Err(e) => e.to_string(),
                    Ok(answer) => format!("an unexpected answer: {answer:?}"),
                };
                tracing::warn!(%error, "reading the webhook endpoints failed; retrying");
                tokio::time::sleep(retry_delay).await;
                retry_delay = (retry_delay * 2).min(shared.config.registry_poll.max(RETRY_DELAY_MIN));
                continue;
            }
        }
        if registry.wanted_ms.load(Ordering::SeqCst) <= as_of_ms {
            tokio::select! {
                biased;
                _ = registry.wake.notified() => {}
                _ = tokio::time::sleep(shared.config.registry_poll) => {}
            }
        }
    }
}
