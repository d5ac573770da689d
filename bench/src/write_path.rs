//! The write path: uncontended holds, every one of which succeeds — each hold takes one seat no
//! other hold of the run asks for while it lasts — so the figures are the cost of a durable,
//! replicated write through the REST api and nothing else (no conflicts, no refusals answered
//! from memory). Two runs on the same server: a closed loop of `clients` finds the peak, then,
//! once the closed loop's holds have expired and [`WARM_UP`] at the new rate has opened the
//! connections again, an open loop offers [`OPEN_LOOP_SHARE`] of it and measures each hold from
//! when it was due (`pace.rs`), with the longest stall, while the nodes' `/metrics` tell how many
//! snapshots they built meanwhile.
//!
//! Inventory: one big seated event per shard (created until every shard has one; events on an
//! already covered shard are used too), holds spread over the shards in turn, each shard's seats
//! taken in order. Holds are left to expire (the server runs with a short `--hold-ttl`), so a seat
//! comes round again only after [`Inventory::cycle_holds`] holds: at any rate this machine
//! reaches, long after its hold expired. A hold that finds its seat still taken is counted as
//! refused, which the report flags: it means the inventory was recycled too soon.
//!
//! The figures of a run are a [`WritePathRow`]; a baseline measured by other means (PostgreSQL
//! driven by `pgbench` with the same transaction) is another row of the same table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::error::TargetError;
use crate::pace::{open_loop, skipped_line, Paced};
use crate::probe::{Housekeeping, NodeProbe};
use crate::report::{print_table, Latencies, Report};
use crate::target::Target;

#[derive(Clone, Debug)]
pub struct WritePathConfig {
    /// Clients of the closed loop that finds the peak, each waiting for its answer.
    pub clients: usize,
    /// Length of each of the two runs.
    pub duration: Duration,
    /// Users the holds are spread over (a token each); events have no per-user limit.
    pub users: usize,
    /// Seats of each event, in rows of [`ROW_SEATS`].
    pub seats_per_event: u32,
    /// How long a hold lasts (the server's `--hold-ttl`): what frees the seats for the next round.
    pub hold_ttl: Duration,
}

impl Default for WritePathConfig {
    fn default() -> Self {
        WritePathConfig {
            clients: 64,
            duration: Duration::from_secs(30),
            users: 1_000,
            seats_per_event: 100_000,
            hold_ttl: Duration::from_secs(30),
        }
    }
}

impl WritePathConfig {
    /// The server arguments the run needs besides the limits being off: its hold lifetime.
    pub fn server_args(&self) -> Vec<String> {
        vec!["--hold-ttl".to_owned(), format!("{}ms", self.hold_ttl.as_millis())]
    }

    pub fn check(&self) -> Result<(), TargetError> {
        let usage = |what: &str| Err(TargetError::Scenario(what.to_owned()));
        if self.clients == 0 || self.users == 0 {
            return usage("clients and users are at least 1");
        }
        let seats = self.seats_per_event;
        if seats == 0 || !seats.is_multiple_of(ROW_SEATS) || seats > raft_store::SEATS_PER_VENUE_MAX {
            return usage("seats per event are a multiple of 1,000 up to 200,000");
        }
        Ok(())
    }
}

