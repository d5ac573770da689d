//! Outgoing webhooks: the dispatcher that follows every shard's change feed and POSTs each order
//! and ticket event, signed, to every endpoint subscribed to its type, at least once.
//!
//! - `registry`: the endpoints (`Query::Webhooks` on the meta group), polled every few seconds,
//!   and read again on demand so that a page of records is matched against endpoints as of a
//!   moment after its records were written: an endpoint gets every event written after its
//!   registration was acknowledged, and none written after its deletion was.
//! - `shard`: one loop per shard reads the feed from its saved position, turns records into
//!   events (`event`) and queues each on its endpoints' workers.
//! - `endpoint`: one worker per endpoint delivers its queue in feed order, retrying with backoff
//!   (`send`, `signature`). A queue is bounded: an endpoint whose queue is full is *behind* on
//!   that shard and reads the feed on its own until it has caught up, so a slow or failing
//!   endpoint holds back nobody else.
//! - `positions`: per shard the index through which every delivery is done, and per lagging
//!   endpoint its own, in a file written atomically; a restart resumes there, so a crash
//!   re-delivers (with the same event ids) and never skips.
//!
//! Architecture invariant: the dispatcher only reads the feed and the registry; nothing of it is
//! on the path of a booking.

mod endpoint;
mod event;
mod positions;
mod registry;
mod send;
mod shard;
mod signature;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use raft_store::WebhookId;
use seams::Cluster;
use tokio::task::JoinHandle;

use endpoint::Worker;
use positions::{Positions, PositionsFile};
pub use positions::{PositionsError, POSITIONS_FILE};
use registry::Registry;
use send::Sender;
use shard::ShardProgress;
#[cfg(test)]
pub(crate) use signature::verify;
pub use signature::SIGNATURE_HEADER;

/// How a dispatcher runs. [`DispatcherConfig::new`] gives the documented defaults.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Where the positions file lives (the process's data directory).
    pub dir: PathBuf,
    /// PEM certificates trusted beside the public roots, for endpoints behind a private CA.
    pub ca_file: Option<PathBuf>,
    /// The largest difference between this process's clock and the leaders' (0 in `boxoffice
    /// dev`, one clock): a page is matched against the endpoints as of this much after its
    /// records' log time.
    pub clock_margin: Duration,
    /// One attempt's deadline, answer included.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Backoff between attempts: doubles from the first to the second, each delay drawn between
    /// half of it and all of it.
    pub retry_delay_min: Duration,
    pub retry_delay_max: Duration,
    /// A delivery is given up after this many attempts, or once this long has passed since its
    /// first, whichever comes first.
    pub attempts_max: u32,
    pub give_up_after: Duration,
    /// Deliveries queued per endpoint; an endpoint beyond it reads the feed on its own.
    pub queue_per_endpoint_max: usize,
    /// How often the endpoints are read when nothing asks sooner.
    pub registry_poll: Duration,
    /// How long a feed read waits for a record.
    pub poll_wait: Duration,
    /// After a page with events, the next read of the shard waits this long, so a busy shard's
    /// events are matched against the endpoints a page at a time.
    pub page_interval_min: Duration,
    /// How often the positions file is brought up to date.
    pub save_interval: Duration,
}

/// Change records one feed read asks for at most.
const PAGE_RECORDS_MAX: usize = 1_000;

