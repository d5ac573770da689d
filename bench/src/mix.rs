//! The browse and mixed workloads, independent of the store that serves them: many events, a
//! 100:1 read/write mix with Zipf popularity, reads that are event details or seat maps (and,
//! in the mixed workload, a share of searches), writes that hold one seat of which half are
//! released again. Boxoffice and the peer baselines (PostgreSQL, etcd) implement
//! [`BrowseStore`]; the clients, the clock, the I1 bookkeeping and the figures are this one code
//! for all of them, so only the store differs between rows.
//!
//! Two runs per store: a closed loop of N clients finds the store's own peak; an open loop
//! offered a share (70%) of *that store's* peak measures latency from when each request was due.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::catalogue::{catalogue, seat_id, CatalogEvent, Popularity, SearchQuery, RELEASE_SHARE, ROWS, SEATS_PER_ROW};
use crate::error::TargetError;
use crate::ledger::{I1Check, Ledger};
use crate::pace::open_loop;
use crate::report::Latencies;
use crate::sale::HoldOutcome;
use crate::search::unix_now_s;

#[derive(Clone, Debug)]
pub struct BrowseBenchConfig {
    pub events: usize,
    /// Closed-loop clients of the peak run.
    pub clients: usize,
    /// Reads per write.
    pub reads_per_write: u32,
    /// Zipf exponent of event popularity: the event of rank k is asked for in proportion to
    /// 1 / k^s (1.0: the top event draws about an eighth of 1,000 events' traffic).
    pub popularity_skew: f64,
    /// Share of the peak offered in the latency run.
    pub latency_load_of_peak: f64,
    /// Requests in flight at most in the open-loop run.
    pub in_flight_max: usize,
    /// Length of each run.
    pub duration: Duration,
    /// Event creations in flight while loading.
    pub load_concurrency: usize,
    /// Share of the reads that are searches: 0 browses only; the mixed workload has
    /// [`MIXED_SEARCH_SHARE`].
    pub search_share: f64,
}

impl Default for BrowseBenchConfig {
    fn default() -> Self {
        BrowseBenchConfig {
            events: 1_000,
            clients: 32,
            reads_per_write: 100,
            popularity_skew: 1.0,
            latency_load_of_peak: 0.7,
            in_flight_max: 256,
            duration: Duration::from_secs(15),
            load_concurrency: 16,
            search_share: 0.0,
        }
    }
}

/// What a read of details or a seat map answered: how many items, and whether the store said it
/// served them from a cache (Boxoffice's `X-Cache: hit`), so cached reads get their own latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    pub items: usize,
    pub cached: bool,
}

impl From<usize> for Answered {
    /// An answer read from the store itself.
    fn from(items: usize) -> Answered {
        Answered { items, cached: false }
    }
}

/// A store that serves the browse and mixed workloads. Each write is durable before it returns
/// success, with the store's own default durability. `client` says which of the bench's
/// clients asks (a store maps it to a connection, a member, a buyer's token); a release comes
/// from the client that made the hold.
pub trait BrowseStore: Send + Sync + 'static {
    /// For report titles.
    fn describe(&self) -> String;

    /// Whether the store answers [`BrowseStore::search`] (etcd has no query language).
    fn searches(&self) -> bool {
        false
    }

    /// Creates the events of `catalogue`, each with the seats of [`event_seat_ids`] free; returns
    /// their ids in the catalogue's order.
    fn load(&self, catalogue: &[CatalogEvent]) -> impl Future<Output = Result<Vec<String>, TargetError>> + Send;

    /// An event's details with available counts per section; the number of sections answered,
    /// `None` when the store failed to answer.
    fn details(&self, client: u64, event: &str) -> impl Future<Output = Option<Answered>> + Send;

    /// An event's seat map; the number of seats in it, `None` on failure.
    fn seat_map(&self, client: u64, event: &str) -> impl Future<Output = Option<Answered>> + Send;

    /// A search; the number of results, `None` on failure (and from stores that cannot).
    fn search(&self, _client: u64, _query: &SearchQuery) -> impl Future<Output = Option<usize>> + Send {
        async { None }
    }

    /// Holds one seat.
    fn hold(&self, client: u64, event: &str, seat: &str) -> impl Future<Output = HoldOutcome> + Send;

    /// Releases a hold of `seat`; true once its seat is free again, durably.
    fn release(&self, client: u64, event: &str, hold_id: &str, seat: &str) -> impl Future<Output = bool> + Send;

    /// Seats of the event that are held or sold, for the I1 check.
    fn taken(&self, event: &str) -> impl Future<Output = Result<usize, TargetError>> + Send;

    /// Deletes what `load` and the run wrote, so that the next run starts from the same tables
    /// (the baselines' servers outlive a run). Nothing by default.
    fn unload(&self, _events: &[String]) -> impl Future<Output = Result<(), TargetError>> + Send {
        async { Ok(()) }
    }
}