/// Share of the closed loop's peak that the open loop offers.
pub const OPEN_LOOP_SHARE: f64 = 0.7;
/// The longest pause a sustained write run may show (the performance issue's bound): answers
/// later than this from when they were due are counted, and grouped into stall episodes.
pub const STALL_THRESHOLD: Duration = Duration::from_millis(20);
/// Seats per row of the events' one section.
pub const ROW_SEATS: u32 = raft_store::SEATS_PER_ROW_MAX;
const SECTION: &str = "MAIN";
/// How long the server may answer nothing before the open loop stops starting requests: its
/// in-flight bound is this much of the offered rate, so any stall shorter than this shows in
/// the latencies rather than as requests not started.
const IN_FLIGHT_SPAN: Duration = Duration::from_secs(1);
const IN_FLIGHT_MIN: usize = 64;
/// Connections the bench may open at once (its file-descriptor budget, well below 20,000).
const IN_FLIGHT_MAX: usize = 8_192;
/// Events created per shard at most while looking for one on every shard (ids are hashed to
/// shards: with 8 shards about 22 events cover them all).
const EVENT_ATTEMPTS_PER_SHARD: usize = 8;
/// Tokens fetched at once while the users are set up.
const SETUP_CONCURRENCY: usize = 32;
/// How often the nodes' snapshot counters are read during the open loop, to place each stall
/// beside the snapshots built around it.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How long past their lifetime the closed loop's holds may take to expire before the open loop.
const EXPIRY_WAIT_MAX: Duration = Duration::from_secs(30);
/// The open loop runs this long at its rate, unmeasured, before it is measured: the expiry wait
/// leaves the client's connections idle (closed) and the servers' caches cool, and a measured
/// loop would otherwise start with an episode of new connections.
const WARM_UP: Duration = Duration::from_secs(3);
/// Stall episodes listed in the report, worst first.
const EPISODES_SHOWN: usize = 5;

/// Where each hold goes.
pub struct Inventory {
    /// Event ids by shard, every shard with at least one.
    by_shard: Vec<Vec<String>>,
    seats_per_event: u32,
}

impl Inventory {
    /// Hold `n`'s event and seat: shards in turn, then the shard's events in turn, then the
    /// event's seats in order.
    fn slot(&self, n: u64) -> (&str, String) {
        let shards = self.by_shard.len() as u64;
        let events = &self.by_shard[(n % shards) as usize];
        let k = n / shards;
        let event = &events[(k % events.len() as u64) as usize];
        let seat = (k / events.len() as u64) % u64::from(self.seats_per_event);
        (event, format!("{SECTION}-R{}-{}", seat / u64::from(ROW_SEATS), seat % u64::from(ROW_SEATS) + 1))
    }

    /// Holds after which a seat is asked for again, at the fewest: on the shard with the fewest
    /// events. The seat is free again only if its hold expired meanwhile.
    pub fn cycle_holds(&self) -> u64 {
        let fewest = self.by_shard.iter().map(Vec::len).min().unwrap_or(0) as u64;
        self.by_shard.len() as u64 * fewest * u64::from(self.seats_per_event)
    }

    pub fn events(&self) -> usize {
        self.by_shard.iter().map(Vec::len).sum()
    }
}

/// The longest time without an answer: from `at` (since the run's start) for `length`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Gap {
    pub at: Duration,
    pub length: Duration,
}

impl Gap {
    /// The longest gap between consecutive answers at `times` (since the start), counting the
    /// start and `end` as answers: nothing answered in a gap while requests were outstanding.
    pub(crate) fn longest(mut times: Vec<Duration>, end: Duration) -> Gap {
        times.retain(|t| *t <= end);
        times.sort_unstable();
        let mut previous = Duration::ZERO;
        let mut longest = Gap::default();
        for t in times.into_iter().chain([end]) {
            if t - previous > longest.length {
                longest = Gap { at: previous, length: t - previous };
            }
            previous = t;
        }
        longest
    }

    fn line(&self) -> String {
        format!("{:.1} ms (from {:.2} s)", ms(self.length), self.at.as_secs_f64())
    }
}

/// A stretch of the open loop in which holds were answered later than [`STALL_THRESHOLD`] from
/// when they were due; overlapping late holds make one episode.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// When its first late hold was due, since the start.
    pub from: Duration,
    /// When its last late hold was answered.
    pub to: Duration,
    pub worst: Duration,
    pub late: u64,
    /// Snapshots the nodes built within a second of it (from the counters read every second).
    pub snapshots_near: u64,
}

/// One answered hold of the open loop: when it was due and how long it took from then.
#[derive(Clone, Copy)]
pub(crate) struct Answer {
    pub(crate) due: Duration,
    pub(crate) latency: Duration,
}

