//! The soak: `boxoffice dev` with short hold and archive delays, booked at a steady rate for
//! minutes while events are created, go on sale, start, and are archived (moved from memory to
//! disk) — a season compressed into minutes. Every minute it prints the server's RSS (VmRSS from
//! `/proc/PID/status`), its data directory's size, what was booked, and the holds and orders the
//! server keeps in memory (its `boxoffice_machine_records` gauges, summed over the groups), so RSS
//! can be attributed; at the end it says whether RSS was flat after warm-up.
//!
//! Flat: over the second half of the run (the first half is warm-up: caches, buffers, the
//! change feeds and the logs between snapshots fill, and the pipeline of events on sale), the
//! peak RSS of its last half is within [`FLAT_TOLERANCE`] of the peak of its first half: memory
//! that a node needs does not rise. Periodic work (snapshots, compactions) makes RSS a sawtooth
//! whose lows say little; its peaks are what a node must be given, and they must not climb.
//! Everything the server keeps per event, hold or order must leave memory as events are
//! archived and holds expire; what stays is bounded by the events on sale, not by the events of
//! the run.
//!
//! Each event starts [`SoakConfig::event_lead`] after it is created and is sold until
//! [`SALE_STOP_BEFORE_START`] before it starts; a new one is created every
//! [`SoakConfig::event_every`]. Holds: most are a few random seats (some conflict), the rest a
//! general-admission quantity; a share checks out (`sandbox_ok`), a share is released, the rest
//! is left to expire.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::error::TargetError;
use crate::pace::open_loop;
use crate::probe::NodeProbe;
use crate::report::Report;
use crate::target::Target;

#[derive(Clone, Debug)]
pub struct SoakConfig {
    pub duration: Duration,
    /// Holds offered per second (an open loop), each followed by its checkout or release.
    pub rate: f64,
    /// Users the holds are spread over.
    pub users: usize,
    /// A new event every this long.
    pub event_every: Duration,
    /// How long after its creation an event starts.
    pub event_lead: Duration,
    /// The server's `--hold-ttl`.
    pub hold_ttl: Duration,
    /// The server's `--archive-after`: how long after it starts an event leaves memory.
    pub archive_after: Duration,
    /// The server's `--cache-mb`: the state store's block cache, which fills as the data grows.
    pub cache_mb: u64,
    /// The server's `--snapshot-every-logs`. Between snapshots a group's log is indexed in memory
    /// (about 100 bytes an entry), so the log's share of memory is steady only once every group
    /// has snapshotted twice: at the soak's rate and the default interval, 20 minutes and more.
    /// Shorter, like the hold and archive delays, it compresses that warm-up into minutes, and
    /// runs the snapshot-and-purge cycle often enough that a leak in it would show (it did not
    /// lower the RSS measured: docs/performance.md).
    pub snapshot_every_logs: u64,
}

impl Default for SoakConfig {
    fn default() -> Self {
        SoakConfig {
            duration: Duration::from_secs(600),
            rate: 200.0,
            users: 1_000,
            event_every: Duration::from_secs(10),
            event_lead: Duration::from_secs(90),
            hold_ttl: Duration::from_secs(30),
            archive_after: Duration::from_secs(60),
            cache_mb: 256,
            snapshot_every_logs: 2_000,
        }
    }
}

impl SoakConfig {
    /// The `boxoffice dev` arguments the soak needs besides the limits being off.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--hold-ttl".to_owned(),
            format!("{}ms", self.hold_ttl.as_millis()),
            "--archive-after".to_owned(),
            format!("{}ms", self.archive_after.as_millis()),
            "--cache-mb".to_owned(),
            self.cache_mb.to_string(),
            "--snapshot-every-logs".to_owned(),
            self.snapshot_every_logs.to_string(),
        ]
    }

    pub fn check(&self) -> Result<(), TargetError> {
        let usage = |what: &str| Err(TargetError::Scenario(what.to_owned()));
        if !(self.rate.is_finite() && self.rate > 0.0) || self.users == 0 {
            return usage("the soak's rate is above 0 holds/s and it has at least one user");
        }
        if self.event_lead <= SALE_STOP_BEFORE_START || self.event_every.is_zero() {
            return usage("events start more than 15 s after they are created, and are created every so often");
        }
        if self.snapshot_every_logs == 0 {
            return usage("groups snapshot after at least one log entry");
        }
        if self.duration < REPORT_EVERY * 2 {
            return usage("a soak lasts at least two minutes: the first half is warm-up");
        }
        Ok(())
    }
}