/// What one request of the mix was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Details,
    SeatMap,
    Search,
    Write,
}

/// How one request went: a read answered with no data counts apart from failures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RequestResult {
    Ok,
    /// Ok, and served from the store's cache.
    Cached,
    Empty,
    Failed,
}

/// The loaded events, the popularity that picks among them, and the ledger of what clients were
/// told.
pub(crate) struct Workload<S> {
    pub(crate) store: Arc<S>,
    events: Vec<String>,
    popularity: Popularity,
    reads_per_write: u32,
    search_share: f64,
    ledger: Mutex<Ledger>,
    now_s: i64,
    pub(crate) load_per_s: f64,
}

/// Reads and writes of one run, by kind.
#[derive(Default)]
pub struct RunFigures {
    /// Every read that answered with data: details, seat maps and searches.
    pub reads: Latencies,
    pub writes: Latencies,
    /// The searches among `reads`.
    pub searches: Latencies,
    /// The reads among `reads` that the store answered from its cache.
    pub cached_reads: Latencies,
    pub read_errors: u64,
    pub write_errors: u64,
    /// Details or seat maps that answered with nothing in them.
    pub empty_reads: u64,
    /// Searches that found nothing (a narrow query may rightly find nothing).
    pub empty_searches: u64,
    /// Open loop only: requests not started because the store fell behind.
    pub not_started: u64,
    /// When the first and last of them were due, from the start of the run.
    pub not_started_span: Option<(Duration, Duration)>,
}

impl RunFigures {
    fn record(&mut self, kind: Kind, outcome: RequestResult, latency: Duration) {
        match (kind, outcome) {
            (Kind::Write, RequestResult::Failed) => self.write_errors += 1,
            (Kind::Write, _) => self.writes.record(latency),
            (_, RequestResult::Failed) => self.read_errors += 1,
            (Kind::Search, outcome) => {
                self.empty_searches += u64::from(outcome == RequestResult::Empty);
                self.searches.record(latency);
                self.reads.record(latency);
            }
            (_, outcome) => {
                self.empty_reads += u64::from(outcome == RequestResult::Empty);
                if outcome == RequestResult::Cached {
                    self.cached_reads.record(latency);
                }
                self.reads.record(latency);
            }
        }
    }

    fn merge(&mut self, other: RunFigures) {
        self.reads.merge(other.reads);
        self.writes.merge(other.writes);
        self.searches.merge(other.searches);
        self.cached_reads.merge(other.cached_reads);
        self.read_errors += other.read_errors;
        self.write_errors += other.write_errors;
        self.empty_reads += other.empty_reads;
        self.empty_searches += other.empty_searches;
        self.not_started += other.not_started;
        self.not_started_span = crate::pace::union_span(self.not_started_span, other.not_started_span);
    }

    pub fn errors(&self) -> u64 {
        self.read_errors + self.write_errors
    }
}

fn read_outcome(answered: Option<Answered>) -> RequestResult {
    match answered {
        Some(Answered { items: 0, .. }) => RequestResult::Empty,
        Some(Answered { cached: true, .. }) => RequestResult::Cached,
        Some(_) => RequestResult::Ok,
        None => RequestResult::Failed,
    }
}