/// Late answers (over `threshold`) grouped into episodes, worst first.
pub(crate) fn episodes(answers: &[Answer], threshold: Duration) -> Vec<Episode> {
    let mut late: Vec<Answer> = answers.iter().copied().filter(|a| a.latency > threshold).collect();
    late.sort_by_key(|a| a.due);
    let mut found: Vec<Episode> = Vec::new();
    for a in late {
        let answered = a.due + a.latency;
        match found.last_mut() {
            Some(e) if a.due <= e.to => {
                e.to = e.to.max(answered);
                e.worst = e.worst.max(a.latency);
                e.late += 1;
            }
            _ => found.push(Episode { from: a.due, to: answered, worst: a.latency, late: 1, snapshots_near: 0 }),
        }
    }
    found.sort_by_key(|e| std::cmp::Reverse(e.worst));
    found
}

/// Snapshot counters read every [`SAMPLE_INTERVAL`]: (time since the start, snapshots so far).
#[derive(Default)]
struct Samples(Vec<(Duration, u64)>);

impl Samples {
    /// Snapshots counted in the sampling intervals that overlap `from - 1 s ..= to + 1 s`.
    fn snapshots_near(&self, from: Duration, to: Duration) -> u64 {
        let (lo, hi) = (from.saturating_sub(SAMPLE_INTERVAL), to + SAMPLE_INTERVAL);
        self.0.windows(2).filter(|w| w[1].0 >= lo && w[0].0 <= hi).map(|w| w[1].1.saturating_sub(w[0].1)).sum()
    }
}

/// The closed loop's figures: the peak.
pub struct ClosedFigures {
    pub clients: usize,
    pub elapsed: Duration,
    pub held: u64,
    pub refused: u64,
    pub errors: u64,
    pub latency: Latencies,
    pub longest_gap: Gap,
    pub housekeeping: Option<Housekeeping>,
}