/// The node's gauge of the records each group keeps in memory, by `kind`.
const MACHINE_RECORDS: &str = "boxoffice_machine_records";
/// The peak RSS of the run's last quarter may exceed the peak of its third quarter by this share.
pub const FLAT_TOLERANCE: f64 = 0.025;
/// Sales stop this long before an event starts, so no hold races the start (403 `not_on_sale`).
pub const SALE_STOP_BEFORE_START: Duration = Duration::from_secs(15);
const REPORT_EVERY: Duration = Duration::from_secs(60);
const RSS_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Venues the events take turns at: venues are few and long-lived, events many.
const VENUES: usize = 4;
const FLOOR_ROWS: u32 = 50;
const FLOOR_ROW_SEATS: u32 = 100;
const LAWN_CAPACITY: u32 = 5_000;
/// Shares of the holds: seats (the rest general admission); of the successful ones, checked out
/// and released (the rest left to expire).
const SEATED_SHARE: f64 = 0.6;
const CHECKOUT_SHARE: f64 = 0.4;
const RELEASE_SHARE: f64 = 0.3;
const SEATS_PER_HOLD_MAX: u32 = 4;
/// Holds (with their follow-up) in flight at most; a steady load far below the peak needs few.
const IN_FLIGHT_MAX: usize = 512;
/// Tokens fetched at once while the users are set up.
const SETUP_CONCURRENCY: usize = 32;

/// What the buyers did, counted as they go.
#[derive(Default)]
struct Counts {
    held: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
    checkouts: AtomicU64,
    releases: AtomicU64,
    left: AtomicU64,
    events_created: AtomicU64,
}

impl Counts {
    fn snapshot(&self) -> [u64; 7] {
        [&self.held, &self.refused, &self.errors, &self.checkouts, &self.releases, &self.left, &self.events_created]
            .map(|c| c.load(Ordering::Relaxed))
    }
}

/// An event on sale, and until when the buyers may hold its seats.
struct OnSale {
    id: String,
    sell_until: Instant,
}

struct Shared {
    target: Arc<Target>,
    tokens: Vec<String>,
    admin: String,
    venues: Vec<String>,
    on_sale: Mutex<Vec<OnSale>>,
    counts: Counts,
    /// The first event created, read again at the end: it has been archived by then.
    first_event: Mutex<Option<String>>,
    /// Errors by step and answer ("hold 422 sales_closed"), so that a run's errors can be told.
    error_kinds: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Shared {
    fn on_sale(&self) -> std::sync::MutexGuard<'_, Vec<OnSale>> {
        self.on_sale.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a hold's follow-up `step` in `done` if it was answered `expected`, else as an error.
    async fn follow_up(
        &self,
        step: &str,
        answer: reqwest::Result<reqwest::Response>,
        expected: u16,
        done: &AtomicU64,
    ) -> bool {
        match answer {
            Ok(r) if r.status().as_u16() == expected => count(done, true),
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.json::<Value>().await.unwrap_or_default();
                self.error(step, Some((status, &body)))
            }
            Err(_) => self.error(step, None),
        }
    }

    /// Counts an error of `step`, named by its answer (`None`: no answer came).
    fn error(&self, step: &str, answer: Option<(u16, &Value)>) -> bool {
        let kind = match answer {
            Some((status, body)) => format!("{step} {status} {}", body["code"].as_str().unwrap_or("")),
            None => format!("{step}: no answer"),
        };
        *self.error_kinds.lock().unwrap_or_else(|e| e.into_inner()).entry(kind.trim_end().to_owned()).or_default() += 1;
        count(&self.counts.errors, false)
    }
}

