//! The browse and mixed workloads, independent of the store that serves them: many events, a
//! 100:1 read/write mix with Zipf popularity, reads that are event details or seat maps (and,
//! in the mixed workload, a share of searches), writes that hold one seat of which half are
//! released again. Boxoffice and the peer baselines (PostgreSQL, etcd) implement
//! [`BrowseStore`]; the clients, the clock, the I1 bookkeeping and the figures are this one code
//! for all of them, so only the store differs between rows.
//!
//! Two runs per store: a closed loop of N clients finds the store's own peak; an open loop
//! offered a share (70%) of *that store's* peak measures latency from when each request was due.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::error::TargetError;
use crate::pace::open_loop;
use crate::report::Latencies;
use crate::sale::HoldOutcome;
use crate::search::{rfc3339, unix_now_s, ADJECTIVES, CATEGORIES, CITIES, NOUNS, PERFORMERS};

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

/// Seats of every event: `ROWS` rows of `SEATS_PER_ROW` in the seated section (a Boxoffice seat
/// map of about 30 KiB), beside a general-admission section nobody books in this workload.
pub const ROWS: usize = 10;
pub const SEATS_PER_ROW: u32 = 30;
pub const SEATED_SECTION: &str = "FLOOR";
pub const GENERAL_SECTION: &str = "LAWN";
pub const GENERAL_CAPACITY: u32 = 1_000;
/// Prices of the two sections, in cents.
pub const SEATED_PRICE: i64 = 5_000;
pub const GENERAL_PRICE: i64 = 2_000;
/// Results a search asks for.
pub const SEARCH_RESULTS: usize = 20;
/// Share of the reads that are searches in the mixed workload.
pub const MIXED_SEARCH_SHARE: f64 = 0.1;
/// Share of successful holds released again at once.
const RELEASE_SHARE: f64 = 0.5;
/// Events start between one day and this many days from now.
const EVENT_DAYS_AHEAD_MAX: i64 = 700;
const DAY_S: i64 = 86_400;

pub fn row_name(r: usize) -> String {
    char::from(b'A' + (r % 26) as u8).to_string()
}

/// Seat ids as Boxoffice names them (`FLOOR-A-1`); every store uses the same names.
pub fn seat_id(row: usize, number: u32) -> String {
    format!("{SEATED_SECTION}-{}-{number}", row_name(row))
}

/// Every seat id of one event, row by row.
pub fn event_seat_ids() -> Vec<String> {
    (0..ROWS).flat_map(|r| (1..=SEATS_PER_ROW).map(move |n| seat_id(r, n))).collect()
}

pub const SEATS_PER_EVENT: usize = ROWS * SEATS_PER_ROW as usize;

/// One event of the catalogue every store is loaded with.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSpec {
    /// Two words of the search vocabulary and the event's number: "Golden Harbor 17".
    pub name: String,
    pub description: String,
    pub category: &'static str,
    pub performer: &'static str,
    pub city: &'static str,
    /// The venue of the event's city ("Harbor Hall").
    pub venue: String,
    /// Seconds since the Unix epoch.
    pub starts_at_s: i64,
}

impl EventSpec {
    pub fn starts_at(&self) -> String {
        rfc3339(self.starts_at_s)
    }
}

/// The venue of each city, by the city's index in `CITIES`.
pub fn venue_name(city_index: usize) -> String {
    format!("{} Hall", NOUNS[city_index % NOUNS.len()])
}