impl<S: BrowseStore> Workload<S> {
    /// Loads the catalogue into the store.
    pub(crate) async fn load(store: Arc<S>, cfg: &BrowseBenchConfig) -> Result<Workload<S>, TargetError> {
        let now_s = unix_now_s();
        let specs = catalogue(cfg.events, now_s);
        let started = Instant::now();
        let events = store.load(&specs).await?;
        if events.len() != specs.len() {
            return Err(TargetError::Scenario(format!("loaded {} events of {}", events.len(), specs.len())));
        }
        let load_per_s = events.len() as f64 / started.elapsed().as_secs_f64().max(1e-3);
        Ok(Workload {
            store,
            popularity: Popularity::new(events.len(), cfg.popularity_skew),
            events,
            reads_per_write: cfg.reads_per_write,
            search_share: cfg.search_share,
            ledger: Mutex::new(Ledger::default()),
            now_s,
            load_per_s,
        })
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A poisoned ledger only means a client panicked mid-push; the records are still sound.
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A read of a random kind: a search with probability `search_share`, else details or the
    /// seat map, half and half.
    fn read_kind(&self, rng: &mut impl Rng) -> Kind {
        if self.search_share > 0.0 && rng.gen_bool(self.search_share.min(1.0)) {
            Kind::Search
        } else if rng.gen_bool(0.5) {
            Kind::Details
        } else {
            Kind::SeatMap
        }
    }

    async fn request(&self, kind: Kind, client: u64, rng: &mut impl Rng) -> RequestResult {
        let event = self.popularity.pick(rng);
        let id = &self.events[event];
        match kind {
            Kind::Details => read_outcome(self.store.details(client, id).await),
            Kind::SeatMap => read_outcome(self.store.seat_map(client, id).await),
            Kind::Search => {
                let query = SearchQuery::random(rng, self.now_s);
                read_outcome(self.store.search(client, &query).await.map(Answered::from))
            }
            Kind::Write => self.write(client, event, rng).await,
        }
    }

    /// Holds a random seat of `event`; releases half of the successful holds at once. A refused
    /// hold (the seat was taken) is a success: the store said no.
    async fn write(&self, client: u64, event: usize, rng: &mut impl Rng) -> RequestResult {
        let id = &self.events[event];
        let seat = seat_id(rng.gen_range(0..ROWS), rng.gen_range(1..=SEATS_PER_ROW));
        let hold_id = match self.store.hold(client, id, &seat).await {
            HoldOutcome::Held(hold_id) => hold_id,
            HoldOutcome::Conflict => return RequestResult::Ok,
            HoldOutcome::Error => {
                self.ledger().hold_unanswered(event);
                return RequestResult::Failed;
            }
        };
        let record = self.ledger().held(event, &seat, Instant::now());
        if !rng.gen_bool(RELEASE_SHARE) {
            return RequestResult::Ok;
        }
        let sent = Instant::now();
        let released = self.store.release(client, id, &hold_id, &seat).await;
        self.ledger().released(record, sent, released);
        if released {
            RequestResult::Ok
        } else {
            RequestResult::Failed
        }
    }

    /// Closed loop: `clients` clients each send the next request as soon as the last answered.
    pub(crate) async fn peak(self: &Arc<Self>, clients: usize, duration: Duration) -> Result<RunFigures, TargetError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for n in 0..clients.max(1) {
            let (workload, stop) = (self.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(10_000 + n as u64);
                let mut figures = RunFigures::default();
                while !stop.load(Ordering::Relaxed) {
                    let kind = if rng.gen_range(0..=workload.reads_per_write) == 0 {
                        Kind::Write
                    } else {
                        workload.read_kind(&mut rng)
                    };
                    let started = Instant::now();
                    let outcome = workload.request(kind, n as u64, &mut rng).await;
                    figures.record(kind, outcome, started.elapsed());
                }
                figures
            }));
        }
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = RunFigures::default();
        for task in tasks {
            total.merge(task.await.map_err(|e| TargetError::Spawn(e.to_string()))?);
        }
        Ok(total)
    }

    /// Open loop: reads (searches among them) and writes offered at fixed rates side by side,
    /// latency measured from when each request was due.
    pub(crate) async fn paced(
        self: &Arc<Self>,
        read_rate: f64,
        write_rate: f64,
        duration: Duration,
        in_flight_max: usize,
    ) -> RunFigures {
        let search_rate = read_rate * self.search_share.clamp(0.0, 1.0);
        let browse_rate = read_rate - search_rate;
        let (browse, searches, writes) = tokio::join!(
            self.paced_kind(None, browse_rate, duration, in_flight_max, 5_000_000),
            self.paced_kind(Some(Kind::Search), search_rate, duration, in_flight_max, 7_000_000),
            self.paced_kind(Some(Kind::Write), write_rate, duration, in_flight_max, 9_000_000),
        );
        let mut figures = RunFigures::default();
        for run in [browse, searches, writes] {
            figures.merge(run);
        }
        figures
    }

    /// One open loop of requests of `kind` (`None`: details and seat maps, half and half), each
    /// answer recorded as the closed loop records it, with latency from when it was due.
    fn paced_kind(
        self: &Arc<Self>,
        kind: Option<Kind>,
        rate: f64,
        duration: Duration,
        in_flight_max: usize,
        seed: u64,
    ) -> impl Future<Output = RunFigures> + Send + 'static {
        let workload = self.clone();
        let figures = Arc::new(Mutex::new(RunFigures::default()));
        let recorder = figures.clone();
        let paced = open_loop(rate, duration, in_flight_max, move |n, due| {
            let (workload, figures) = (workload.clone(), recorder.clone());
            async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed + n);
                let kind = kind.unwrap_or(if rng.gen_bool(0.5) { Kind::Details } else { Kind::SeatMap });
                let outcome = workload.request(kind, n, &mut rng).await;
                figures.lock().unwrap_or_else(|e| e.into_inner()).record(kind, outcome, due.elapsed());
                outcome != RequestResult::Failed
            }
        });
        async move {
            let paced = paced.await;
            let mut figures = std::mem::take(&mut *figures.lock().unwrap_or_else(|e| e.into_inner()));
            figures.not_started = paced.skipped;
            figures.not_started_span = paced.skipped_span;
            figures
        }
    }

    /// Asks the store for every event's taken seats and checks them against the ledger.
    pub(crate) async fn check_i1(&self) -> Result<I1Check, TargetError> {
        let mut taken = Vec::with_capacity(self.events.len());
        for event in &self.events {
            taken.push(self.store.taken(event).await?);
        }
        Ok(self.ledger().check(&taken))
    }

    pub(crate) async fn unload(&self) -> Result<(), TargetError> {
        self.store.unload(&self.events).await
    }

    pub(crate) fn events(&self) -> usize {
        self.events.len()
    }
}