/// One minute's line of the report.
#[derive(Clone, Debug)]
pub struct Minute {
    pub minute: u32,
    pub rss_mib: f64,
    /// The largest RSS sample of the minute.
    pub rss_max_mib: f64,
    pub disk_mib: f64,
    /// What the buyers did in the minute: held, refused, errors, checkouts, releases, left.
    pub booked: [u64; 6],
    pub events_created: u64,
    /// Events the server archived so far, and snapshots it built so far.
    pub archived: u64,
    pub snapshots: u64,
    /// Holds (active and ended) and orders the server's groups keep in memory, summed over them
    /// (`boxoffice_machine_records`, sampled every 15 s): what RSS can be attributed to.
    pub holds_in_memory: u64,
    pub orders_in_memory: u64,
}

/// Whether RSS stopped rising after warm-up (the module's comment).
#[derive(Clone, Debug, PartialEq)]
pub struct Flatness {
    /// Smallest and largest sample of the second half, in MiB.
    pub second_half_mib: (f64, f64),
    /// The largest sample of the third quarter and of the last, in MiB.
    pub peaks_mib: (f64, f64),
    pub flat: bool,
}

impl Flatness {
    /// Judges `samples` (time since the start, MiB) of a run of `duration`.
    pub fn of(samples: &[(Duration, f64)], duration: Duration) -> Flatness {
        let (half, three_quarters) = (duration / 2, duration * 3 / 4);
        let peak = |from: Duration, to: Duration| {
            samples.iter().filter(|(t, _)| (from..to).contains(t)).map(|(_, mib)| *mib).fold(0.0, f64::max)
        };
        let second = samples.iter().filter(|(t, _)| *t >= half).map(|(_, mib)| *mib);
        let second_half_mib = (second.clone().fold(f64::INFINITY, f64::min), second.fold(0.0, f64::max));
        let peaks_mib = (peak(half, three_quarters), peak(three_quarters, Duration::MAX));
        let flat = peaks_mib.0 > 0.0 && peaks_mib.1 > 0.0 && peaks_mib.1 <= peaks_mib.0 * (1.0 + FLAT_TOLERANCE);
        Flatness { second_half_mib, peaks_mib, flat }
    }
}

/// The soak's figures and verdict.
pub struct SoakOutcome {
    pub minutes: Vec<Minute>,
    pub rss: Flatness,
    pub archived_event_read: bool,
    /// Errors by step and answer, most frequent first.
    pub errors_by_kind: Vec<(String, u64)>,
}

impl SoakOutcome {
    pub fn report(&self, cfg: &SoakConfig) -> Report {
        let mut r = Report::new(&format!(
            "soak: {:.0} holds/s for {} s, holds last {} s, events archived {} s after they start",
            cfg.rate,
            cfg.duration.as_secs(),
            cfg.hold_ttl.as_secs(),
            cfg.archive_after.as_secs()
        ));
        let f = &self.rss;
        r.line("RSS over the second half", format!("{:.1}–{:.1} MiB", f.second_half_mib.0, f.second_half_mib.1));
        r.line(
            "peak RSS, third and last quarter",
            format!(
                "{:.1} → {:.1} MiB ({:+.1}%, flat within {:.1}%)",
                f.peaks_mib.0,
                f.peaks_mib.1,
                (f.peaks_mib.1 / f.peaks_mib.0 - 1.0) * 100.0,
                FLAT_TOLERANCE * 100.0
            ),
        );
        r.line("verdict", if f.flat { "flat after warm-up" } else { "NOT FLAT after warm-up" });
        r.line("first event, archived, still read", if self.archived_event_read { "yes" } else { "NO" });
        for (kind, n) in &self.errors_by_kind {
            r.line("  errors", format!("{n} × {kind}"));
        }
        r
    }
}