/// `events` events drawn from the search vocabulary with a fixed seed, so that every store is
/// loaded with the same catalogue and asked the same questions.
pub fn catalogue(events: usize, now_s: i64) -> Vec<EventSpec> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    (0..events)
        .map(|n| {
            let city_index = rng.gen_range(0..CITIES.len());
            let pick = |rng: &mut rand::rngs::StdRng, words: &[&'static str]| words.choose(rng).copied().unwrap_or("");
            let (adjective, noun) = (pick(&mut rng, ADJECTIVES), pick(&mut rng, NOUNS));
            let description =
                format!("A {} evening with {}", pick(&mut rng, ADJECTIVES), pick(&mut rng, NOUNS)).to_lowercase();
            EventSpec {
                name: format!("{adjective} {noun} {n}"),
                description,
                category: pick(&mut rng, CATEGORIES),
                performer: pick(&mut rng, PERFORMERS),
                city: CITIES[city_index].0,
                venue: venue_name(city_index),
                starts_at_s: now_s + rng.gen_range(1..EVENT_DAYS_AHEAD_MAX) * DAY_S,
            }
        })
        .collect()
}

/// A search as a buyer types it: one or two words of event names, and sometimes a city, a
/// category and a date range; [`SEARCH_RESULTS`] results.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    pub words: Vec<&'static str>,
    pub city: Option<&'static str>,
    pub category: Option<&'static str>,
    /// Events starting in `[from_s, to_s)`, seconds since the Unix epoch.
    pub from_s: Option<i64>,
    pub to_s: Option<i64>,
}

impl SearchQuery {
    pub fn random(rng: &mut impl Rng, now_s: i64) -> SearchQuery {
        let word = |rng: &mut _| {
            let words = if Rng::gen_bool(rng, 0.5) { ADJECTIVES } else { NOUNS };
            words.choose(rng).copied().unwrap_or("Golden")
        };
        let mut words = vec![word(rng)];
        if rng.gen_bool(0.2) {
            words.push(word(rng));
        }
        let city = rng.gen_bool(0.3).then(|| CITIES.choose(rng).map_or("Lisbon", |c| c.0));
        let category = rng.gen_bool(0.3).then(|| CATEGORIES.choose(rng).copied().unwrap_or("music"));
        let (from_s, to_s) = if rng.gen_bool(0.3) {
            let from = now_s + rng.gen_range(0..EVENT_DAYS_AHEAD_MAX) * DAY_S;
            (Some(from), Some(from + rng.gen_range(30..120) * DAY_S))
        } else {
            (None, None)
        };
        SearchQuery { words, city, category, from_s, to_s }
    }

    /// The words as one string, as a search box sends them.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }

    /// Boxoffice's `GET /v1/search` query string.
    pub fn url_query(&self) -> String {
        let mut query = format!("q={}&limit={SEARCH_RESULTS}", self.words.join("+"));
        if let Some(city) = self.city {
            query.push_str(&format!("&city={city}"));
        }
        if let Some(category) = self.category {
            query.push_str(&format!("&category={category}"));
        }
        if let Some(from) = self.from_s {
            query.push_str(&format!("&from={}", rfc3339(from)));
        }
        if let Some(to) = self.to_s {
            query.push_str(&format!("&to={}", rfc3339(to)));
        }
        query
    }
}

/// A store that serves the browse and mixed workloads. Each write is durable before it returns
/// success, with the store's own default durability. `client` says which of the bench's
/// clients asks (a store maps it to a connection, a member, a buyer's token); a release comes
/// from the client that made the hold.
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

pub trait BrowseStore: Send + Sync + 'static {
    /// For report titles.
    fn describe(&self) -> String;

    /// Whether the store answers [`BrowseStore::search`] (etcd has no query language).
    fn searches(&self) -> bool {
        false
    }

    /// Creates the events of `catalogue`, each with the seats of [`event_seat_ids`] free; returns
    /// their ids in the catalogue's order.
    fn load(&self, catalogue: &[EventSpec]) -> impl Future<Output = Result<Vec<String>, TargetError>> + Send;

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

/// Picks event ranks with Zipf-like popularity, by binary search over cumulative weights.
pub struct Popularity {
    cumulative: Vec<f64>,
}

impl Popularity {
    pub fn new(n: usize, skew: f64) -> Popularity {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(skew);
                total
            })
            .collect();
        Popularity { cumulative }
    }

    pub fn pick(&self, rng: &mut impl Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.gen_range(0.0..total);
        self.cumulative.partition_point(|c| *c <= x).min(self.cumulative.len() - 1)
    }
}