impl ClosedFigures {
    /// Durable holds per second: each was replicated and flushed before it was answered.
    pub fn held_per_s(&self) -> f64 {
        self.held as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// The open loop's figures: latency below the peak.
pub struct OpenFigures {
    pub rate: f64,
    pub duration: Duration,
    pub in_flight_max: usize,
    /// Latencies from when each hold was due, errors, and holds not started for want of a slot.
    pub paced: Paced,
    pub refused: u64,
    pub longest_gap: Gap,
    /// Holds answered later than [`STALL_THRESHOLD`] from when they were due.
    pub late: u64,
    /// Worst first.
    pub episodes: Vec<Episode>,
    pub housekeeping: Option<Housekeeping>,
}

impl OpenFigures {
    /// The longest any hold waited, from when it was due: the longest stall a client saw.
    pub fn longest_stall(&mut self) -> Duration {
        Duration::from_secs_f64(self.paced.latencies.quantile_ms(1.0) / 1_000.0)
    }
}

/// One store's figures: a row of the comparison table.
pub struct WritePathRow {
    /// "Boxoffice, 3 nodes".
    pub store: String,
    pub peak: ClosedFigures,
    pub open: OpenFigures,
    /// Holds after which a seat comes round again, and how long the server keeps a hold;
    /// `None` for PostgreSQL's row (pgbench's seats are updated in place and never expire).
    pub cycle: Option<(u64, Duration)>,
    /// The row the others' peaks are multiples of in the comparison (PostgreSQL's).
    pub baseline: bool,
}

impl WritePathRow {
    pub fn report(&mut self) -> Report {
        let mut r = Report::new(&format!("write path: uncontended holds ({})", self.store));
        let p = &mut self.peak;
        r.line("closed loop", format!("{} clients for {:.1} s", p.clients, p.elapsed.as_secs_f64()));
        r.line("  durable holds/s", format!("{:.0} (the peak)", p.held_per_s()));
        latency_line(&mut r, "  hold latency", &mut p.latency);
        r.line("  longest gap without an answer", p.longest_gap.line());
        r.line("  refused / errors", format!("{} / {}", p.refused, p.errors));
        housekeeping_lines(&mut r, "  ", p.housekeeping.as_ref());
        let o = &mut self.open;
        r.line(
            "open loop",
            format!(
                "{:.0} holds/s offered ({:.0}% of the peak) for {:.1} s, at most {} in flight",
                o.rate,
                OPEN_LOOP_SHARE * 100.0,
                o.duration.as_secs_f64(),
                o.in_flight_max
            ),
        );
        latency_line(&mut r, "  latency from when due", &mut o.paced.latencies);
        r.line("  longest stall (worst latency)", format!("{:.1} ms", ms(o.longest_stall())));
        r.line("  longest gap without an answer", o.longest_gap.line());
        let late_share = o.late as f64 * 100.0 / (o.paced.latencies.len() as f64).max(1.0);
        r.line(
            &format!("  over {} ms from due", STALL_THRESHOLD.as_millis()),
            format!("{} holds ({late_share:.3}%) in {} episodes", o.late, o.episodes.len()),
        );
        for e in o.episodes.iter().take(EPISODES_SHOWN) {
            r.line(
                "    episode",
                format!(
                    "{:.2}–{:.2} s: worst {:.1} ms, {} late, {} snapshots within 1 s",
                    e.from.as_secs_f64(),
                    e.to.as_secs_f64(),
                    ms(e.worst),
                    e.late,
                    e.snapshots_near
                ),
            );
        }
        r.line("  not started (no in-flight slot)", skipped_line(o.paced.skipped, o.paced.skipped_span));
        r.line("  refused / errors", format!("{} / {}", o.refused, o.paced.errors));
        housekeeping_lines(&mut r, "  ", o.housekeeping.as_ref());
        if let Some((holds, ttl)) = self.cycle {
            let at_peak = holds as f64 / self.peak.held_per_s().max(1.0);
            r.line(
                "inventory",
                format!(
                    "a seat comes round every {holds} holds ({at_peak:.0} s at the peak); holds last {} s",
                    ttl.as_secs()
                ),
            );
        }
        if self.peak.refused + self.open.refused > 0 {
            r.line("WARNING", "holds were refused: seats came round before their holds expired");
        }
        r
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn latency_line(r: &mut Report, name: &str, l: &mut Latencies) {
    let value = format!(
        "p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, max {:.1} ms ({} answers)",
        l.quantile_ms(0.5),
        l.quantile_ms(0.99),
        l.quantile_ms(0.999),
        l.quantile_ms(1.0),
        l.len()
    );
    r.line(name, value);
}

fn housekeeping_lines(r: &mut Report, indent: &str, h: Option<&Housekeeping>) {
    if let Some(h) = h {
        r.line(&format!("{indent}snapshots"), h.snapshots_line());
        r.line(&format!("{indent}log"), h.entries_line());
    }
}

/// Prints the rows side by side, each store's peak and open-loop tail, with the ratio of each
/// peak to PostgreSQL's when it ran (the goals are multiples of it), else to the first
/// row's.
pub fn print_comparison(rows: &mut [WritePathRow]) {
    let postgres = rows.iter().find(|r| r.baseline);
    let Some(base_row) = postgres.or(rows.first()) else { return };
    let base = base_row.peak.held_per_s().max(f64::EPSILON);
    let ratio = if postgres.is_some() { "× PostgreSQL" } else { "ratio" };
    let mut lines = vec![vec![
        "store".to_owned(),
        "peak holds/s".to_owned(),
        ratio.to_owned(),
        "open loop p50 / p99 / p999 / max ms".to_owned(),
        "not started".to_owned(),
        "errors".to_owned(),
    ]];
    for row in rows.iter_mut() {
        let l = &mut row.open.paced.latencies;
        lines.push(vec![
            row.store.clone(),
            format!("{:.0}", row.peak.held_per_s()),
            format!("{:.2}", row.peak.held_per_s() / base),
            format!(
                "{:.2} / {:.2} / {:.2} / {:.1}",
                l.quantile_ms(0.5),
                l.quantile_ms(0.99),
                l.quantile_ms(0.999),
                l.quantile_ms(1.0)
            ),
            row.open.paced.skipped.to_string(),
            (row.peak.errors + row.open.paced.errors).to_string(),
        ]);
    }
    println!("== write path: uncontended holds, compared ==");
    print_table(&lines);
}

/// Boxoffice's side: its users, its events, and a hold over HTTP.
struct Boxoffice {
    target: Arc<Target>,
    tokens: Vec<String>,
    inventory: Inventory,
}

/// What one hold came to.
enum Held {
    Yes,
    Refused,
    Error,
}

impl Boxoffice {
    async fn setup(target: Arc<Target>, cfg: &WritePathConfig, shards: u32) -> Result<Boxoffice, TargetError> {
        let tokens = tokens(&target, cfg.users).await?;
        let inventory = events(&target, cfg.seats_per_event, shards).await?;
        Ok(Boxoffice { target, tokens, inventory })
    }

    async fn hold(&self, n: u64) -> Held {
        let (event, seat) = self.inventory.slot(n);
        let token = &self.tokens[(n % self.tokens.len() as u64) as usize];
        let path = format!("{}/v1/events/{event}/holds", self.target.url);
        let sent = self.target.http.post(path).bearer_auth(token).json(&json!({"seats": [seat]})).send().await;
        let Ok(resp) = sent else { return Held::Error };
        let status = resp.status().as_u16();
        // The body is read either way, so the connection goes back to the pool.
        match (status, resp.bytes().await) {
            (201, Ok(_)) => Held::Yes,
            (409, Ok(_)) => Held::Refused,
            _ => Held::Error,
        }
    }
}

/// Dev tokens of `users` users, fetched a few at a time.
async fn tokens(target: &Arc<Target>, users: usize) -> Result<Vec<String>, TargetError> {
    let mut tokens = Vec::with_capacity(users);
    for chunk in (0..users).collect::<Vec<_>>().chunks(SETUP_CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for &u in chunk {
            let target = target.clone();
            set.spawn(async move { (u, target.token(&format!("write-path-user{u}"), "user").await) });
        }
        let mut got: Vec<(usize, String)> = Vec::with_capacity(chunk.len());
        while let Some(joined) = set.join_next().await {
            let (u, token) = joined.map_err(|e| TargetError::Scenario(e.to_string()))?;
            got.push((u, token?));
        }
        got.sort();
        tokens.extend(got.into_iter().map(|(_, t)| t));
    }
    Ok(tokens)
}

/// One venue of `seats` seats, and events there until every one of `shards` shards has one.
async fn events(target: &Target, seats: u32, shards: u32) -> Result<Inventory, TargetError> {
    let admin = target.token("write-path-admin", "admin").await?;
    let rows: Vec<_> = (0..seats / ROW_SEATS).map(|r| json!({"id": format!("R{r}"), "seats": ROW_SEATS})).collect();
    let venue = json!({
        "name": "Write Path Arena", "city": "Porto", "country": "PT", "location": {"lat": 41.1, "lon": -8.6},
        "sections": [{"id": SECTION, "name": "Main", "kind": "seated", "rows": rows}]
    });
    let venue = target.post("/v1/venues", Some(&admin), venue, 201).await?;
    let mut by_shard: Vec<Vec<String>> = vec![Vec::new(); shards.max(1) as usize];
    for n in 0..EVENT_ATTEMPTS_PER_SHARD * by_shard.len() {
        if by_shard.iter().all(|events| !events.is_empty()) {
            break;
        }
        let event = json!({
            "name": format!("Write Path {n}"), "description": "bench", "category": "music",
            "performers": [{"name": "Bench"}], "venue_id": venue["venue_id"], "starts_at": "2099-01-01T20:00:00Z",
            "prices": [{"section": SECTION, "price": {"amount": 5000, "currency": "USD"}}]
        });
        let event = target.post("/v1/events", Some(&admin), event, 201).await?;
        let id = event["event_id"].as_str().unwrap_or_default();
        let parsed = raft_store::EventId::parse(id)
            .ok_or_else(|| TargetError::Scenario(format!("the server gave event id {id:?}")))?;
        let shard = raft_store::shard_of(&parsed, by_shard.len() as u32) as usize;
        by_shard[shard].push(id.to_owned());
    }
    if by_shard.iter().any(Vec::is_empty) {
        return Err(TargetError::Scenario(format!("no event landed on some of the {shards} shards")));
    }
    Ok(Inventory { by_shard, seats_per_event: seats })
}

/// Runs both loops against `target` (a fresh server started with [`WritePathConfig::server_args`]
/// and the limits off) and returns its row.
pub async fn run(target: Arc<Target>, cfg: &WritePathConfig) -> Result<WritePathRow, TargetError> {
    cfg.check()?;
    let probe = NodeProbe::of(&target);
    let shards = probe.read().await?.shard_count();
    if shards == 0 {
        return Err(TargetError::Scenario("the server's /metrics names no shard".into()));
    }
    let store = Arc::new(Boxoffice::setup(target.clone(), cfg, shards).await?);
    let next = Arc::new(AtomicU64::new(0));
    let peak = closed_loop(&store, &probe, &next, cfg).await?;
    let rate = peak.held_per_s() * OPEN_LOOP_SHARE;
    if rate < 1.0 {
        return Err(TargetError::Scenario(format!("the peak was {:.1} holds/s", peak.held_per_s())));
    }
    expired(&probe, cfg.hold_ttl).await?;
    warm_up(&store, &next, rate).await;
    let open = paced_loop(&store, &probe, &next, rate, cfg.duration).await?;
    Ok(WritePathRow {
        store: format!("Boxoffice, {} ({} events)", target.describe(), store.inventory.events()),
        peak,
        open,
        cycle: Some((store.inventory.cycle_holds(), cfg.hold_ttl)),
        baseline: false,
    })
}

/// Waits until the closed loop's holds have expired: no shard keeps an active hold (every
/// replica's `boxoffice_machine_records{kind="holds_active"}`). Left to expire during the open
/// loop, they would come due together at the closed loop's rate, on top of the open loop's: 70%
/// of the peak plus a wave of expiries at the whole peak. A sale at a steady rate expires holds
/// at the rate it makes them, which is what the open loop then sees once it outlasts the hold
/// lifetime.
async fn expired(probe: &NodeProbe, hold_ttl: Duration) -> Result<(), TargetError> {
    let deadline = Instant::now() + hold_ttl + EXPIRY_WAIT_MAX;
    loop {
        let active = probe.read().await?.sum("boxoffice_machine_records", Some("kind=\"holds_active\"")) as u64;
        if active == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let e = format!("{active} holds still active {:?} after the closed loop", hold_ttl + EXPIRY_WAIT_MAX);
            return Err(TargetError::Scenario(e));
        }
        tokio::time::sleep(SAMPLE_INTERVAL).await;
    }
}

/// Holds at `rate` for [`WARM_UP`], their answers not kept (their holds expire during the
/// measured loop, at its rate).
async fn warm_up(store: &Arc<Boxoffice>, next: &Arc<AtomicU64>, rate: f64) {
    let (store, next) = (store.clone(), next.clone());
    open_loop(rate, WARM_UP, in_flight_max(rate), move |_, _| {
        let (store, n) = (store.clone(), next.fetch_add(1, Ordering::Relaxed));
        async move { !matches!(store.hold(n).await, Held::Error) }
    })
    .await;
}

/// What one closed-loop client saw.
#[derive(Default)]
struct ClientResult {
    held: u64,
    refused: u64,
    errors: u64,
    latency: Latencies,
    answered: Vec<Duration>,
}

async fn closed_loop(
    store: &Arc<Boxoffice>,
    probe: &NodeProbe,
    next: &Arc<AtomicU64>,
    cfg: &WritePathConfig,
) -> Result<ClosedFigures, TargetError> {
    let before = probe.read().await?;
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let clients: Vec<_> = (0..cfg.clients)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                let mut r = ClientResult::default();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let held = store.hold(next.fetch_add(1, Ordering::Relaxed)).await;
                    match held {
                        Held::Yes => r.held += 1,
                        Held::Refused => r.refused += 1,
                        Held::Error => r.errors += 1,
                    }
                    if !matches!(held, Held::Error) {
                        r.latency.record(sent.elapsed());
                        r.answered.push(start.elapsed());
                    }
                }
                r
            })
        })
        .collect();
    let mut total = ClientResult::default();
    for client in clients {
        let r = client.await.map_err(|e| TargetError::Scenario(e.to_string()))?;
        total.held += r.held;
        total.refused += r.refused;
        total.errors += r.errors;
        total.latency.merge(r.latency);
        total.answered.extend(r.answered);
    }
    let elapsed = start.elapsed();
    let after = probe.read().await?;
    Ok(ClosedFigures {
        clients: cfg.clients,
        elapsed,
        held: total.held,
        refused: total.refused,
        errors: total.errors,
        latency: total.latency,
        longest_gap: Gap::longest(total.answered, cfg.duration),
        housekeeping: Some(Housekeeping::between(&before, &after)),
    })
}