/// The minute table's columns, and each one's width (cells are right-aligned).
const COLUMNS: [(&str, usize); 15] = [
    ("min", 3),
    ("RSS MiB", 8),
    ("max MiB", 8),
    ("disk MiB", 8),
    ("held", 6),
    ("refused", 7),
    ("errors", 6),
    ("checkouts", 9),
    ("released", 8),
    ("left", 6),
    ("events", 6),
    ("archived", 8),
    ("snapshots", 9),
    ("holds mem", 9),
    ("orders mem", 10),
];

fn fixed(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().zip(COLUMNS).map(|(c, (_, w))| format!("{c:>w$}")).collect();
    format!("  {}", cells.join("  "))
}

fn minute_header() -> String {
    fixed(&COLUMNS.map(|(name, _)| name.to_owned()))
}

fn minute_line(m: &Minute) -> String {
    let mut cells = vec![
        m.minute.to_string(),
        format!("{:.1}", m.rss_mib),
        format!("{:.1}", m.rss_max_mib),
        format!("{:.1}", m.disk_mib),
    ];
    cells.extend(m.booked.iter().map(u64::to_string));
    cells.extend([m.events_created.to_string(), m.archived.to_string(), m.snapshots.to_string()]);
    cells.extend([m.holds_in_memory.to_string(), m.orders_in_memory.to_string()]);
    fixed(&cells)
}

/// Prints the minutes as a table.
pub fn print_minutes(minutes: &[Minute]) {
    println!("{}", minute_header());
    for m in minutes {
        println!("{}", minute_line(m));
    }
}

/// Runs the soak against `target`, a `boxoffice dev` the bench started with
/// [`SoakConfig::server_args`] (it reads the process's memory, so it must be local).
pub async fn run(target: Arc<Target>, cfg: &SoakConfig) -> Result<SoakOutcome, TargetError> {
    cfg.check()?;
    let (pid, data_dir) = target
        .dev_process()
        .map(|(pid, dir)| (pid, dir.to_owned()))
        .ok_or_else(|| TargetError::Scenario("the soak watches a `boxoffice dev` the bench started".into()))?;
    let shared = Arc::new(setup(target.clone(), cfg).await?);
    create_event(&shared, cfg).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let creator = tokio::spawn(keep_creating(shared.clone(), cfg.clone(), stop.clone()));
    let watcher = tokio::spawn(watch(shared.clone(), NodeProbe::of(&target), pid, data_dir, cfg.duration));
    let buyers = shared.clone();
    let paced = open_loop(cfg.rate, cfg.duration, IN_FLIGHT_MAX, move |n, _| buy(buyers.clone(), n)).await;
    stop.store(true, Ordering::Relaxed);
    let created = creator.await.map_err(|e| TargetError::Scenario(e.to_string()))?;
    let minutes = watcher.await.map_err(|e| TargetError::Scenario(e.to_string()))??;
    if paced.skipped > 0 {
        eprintln!("soak: {} holds not started: the server fell behind {:.0} holds/s", paced.skipped, cfg.rate);
    }
    if let Err(e) = created {
        eprintln!("soak: creating events failed: {e}");
    }
    let first = shared.first_event.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let archived_event_read = match first {
        Some(id) => target.get(&format!("/v1/events/{id}")).await.is_ok(),
        None => false,
    };
    let rss = Flatness::of(&minutes.1, cfg.duration);
    let mut errors_by_kind: Vec<(String, u64)> =
        shared.error_kinds.lock().unwrap_or_else(|e| e.into_inner()).clone().into_iter().collect();
    errors_by_kind.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    Ok(SoakOutcome { minutes: minutes.0, rss, archived_event_read, errors_by_kind })
}