/// One acknowledged hold of one seat, for the I1 check.
#[derive(Clone, Debug)]
struct HoldRecord {
    event: usize,
    seat: String,
    /// When the store's "held" answer arrived: from then on the seat is certainly held.
    acknowledged: Instant,
    /// When its release was sent: until then the seat was certainly still held. `None` while
    /// it is kept.
    release_sent: Option<Instant>,
    end: HoldEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HoldEnd {
    Kept,
    Released,
    /// The release failed to answer: the seat may or may not be free.
    Unsure,
}

/// What the clients were told, kept to check I1 on the store's final state.
#[derive(Default)]
pub struct Ledger {
    holds: Vec<HoldRecord>,
    /// Holds that failed to answer, per event: each may or may not have taken its seat.
    unsure_holds: HashMap<usize, usize>,
}

/// I1 on the final state: per event, the seats acknowledged as held and not released are the
/// seats the store shows taken, and no seat was acknowledged to two holds at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct I1Check {
    /// Seats acknowledged as held and not released, over all events.
    pub acknowledged: usize,
    /// Seats the store shows taken, over all events.
    pub taken: usize,
    /// Events whose taken seats differ from the acknowledged ones (beyond the answers that were
    /// lost, which may have gone either way).
    pub events_mismatched: usize,
    /// Pairs of holds of one seat acknowledged while the other was certainly still held.
    pub held_twice: usize,
}

impl I1Check {
    pub fn ok(&self) -> bool {
        self.events_mismatched == 0 && self.held_twice == 0
    }
}

impl Ledger {
    /// Records a hold acknowledged now; returns its index, for [`Ledger::released`].
    fn held(&mut self, event: usize, seat: &str, acknowledged: Instant) -> usize {
        self.holds.push(HoldRecord {
            event,
            seat: seat.to_owned(),
            acknowledged,
            release_sent: None,
            end: HoldEnd::Kept,
        });
        self.holds.len() - 1
    }

    fn released(&mut self, hold: usize, sent: Instant, ok: bool) {
        if let Some(record) = self.holds.get_mut(hold) {
            record.release_sent = Some(sent);
            record.end = if ok { HoldEnd::Released } else { HoldEnd::Unsure };
        }
    }

    fn hold_unanswered(&mut self, event: usize) {
        *self.unsure_holds.entry(event).or_default() += 1;
    }

    /// Compares the ledger with `taken[e]`, the seats the store shows taken at event `e`.
    pub fn check(&self, taken: &[usize]) -> I1Check {
        let mut certain = vec![0usize; taken.len()];
        let mut unsure = vec![0usize; taken.len()];
        for (event, n) in &self.unsure_holds {
            if let Some(u) = unsure.get_mut(*event) {
                *u += n;
            }
        }
        let mut by_seat: HashMap<(usize, &str), Vec<HeldSpan>> = HashMap::new();
        for h in &self.holds {
            match h.end {
                HoldEnd::Kept => certain.get_mut(h.event).into_iter().for_each(|c| *c += 1),
                HoldEnd::Unsure => unsure.get_mut(h.event).into_iter().for_each(|u| *u += 1),
                HoldEnd::Released => {}
            }
            by_seat.entry((h.event, h.seat.as_str())).or_default().push((h.acknowledged, h.release_sent));
        }
        let events_mismatched =
            (0..taken.len()).filter(|&e| taken[e] < certain[e] || taken[e] > certain[e] + unsure[e]).count();
        let held_twice = by_seat.values_mut().map(|intervals| overlaps(intervals)).sum();
        I1Check { acknowledged: certain.iter().sum(), taken: taken.iter().sum(), events_mismatched, held_twice }
    }
}

/// When a seat was certainly held by one hold: from its acknowledgement until its release was
/// sent (`None`: never released).
type HeldSpan = (Instant, Option<Instant>);