/// The open loop's in-flight bound at `rate`: [`IN_FLIGHT_SPAN`] of requests.
fn in_flight_max(rate: f64) -> usize {
    ((rate * IN_FLIGHT_SPAN.as_secs_f64()).ceil() as usize).clamp(IN_FLIGHT_MIN, IN_FLIGHT_MAX)
}

async fn paced_loop(
    store: &Arc<Boxoffice>,
    probe: &NodeProbe,
    next: &Arc<AtomicU64>,
    rate: f64,
    duration: Duration,
) -> Result<OpenFigures, TargetError> {
    let in_flight_max = in_flight_max(rate);
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let before = probe.read().await?;
    let start = Instant::now();
    let sampling = sample_snapshots(probe.clone(), start, before.snapshots());
    let paced = {
        let (store, next, answers, refused) = (store.clone(), next.clone(), answers.clone(), refused.clone());
        open_loop(rate, duration, in_flight_max, move |_, due| {
            let (store, answers, refused) = (store.clone(), answers.clone(), refused.clone());
            let n = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let held = store.hold(n).await;
                let answer = Answer { due: due.saturating_duration_since(start), latency: due.elapsed() };
                match held {
                    Held::Error => return false,
                    Held::Refused => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Held::Yes => {}
                }
                answers.lock().unwrap_or_else(|e| e.into_inner()).push(answer);
                true
            }
        })
        .await
    };
    sampling.stop.store(true, Ordering::Relaxed);
    let samples = sampling.task.await.map_err(|e| TargetError::Scenario(e.to_string()))?;
    let after = probe.read().await?;
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    let mut found = episodes(&answers, STALL_THRESHOLD);
    for e in &mut found {
        e.snapshots_near = samples.snapshots_near(e.from, e.to);
    }
    Ok(OpenFigures {
        rate,
        duration,
        in_flight_max,
        refused: refused.load(Ordering::Relaxed),
        longest_gap: Gap::longest(answers.iter().map(|a| a.due + a.latency).collect(), duration),
        late: answers.iter().filter(|a| a.latency > STALL_THRESHOLD).count() as u64,
        episodes: found,
        paced,
        housekeeping: Some(Housekeeping::between(&before, &after)),
    })
}