async fn setup(target: Arc<Target>, cfg: &SoakConfig) -> Result<Shared, TargetError> {
    let admin = target.token("soak-admin", "admin").await?;
    let mut venues = Vec::with_capacity(VENUES);
    for v in 0..VENUES {
        let rows: Vec<Value> =
            (0..FLOOR_ROWS).map(|r| json!({"id": format!("R{r}"), "seats": FLOOR_ROW_SEATS})).collect();
        let venue = json!({
            "name": format!("Soak Hall {v}"), "city": "Lisbon", "country": "PT", "location": {"lat": 38.7, "lon": -9.1},
            "sections": [
                {"id": "FLOOR", "name": "Floor", "kind": "seated", "rows": rows},
                {"id": "LAWN", "name": "Lawn", "kind": "general", "capacity": LAWN_CAPACITY}
            ]
        });
        let venue = target.post("/v1/venues", Some(&admin), venue, 201).await?;
        venues.push(venue["venue_id"].as_str().unwrap_or_default().to_owned());
    }
    let mut tokens = Vec::with_capacity(cfg.users);
    for chunk in (0..cfg.users).collect::<Vec<_>>().chunks(SETUP_CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for &u in chunk {
            let target = target.clone();
            set.spawn(async move { (u, target.token(&format!("soak-user{u}"), "user").await) });
        }
        let mut got = Vec::with_capacity(chunk.len());
        while let Some(joined) = set.join_next().await {
            let (u, token) = joined.map_err(|e| TargetError::Scenario(e.to_string()))?;
            got.push((u, token?));
        }
        got.sort();
        tokens.extend(got.into_iter().map(|(_, t)| t));
    }
    Ok(Shared {
        target,
        tokens,
        admin,
        venues,
        on_sale: Mutex::new(Vec::new()),
        counts: Counts::default(),
        first_event: Mutex::new(None),
        error_kinds: Mutex::new(Default::default()),
    })
}

/// Creates the next event (at the next venue), on sale now, starting `event_lead` from now.
async fn create_event(shared: &Shared, cfg: &SoakConfig) -> Result<(), TargetError> {
    let n = shared.counts.events_created.load(Ordering::Relaxed);
    let starts_at = humantime::format_rfc3339_seconds(SystemTime::now() + cfg.event_lead).to_string();
    let event = json!({
        "name": format!("Soak Night {n}"), "description": "soak", "category": "music",
        "performers": [{"name": "The Soakers"}], "venue_id": shared.venues[n as usize % shared.venues.len()],
        "starts_at": starts_at,
        "prices": [
            {"section": "FLOOR", "price": {"amount": 5000, "currency": "USD"}},
            {"section": "LAWN", "price": {"amount": 2000, "currency": "USD"}}
        ]
    });
    // The sale stops a margin before the start the server was given (whole seconds, rounded down).
    let sell_until = Instant::now() + cfg.event_lead.saturating_sub(SALE_STOP_BEFORE_START + Duration::from_secs(1));
    let event = shared.target.post("/v1/events", Some(&shared.admin), event, 201).await?;
    let id = event["event_id"].as_str().unwrap_or_default().to_owned();
    shared.first_event.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| id.clone());
    let mut on_sale = shared.on_sale();
    let now = Instant::now();
    on_sale.retain(|e| e.sell_until > now);
    on_sale.push(OnSale { id, sell_until });
    shared.counts.events_created.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Creates an event every `event_every` until stopped.
async fn keep_creating(shared: Arc<Shared>, cfg: SoakConfig, stop: Arc<AtomicBool>) -> Result<(), TargetError> {
    let mut tick = tokio::time::interval_at(Instant::now() + cfg.event_every, cfg.event_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if !stop.load(Ordering::Relaxed) {
            create_event(&shared, &cfg).await?;
        }
    }
    Ok(())
}