/// Spans that begin before an earlier one ended.
fn overlaps(intervals: &mut [HeldSpan]) -> usize {
    intervals.sort_by_key(|i| i.0);
    let mut end_max: Option<Option<Instant>> = None;
    let mut n = 0;
    for &(from, until) in intervals.iter() {
        if let Some(end) = end_max {
            if end.is_none_or(|end| from < end) {
                n += 1;
            }
        }
        end_max = Some(match (end_max, until) {
            (None, u) => u,
            (Some(None), _) | (Some(_), None) => None,
            (Some(Some(a)), Some(b)) => Some(a.max(b)),
        });
    }
    n
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
enum Outcome {
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
    fn record(&mut self, kind: Kind, outcome: Outcome, latency: Duration) {
        match (kind, outcome) {
            (Kind::Write, Outcome::Failed) => self.write_errors += 1,
            (Kind::Write, _) => self.writes.record(latency),
            (_, Outcome::Failed) => self.read_errors += 1,
            (Kind::Search, outcome) => {
                self.empty_searches += u64::from(outcome == Outcome::Empty);
                self.searches.record(latency);
                self.reads.record(latency);
            }
            (_, outcome) => {
                self.empty_reads += u64::from(outcome == Outcome::Empty);
                if outcome == Outcome::Cached {
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

fn read_outcome(answered: Option<Answered>) -> Outcome {
    match answered {
        Some(Answered { items: 0, .. }) => Outcome::Empty,
        Some(Answered { cached: true, .. }) => Outcome::Cached,
        Some(_) => Outcome::Ok,
        None => Outcome::Failed,
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

    async fn request(&self, kind: Kind, client: u64, rng: &mut impl Rng) -> Outcome {
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
    async fn write(&self, client: u64, event: usize, rng: &mut impl Rng) -> Outcome {
        let id = &self.events[event];
        let seat = seat_id(rng.gen_range(0..ROWS), rng.gen_range(1..=SEATS_PER_ROW));
        let hold_id = match self.store.hold(client, id, &seat).await {
            HoldOutcome::Held(hold_id) => hold_id,
            HoldOutcome::Conflict => return Outcome::Ok,
            HoldOutcome::Error => {
                self.ledger().hold_unanswered(event);
                return Outcome::Failed;
            }
        };
        let record = self.ledger().held(event, &seat, Instant::now());
        if !rng.gen_bool(RELEASE_SHARE) {
            return Outcome::Ok;
        }
        let sent = Instant::now();
        let released = self.store.release(client, id, &hold_id, &seat).await;
        self.ledger().released(record, sent, released);
        if released {
            Outcome::Ok
        } else {
            Outcome::Failed
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
                outcome != Outcome::Failed
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
    fn popularity_favours_low_ranks_and_covers_all() {
        let popularity = Popularity::new(100, 1.0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = vec![0u32; 100];
        for _ in 0..100_000 {
            counts[popularity.pick(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[9] * 5, "rank 1 is about ten times rank 10: {:?}", &counts[..10]);
        assert!(counts.iter().all(|c| *c > 0));
    }

    #[test]
    fn every_event_has_ten_rows_of_thirty_seats_named_as_boxoffice_names_them() {
        let seats = event_seat_ids();
        assert_eq!(seats.len(), SEATS_PER_EVENT);
        assert_eq!(seats[0], "FLOOR-A-1");
        assert_eq!(seats[29], "FLOOR-A-30");
        assert_eq!(seats[299], "FLOOR-J-30");
    }

    #[test]
    fn the_catalogue_is_the_same_for_every_store_and_names_are_searchable_words() {
        let a = catalogue(50, 1_000_000);
        assert_eq!(a, catalogue(50, 1_000_000));
        assert!(a[7].name.ends_with(" 7"));
        let first_word = a[7].name.split(' ').next().unwrap_or_default();
        assert!(ADJECTIVES.contains(&first_word));
        assert!(a.iter().all(|e| e.starts_at_s > 1_000_000 && CITIES.iter().any(|c| c.0 == e.city)));
    }

    #[test]
    fn a_search_becomes_boxoffice_query_parameters() {
        let query = SearchQuery {
            words: vec!["Golden", "Harbor"],
            city: Some("Porto"),
            category: Some("music"),
            from_s: Some(0),
            to_s: Some(DAY_S),
        };
        assert_eq!(query.text(), "Golden Harbor");
        assert_eq!(
            query.url_query(),
            "q=Golden+Harbor&limit=20&city=Porto&category=music&from=1970-01-01T00:00:00Z&to=1970-01-02T00:00:00Z"
        );
        let bare = SearchQuery { words: vec!["Neon"], city: None, category: None, from_s: None, to_s: None };
        assert_eq!(bare.url_query(), "q=Neon&limit=20");
    }

    #[test]
    fn random_searches_use_the_vocabulary_and_sometimes_filter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let queries: Vec<_> = (0..200).map(|_| SearchQuery::random(&mut rng, 0)).collect();
        assert!(queries.iter().all(|q| !q.words.is_empty() && q.from_s.is_some() == q.to_s.is_some()));
        assert!(queries.iter().any(|q| q.city.is_some()) && queries.iter().any(|q| q.city.is_none()));
        assert!(queries.iter().all(|q| q.to_s >= q.from_s));
    }

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn i1_holds_when_kept_holds_are_what_the_store_shows() {
        let t = Instant::now();
        let mut ledger = Ledger::default();
        let a = ledger.held(0, "FLOOR-A-1", at(t, 10));
        ledger.released(a, at(t, 20), true);
        // Held again after the release was sent: fine.
        ledger.held(0, "FLOOR-A-1", at(t, 25));
        ledger.held(1, "FLOOR-A-1", at(t, 5));
        let check = ledger.check(&[1, 1, 0]);
        assert_eq!(check, I1Check { acknowledged: 2, taken: 2, events_mismatched: 0, held_twice: 0 });
        assert!(check.ok());
        // The store lost a hold at event 1, and shows a seat nobody was given at event 2.
        let check = ledger.check(&[1, 0, 1]);
        assert_eq!(check.events_mismatched, 2);
        assert!(!check.ok());
    }

    #[test]
    fn a_seat_acknowledged_to_two_holds_at_once_breaks_i1_even_if_one_is_released_later() {
        let t = Instant::now();
        let mut ledger = Ledger::default();
        let a = ledger.held(0, "FLOOR-B-2", at(t, 10));
        ledger.held(0, "FLOOR-B-2", at(t, 15));
        ledger.released(a, at(t, 20), true);
        let check = ledger.check(&[1]);
        assert_eq!(check.events_mismatched, 0);
        assert_eq!(check.held_twice, 1);
        assert!(!check.ok());
    }

    #[test]
    fn lost_answers_allow_either_outcome() {
        let t = Instant::now();
        let mut ledger = Ledger::default();
        ledger.hold_unanswered(0);
        let a = ledger.held(0, "FLOOR-C-3", at(t, 10));
        ledger.released(a, at(t, 20), false);
        for taken in 0..=2 {
            assert!(ledger.check(&[taken]).ok(), "{taken} taken");
        }
        assert!(!ledger.check(&[3]).ok());
    }

    #[test]
    fn figures_count_searches_as_reads_and_empty_answers_apart() {
        let mut figures = RunFigures::default();
        let ms = Duration::from_millis(1);
        figures.record(Kind::Search, Outcome::Empty, ms);
        figures.record(Kind::SeatMap, Outcome::Ok, ms);
        figures.record(Kind::SeatMap, Outcome::Cached, ms);
        figures.record(Kind::Details, Outcome::Empty, ms);
        figures.record(Kind::Write, Outcome::Failed, ms);
        figures.record(Kind::Details, Outcome::Failed, ms);
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