impl DispatcherConfig {
    /// The defaults: 10 s per attempt; backoff from 1 s doubling to 10 min with jitter; 15
    /// attempts (about half an hour to an hour) or 24 h, whichever first; 1,000 queued
    /// deliveries per endpoint; endpoints read every 2 s.
    pub fn new(dir: PathBuf) -> DispatcherConfig {
        DispatcherConfig {
            dir,
            ca_file: None,
            clock_margin: Duration::from_millis(500),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry_delay_min: Duration::from_secs(1),
            retry_delay_max: Duration::from_secs(600),
            attempts_max: 15,
            give_up_after: Duration::from_secs(24 * 3_600),
            queue_per_endpoint_max: 1_000,
            registry_poll: Duration::from_secs(2),
            poll_wait: Duration::from_secs(5),
            page_interval_min: Duration::from_millis(200),
            save_interval: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Positions(#[from] PositionsError),
    #[error("webhooks: {0}")]
    Config(String),
}

/// What the dispatcher's tasks share.
struct Shared {
    cluster: Arc<dyn Cluster>,
    config: DispatcherConfig,
    sender: Sender,
    registry: Registry,
    /// One worker per endpoint of the latest registry read.
    workers: Mutex<BTreeMap<WebhookId, Worker>>,
    /// Indexed by shard.
    shards: Vec<ShardProgress>,
    file: PositionsFile,
    /// Set before any task is stopped: from then on nothing is saved, since a stopped worker's
    /// deliveries count as done (see `save_loop`).
    stopping: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The outgoing webhook dispatcher; dropping it stops it.
pub struct Dispatcher {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Dispatcher {
    /// Starts following every shard of `cluster` from the saved positions, on the current tokio
    /// runtime. Fails if the positions file does not read or the HTTPS client cannot be built.
    pub fn start(cluster: Arc<dyn Cluster>, config: DispatcherConfig) -> Result<Dispatcher, DispatchError> {
        let file = PositionsFile::in_dir(&config.dir);
        let saved = file.load()?;
        let sender = Sender::new(config.ca_file.as_deref(), config.request_timeout, config.connect_timeout)?;
        let shard_count = cluster.shard_count();
        let shards = (0..shard_count).map(|shard| ShardProgress::resume(&saved, shard)).collect();
        tracing::info!(
            shards = shard_count,
            positions = %file.path().display(),
            resumed = ?saved.shards,
            lagging = saved.lagging.len(),
            "outgoing webhooks: following the change feed"
        );
        let shared = Arc::new(Shared {
            cluster,
            config,
            sender,
            registry: Registry::new(),
            workers: Mutex::new(BTreeMap::new()),
            shards,
            file,
            stopping: AtomicBool::new(false),
        });
        let mut tasks = vec![tokio::spawn(registry::refresh_loop(shared.clone()))];
        tasks.extend((0..shard_count).map(|shard| tokio::spawn(shard::follow(shared.clone(), shard))));
        tasks.push(tokio::spawn(save_loop(shared.clone())));
        Ok(Dispatcher { shared, tasks })
    }

    /// Saves the positions as they are and stops every task.
    pub async fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Workers still hold what they have not delivered: the positions stop short of it.
        let positions = self.shared.positions();
        let file = self.shared.file.clone();
        match tokio::task::spawn_blocking(move || file.save(&positions)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "saving the webhook positions at shutdown failed"),
            Err(e) => tracing::warn!(error = %e, "saving the webhook positions at shutdown failed"),
        }
        self.halt();
        for task in self.tasks.drain(..) {
            // Cancelled is the expected outcome; a panic was already reported by the runtime.
            let _ = task.await;
        }
    }

    fn halt(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for task in &self.tasks {
            task.abort();
        }
        // The workers hold the shared state: dropping them aborts their tasks and breaks the cycle.
        std::mem::take(&mut *lock(&self.shared.workers));
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Shared {
    /// Where a restart would resume now.
    fn positions(&self) -> Positions {
        let mut positions = Positions::default();
        for (shard, progress) in (0u32..).zip(&self.shards) {
            let (done, lagging) = progress.done_through();
            positions.shards.insert(shard, done);
            for (id, after) in lagging {
                positions.lagging.entry(id).or_default().insert(shard, after);
            }
        }
        positions
    }
}

/// Keeps the positions file current, and the lag gauges.
async fn save_loop(shared: Arc<Shared>) {
    let mut saved: Option<Positions> = None;
    loop {
        tokio::time::sleep(shared.config.save_interval).await;
        let positions = shared.positions();
        // Read after the positions: if no task had been stopped by then, they count only
        // deliveries that were done.
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        for (shard, progress) in (0u32..).zip(&shared.shards) {
            let done = positions.shards.get(&shard).copied().unwrap_or(0);
            metrics::gauge!("boxoffice_webhook_lag_entries", "shard" => shard.to_string())
                .set(progress.last_index().saturating_sub(done) as f64);
        }
        if saved.as_ref() == Some(&positions) {
            continue;
        }
        let file = shared.file.clone();
        let to_save = positions.clone();
        match tokio::task::spawn_blocking(move || file.save(&to_save)).await {
            Ok(Ok(())) => saved = Some(positions),
            Ok(Err(e)) => tracing::warn!(error = %e, "saving the webhook positions failed; retrying"),
            Err(e) => tracing::warn!(error = %e, "saving the webhook positions failed; retrying"),
        }
    }
}