/// Buyer `n`: a hold on an event on sale, then its checkout, its release, or nothing. True
/// unless a request failed (refusals are answers).
async fn buy(shared: Arc<Shared>, n: u64) -> bool {
    let mut rng = rand::rngs::StdRng::seed_from_u64(n);
    let event = {
        let on_sale = shared.on_sale();
        let now = Instant::now();
        let open: Vec<&OnSale> = on_sale.iter().filter(|e| e.sell_until > now).collect();
        if open.is_empty() {
            return true;
        }
        open[rng.gen_range(0..open.len())].id.clone()
    };
    let body = if rng.gen_bool(SEATED_SHARE) {
        // Distinct seats: a hold naming a seat twice is a bad request (400), not a conflict.
        let seats: std::collections::BTreeSet<String> = (0..rng.gen_range(1..=SEATS_PER_HOLD_MAX))
            .map(|_| format!("FLOOR-R{}-{}", rng.gen_range(0..FLOOR_ROWS), rng.gen_range(1..=FLOOR_ROW_SEATS)))
            .collect();
        json!({"seats": seats})
    } else {
        json!({"section": "LAWN", "quantity": rng.gen_range(1..=SEATS_PER_HOLD_MAX)})
    };
    let token = &shared.tokens[(n % shared.tokens.len() as u64) as usize];
    let (http, url, counts) = (&shared.target.http, &shared.target.url, &shared.counts);
    let held = http.post(format!("{url}/v1/events/{event}/holds")).bearer_auth(token).json(&body).send().await;
    let Ok(held) = held else { return shared.error("hold", None) };
    let status = held.status().as_u16();
    let Ok(answer) = held.json::<Value>().await else { return shared.error("hold", Some((status, &Value::Null))) };
    match status {
        201 => {
            counts.held.fetch_add(1, Ordering::Relaxed);
        }
        409 => return count(&counts.refused, true),
        _ => return shared.error("hold", Some((status, &answer))),
    }
    let hold_id = answer["hold_id"].as_str().unwrap_or_default();
    let then: f64 = rng.gen();
    if then < CHECKOUT_SHARE {
        let paid = http
            .post(format!("{url}/v1/holds/{hold_id}/checkout"))
            .bearer_auth(token)
            .json(&json!({"payment_method": "sandbox_ok"}))
            .send()
            .await;
        shared.follow_up("checkout", paid, 201, &counts.checkouts).await
    } else if then < CHECKOUT_SHARE + RELEASE_SHARE {
        let released = http.delete(format!("{url}/v1/holds/{hold_id}")).bearer_auth(token).send().await;
        shared.follow_up("release", released, 204, &counts.releases).await
    } else {
        count(&counts.left, true)
    }
}

fn count(counter: &AtomicU64, ok: bool) -> bool {
    counter.fetch_add(1, Ordering::Relaxed);
    ok
}