/// One store's figures on the browse or mixed workload.
pub struct MixFigures {
    pub store: String,
    pub events: usize,
    pub load_per_s: f64,
    pub duration: Duration,
    /// Closed loop.
    pub peak: RunFigures,
    pub peak_reads_per_s: f64,
    pub peak_writes_per_s: f64,
    pub peak_searches_per_s: f64,
    /// Open loop at `latency_load_of_peak` of the peak rates.
    pub offered_reads_per_s: f64,
    pub offered_writes_per_s: f64,
    pub paced: RunFigures,
    pub i1: I1Check,
}

impl MixFigures {
    /// Failed requests of both runs.
    pub fn errors(&self) -> u64 {
        self.peak.errors() + self.paced.errors()
    }
}

/// Runs the workload against `store`: load, closed loop, open loop at the configured share of
/// this store's own peak, I1 on the final state, then deletes what it wrote.
pub async fn run_mix<S: BrowseStore>(store: Arc<S>, cfg: &BrowseBenchConfig) -> Result<MixFigures, TargetError> {
    let workload = Arc::new(Workload::load(store.clone(), cfg).await?);
    let secs = cfg.duration.as_secs_f64().max(1e-3);
    let peak = workload.peak(cfg.clients, cfg.duration).await?;
    let (peak_reads_per_s, peak_writes_per_s) = (peak.reads.len() as f64 / secs, peak.writes.len() as f64 / secs);
    let peak_searches_per_s = peak.searches.len() as f64 / secs;
    let share = cfg.latency_load_of_peak;
    let (offered_reads_per_s, offered_writes_per_s) = (peak_reads_per_s * share, peak_writes_per_s * share);
    let paced = workload.paced(offered_reads_per_s, offered_writes_per_s, cfg.duration, cfg.in_flight_max).await;
    let i1 = workload.check_i1().await?;
    workload.unload().await?;
    Ok(MixFigures {
        store: store.describe(),
        events: workload.events(),
        load_per_s: workload.load_per_s,
        duration: cfg.duration,
        peak,
        peak_reads_per_s,
        peak_writes_per_s,
        peak_searches_per_s,
        offered_reads_per_s,
        offered_writes_per_s,
        paced,
        i1,
    })
}

/// Counts `needle` in `haystack`: how a client that does not parse a body tells how many items
/// it holds (`"status"` once per seat of a seat map).
pub fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    // A sliding window's byte compares were a fifth of the bench's CPU on seat maps.
    memchr::memmem::find_iter(haystack, needle).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_count_searches_as_reads_and_empty_answers_apart() {
        let mut figures = RunFigures::default();
        let ms = Duration::from_millis(1);
        figures.record(Kind::Search, RequestResult::Empty, ms);
        figures.record(Kind::SeatMap, RequestResult::Ok, ms);
        figures.record(Kind::SeatMap, RequestResult::Cached, ms);
        figures.record(Kind::Details, RequestResult::Empty, ms);
        figures.record(Kind::Write, RequestResult::Failed, ms);
        figures.record(Kind::Details, RequestResult::Failed, ms);
        assert_eq!((figures.reads.len(), figures.searches.len(), figures.writes.len()), (4, 1, 0));
        assert_eq!(figures.cached_reads.len(), 1);
        assert_eq!((figures.empty_reads, figures.empty_searches, figures.errors()), (1, 1, 2));
    }

    #[test]
    fn occurrences_count_items_in_a_body() {
        assert_eq!(occurrences(br#"[{"status":"held"},{"status":"available"}]"#, br#""status""#), 2);
        assert_eq!(occurrences(b"", b"x"), 0);
        assert_eq!(occurrences(b"abc", b""), 0);
    }
}