/// The sampler reading the snapshot counters while a run lasts.
struct Sampling {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Samples>,
}

/// Reads the nodes' snapshot count every [`SAMPLE_INTERVAL`] until stopped; a failed read is
/// skipped (the counters are cumulative, so the next read covers it).
fn sample_snapshots(probe: NodeProbe, start: Instant, first: u64) -> Sampling {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let mut samples = Samples(vec![(Duration::ZERO, first)]);
        let mut tick = tokio::time::interval_at(start + SAMPLE_INTERVAL, SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stopped.load(Ordering::Relaxed) {
            tick.tick().await;
            if let Ok(pages) = probe.read().await {
                samples.0.push((start.elapsed(), pages.snapshots()));
            }
        }
        samples
    });
    Sampling { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(by_shard: &[usize], seats: u32) -> Inventory {
        let by_shard =
            by_shard.iter().enumerate().map(|(s, n)| (0..*n).map(|e| format!("s{s}e{e}")).collect()).collect();
        Inventory { by_shard, seats_per_event: seats }
    }

    #[test]
    fn holds_go_round_the_shards_then_their_events_then_the_seats() {
        let inv = inventory(&[1, 2], 2_000);
        let slots: Vec<(String, String)> = (0..6).map(|n| inv.slot(n)).map(|(e, s)| (e.to_owned(), s)).collect();
        let want = [
            ("s0e0", "MAIN-R0-1"),
            ("s1e0", "MAIN-R0-1"),
            ("s0e0", "MAIN-R0-2"),
            ("s1e1", "MAIN-R0-1"),
            ("s0e0", "MAIN-R0-3"),
            ("s1e0", "MAIN-R0-2"),
        ];
        assert_eq!(slots, want.map(|(e, s)| (e.to_owned(), s.to_owned())));
        assert_eq!(inv.slot(2 * 1_000).1, "MAIN-R1-1", "seat 1,000 of an event is row 1's first");
        // Shard 0's one event comes round after 2 × 2,000 holds; shard 1's two after twice that.
        assert_eq!(inv.cycle_holds(), 4_000);
        assert_eq!(inv.slot(4_000), inv.slot(0));
        assert_eq!(inv.events(), 3);
    }

    #[test]
    fn every_seat_of_a_cycle_is_asked_for_once() {
        let inv = inventory(&[3, 1, 2], 1_000);
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..inv.cycle_holds() {
            let (event, seat) = inv.slot(n);
            assert!(seen.insert((event.to_owned(), seat)), "hold {n} repeats a seat within a cycle");
        }
    }

    #[test]
    fn the_longest_gap_counts_the_start_and_the_end() {
        let ms = Duration::from_millis;
        let gap = Gap::longest(vec![ms(30), ms(5), ms(10), ms(200)], ms(100));
        assert_eq!(gap, Gap { at: ms(30), length: ms(70) }, "the answer after the end is left out");
        assert_eq!(Gap::longest(vec![ms(50)], ms(60)), Gap { at: ms(0), length: ms(50) });
        assert_eq!(Gap::longest(Vec::new(), ms(60)), Gap { at: ms(0), length: ms(60) });
    }

    #[test]
    fn late_answers_that_overlap_are_one_episode() {
        let ms = Duration::from_millis;
        let a = |due, latency| Answer { due: ms(due), latency: ms(latency) };
        let answers = [a(0, 2), a(100, 50), a(120, 35), a(149, 21), a(151, 2), a(400, 25), a(1_000, 90), a(1_089, 30)];
        let found = episodes(&answers, STALL_THRESHOLD);
        let spans: Vec<(u64, u64, u64, u64)> = found
            .iter()
            .map(|e| (e.from.as_millis() as u64, e.to.as_millis() as u64, e.worst.as_millis() as u64, e.late))
            .collect();
        assert_eq!(spans, vec![(1_000, 1_119, 90, 2), (100, 170, 50, 3), (400, 425, 25, 1)]);
    }

    #[test]
    fn snapshots_are_placed_by_the_second_they_were_counted_in() {
        let s = |secs| Duration::from_secs(secs);
        let samples = Samples(vec![(s(0), 10), (s(1), 10), (s(2), 11), (s(3), 11), (s(4), 13), (s(5), 13)]);
        assert_eq!(samples.snapshots_near(s(2), s(2)), 3, "1–2 s and 3–4 s are within a second");
        assert_eq!(samples.snapshots_near(Duration::from_millis(100), Duration::from_millis(200)), 1);
        assert_eq!(samples.snapshots_near(s(5), s(5)), 2);
    }

    #[test]
    fn the_in_flight_bound_is_a_second_of_the_offered_rate() {
        assert_eq!(in_flight_max(4_200.0), 4_200);
        assert_eq!(in_flight_max(10.0), IN_FLIGHT_MIN);
        assert_eq!(in_flight_max(1e9), IN_FLIGHT_MAX);
    }
}