/// The server's resident memory, in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Samples RSS every [`RSS_SAMPLE_EVERY`] for `duration`, and prints a line every minute as it
/// goes. Returns the minutes and every RSS sample (time since the start, MiB).
async fn watch(
    shared: Arc<Shared>,
    probe: NodeProbe,
    pid: u32,
    data_dir: PathBuf,
    duration: Duration,
) -> Result<(Vec<Minute>, Vec<(Duration, f64)>), TargetError> {
    let start = Instant::now();
    let per_minute = (REPORT_EVERY.as_secs() / RSS_SAMPLE_EVERY.as_secs()) as u32;
    let ticks = (duration.as_secs() / RSS_SAMPLE_EVERY.as_secs()) as u32;
    let mut samples: Vec<(Duration, f64)> = Vec::new();
    let mut minutes: Vec<Minute> = Vec::new();
    let mut before = shared.counts.snapshot();
    let mut minute_max: f64 = 0.0;
    println!("{}", minute_header());
    for k in 1..=ticks {
        tokio::time::sleep_until(start + RSS_SAMPLE_EVERY * k).await;
        let rss = rss_mib(pid).ok_or_else(|| TargetError::Scenario(format!("cannot read /proc/{pid}/status")))?;
        samples.push((start.elapsed(), rss));
        minute_max = minute_max.max(rss);
        if k % per_minute != 0 {
            continue;
        }
        let pages = probe.read().await?;
        let now = shared.counts.snapshot();
        let booked: [u64; 6] = std::array::from_fn(|i| now[i] - before[i]);
        let data_dir = data_dir.clone();
        let disk = tokio::task::spawn_blocking(move || dir_bytes(&data_dir)).await.unwrap_or(0);
        let m = Minute {
            minute: k / per_minute,
            rss_mib: rss,
            rss_max_mib: minute_max,
            disk_mib: disk as f64 / f64::from(1u32 << 20),
            booked,
            events_created: now[6],
            archived: pages.sum("boxoffice_archived_events_total", None) as u64,
            snapshots: pages.snapshots(),
            holds_in_memory: (pages.sum(MACHINE_RECORDS, Some("kind=\"holds_active\""))
                + pages.sum(MACHINE_RECORDS, Some("kind=\"holds_ended\""))) as u64,
            orders_in_memory: pages.sum(MACHINE_RECORDS, Some("kind=\"orders\"")) as u64,
        };
        println!("{}", minute_line(&m));
        minutes.push(m);
        before = now;
        minute_max = 0.0;
    }
    Ok((minutes, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict on one sample at the end of each minute, from `mib`, of a run as long.
    fn judged(mib: &[f64]) -> Flatness {
        let samples: Vec<(Duration, f64)> =
            mib.iter().enumerate().map(|(i, m)| (Duration::from_secs(60 * (i as u64 + 1)), *m)).collect();
        Flatness::of(&samples, Duration::from_secs(60 * mib.len() as u64))
    }

    #[test]
    fn rss_that_keeps_rising_is_not_flat_and_a_steady_sawtooth_is() {
        // Measured: the change feeds filling (minute 10 to 20 of a 20-minute soak); after that
        // was mended, a slower rise (peaks 333 → 348 MiB from minute 14 to 20); and a rise of
        // 2.5% a minute.
        let rising = [
            110., 142., 168., 202., 214., 233., 242., 253., 251., 259., 275., 294., 304., 286., 286., 305., 316., 318.,
            321., 329.,
        ];
        let f = judged(&rising);
        assert_eq!(f.peaks_mib, (304.0, 329.0));
        assert!(!f.flat, "{f:?}");
        let slower = [
            135., 181., 232., 238., 239., 235., 250., 251., 257., 271., 271., 289., 297., 333., 335., 343., 319., 328.,
            328., 348.,
        ];
        // (Minute 15 ends the third quarter's window, so its sample counts in the last.)
        let f = judged(&slower);
        assert_eq!(f.peaks_mib, (333.0, 348.0));
        assert!(!f.flat, "{f:?}");
        let slow: Vec<f64> = (0..10).map(|i| 200.0 * 1.025_f64.powi(i)).collect();
        assert!(!judged(&slow).flat);
        // Measured: snapshots and compactions every minute or two, peaks that do not climb.
        let sawtooth = [124., 168., 200., 232., 228., 233., 258., 252., 257., 247.];
        let f = judged(&sawtooth);
        assert_eq!((f.second_half_mib, f.peaks_mib), ((228.0, 258.0), (258.0, 257.0)));
        assert!(f.flat, "{f:?}");
        // Too short to have quarters with samples: not judged flat.
        assert!(!Flatness::of(&[], Duration::from_secs(600)).flat);
    }

    #[test]
    fn the_server_gets_the_soaks_delays() {
        let cfg = SoakConfig::default();
        assert_eq!(
            cfg.server_args(),
            [
                "--hold-ttl",
                "30000ms",
                "--archive-after",
                "60000ms",
                "--cache-mb",
                "256",
                "--snapshot-every-logs",
                "2000"
            ]
        );
        assert!(cfg.check().is_ok());
        assert!(SoakConfig { snapshot_every_logs: 0, ..cfg.clone() }.check().is_err());
        assert!(SoakConfig { duration: Duration::from_secs(90), ..cfg.clone() }.check().is_err());
        assert!(SoakConfig { event_lead: SALE_STOP_BEFORE_START, ..cfg }.check().is_err());
    }

    #[test]
    fn files_under_a_directory_are_summed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 23]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 123);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_mib(std::process::id()).is_some_and(|mib| mib > 0.0));
    }
}
