//! Browsing under load: many events, a 100:1 read/write mix, popularity skewed so a few events
//! are hot. Reads are event details and seat maps (what the api's read cache serves); writes are
//! holds of one seat, half of them released again. Two runs: a closed loop finds the peak; an
//! open loop offered a share of that peak measures latency from when each request was due. The
//! cache hit ratio comes from the server's own counters (`api_cache_requests_total`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::pace::{open_loop, Paced};
use crate::report::{Latencies, Report};
use crate::target::{Target, TargetError};

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
        }
    }
}

/// Seats of every event: `ROWS` rows of `SEATS_PER_ROW` (a seat map of about 30 KiB).
const ROWS: usize = 10;
const SEATS_PER_ROW: u32 = 30;
/// Buyers whose tokens the writes use.
const BUYERS: usize = 64;
/// Share of successful holds released again at once.
const RELEASE_SHARE: f64 = 0.5;

/// Picks event ranks with Zipf-like popularity, by binary search over cumulative weights.
struct Popularity {
    cumulative: Vec<f64>,
}

impl Popularity {
    fn new(n: usize, skew: f64) -> Popularity {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(skew);
                total
            })
            .collect();
        Popularity { cumulative }
    }

    fn pick(&self, rng: &mut impl Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.gen_range(0.0..total);
        self.cumulative.partition_point(|c| *c <= x).min(self.cumulative.len() - 1)
    }
}

/// What one request was, and whether it answered as the API allows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

struct World {
    target: Arc<Target>,
    events: Vec<String>,
    tokens: Vec<String>,
    popularity: Popularity,
    reads_per_write: u32,
}

impl World {
    /// One request of the mix: a write once in `reads_per_write + 1`, else a read. Answers its
    /// kind and whether it succeeded (a 409 for a taken seat is a success: the API said no).
    async fn one(&self, rng: &mut impl Rng) -> (Kind, bool) {
        let event = &self.events[self.popularity.pick(rng)];
        if rng.gen_range(0..=self.reads_per_write) == 0 {
            return (Kind::Write, self.write(event, rng).await);
        }
        (Kind::Read, self.read(event, rng).await)
    }

    /// Event details or the seat map, half and half.
    async fn read(&self, event: &str, rng: &mut impl Rng) -> bool {
        let path = if rng.gen_bool(0.5) { format!("/v1/events/{event}") } else { format!("/v1/events/{event}/seats") };
        match self.target.http.get(format!("{}{}", self.target.url, path)).send().await {
            Ok(resp) => resp.status() == 200 && resp.bytes().await.is_ok(),
            Err(_) => false,
        }
    }

    async fn write(&self, event: &str, rng: &mut impl Rng) -> bool {
        let token = &self.tokens[rng.gen_range(0..self.tokens.len())];
        let seat = format!("FLOOR-{}-{}", row_name(rng.gen_range(0..ROWS)), rng.gen_range(1..=SEATS_PER_ROW));
        let url = format!("{}/v1/events/{event}/holds", self.target.url);
        let Ok(resp) = self.target.http.post(url).bearer_auth(token).json(&json!({"seats": [seat]})).send().await
        else {
            return false;
        };
        let status = resp.status().as_u16();
        let Ok(body) = resp.json::<serde_json::Value>().await else { return false };
        if status == 409 {
            return true;
        }
        if status != 201 {
            return false;
        }
        if rng.gen_bool(RELEASE_SHARE) {
            let hold_id = body["hold_id"].as_str().unwrap_or_default();
            let url = format!("{}/v1/holds/{hold_id}", self.target.url);
            return matches!(self.target.http.delete(url).bearer_auth(token).send().await, Ok(r) if r.status() == 204);
        }
        true
    }
}

fn row_name(r: usize) -> String {
    char::from(b'A' + (r % 26) as u8).to_string()
}

async fn load(target: &Arc<Target>, cfg: &BrowseBenchConfig) -> Result<(Vec<String>, f64), TargetError> {
    let admin = target.token("browse-bench-admin", "admin").await?;
    let rows: Vec<_> = (0..ROWS).map(|r| json!({"id": row_name(r), "seats": SEATS_PER_ROW})).collect();
    let venue = json!({
        "name": "Bench Arena", "city": "Lisbon", "country": "PT", "location": {"lat": 38.72, "lon": -9.14},
        "sections": [{"id": "FLOOR", "name": "Floor", "kind": "seated", "rows": rows},
                     {"id": "LAWN", "name": "Lawn", "kind": "general", "capacity": 1_000}]
    });
    let venue = target.post("/v1/venues", Some(&admin), venue, 201).await?;
    let venue_id = venue["venue_id"].as_str().unwrap_or_default().to_owned();
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..cfg.load_concurrency.max(1) {
        let (target, admin, venue_id, next, total) =
            (target.clone(), admin.clone(), venue_id.clone(), next.clone(), cfg.events as u64);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, TargetError>(ids);
                }
                let body = json!({
                    "name": format!("Browse Night {n}"), "description": "bench", "category": "music",
                    "performers": [{"name": "The Benchmarks"}], "venue_id": venue_id,
                    "starts_at": "2099-06-01T20:00:00Z",
                    "prices": [{"section": "FLOOR", "price": {"amount": 5_000, "currency": "USD"}},
                               {"section": "LAWN", "price": {"amount": 2_000, "currency": "USD"}}]
                });
                let event = target.post("/v1/events", Some(&admin), body, 201).await?;
                ids.push(event["event_id"].as_str().unwrap_or_default().to_owned());
            }
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.map_err(|e| TargetError::Spawn(e.to_string()))??);
    }
    Ok((ids, cfg.events as f64 / started.elapsed().as_secs_f64()))
}

/// The server's read-cache counters: (hits, misses), summed over both caches.
async fn cache_counters(target: &Target) -> (f64, f64) {
    let Ok(metrics) = target.metrics().await else { return (0.0, 0.0) };
    let sum = |result: &str| metrics.sum("api_cache_requests_total", Some(&format!("result=\"{result}\"")));
    (sum("hit"), sum("miss"))
}

fn hit_ratio(before: (f64, f64), after: (f64, f64)) -> String {
    let (hits, misses) = (after.0 - before.0, after.1 - before.1);
    if hits + misses <= 0.0 {
        return "n/a (the server reports no cache counters)".into();
    }
    format!("{:.1}% ({hits:.0} hits, {misses:.0} reads of the store)", 100.0 * hits / (hits + misses))
}

#[derive(Default)]
struct Mix {
    reads: Latencies,
    writes: Latencies,
    errors: u64,
}

async fn closed_loop(world: &Arc<World>, cfg: &BrowseBenchConfig) -> Result<Mix, TargetError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for n in 0..cfg.clients.max(1) {
        let (world, stop) = (world.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(10_000 + n as u64);
            let mut mix = Mix::default();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match world.one(&mut rng).await {
                    (Kind::Read, true) => mix.reads.record(started.elapsed()),
                    (Kind::Write, true) => mix.writes.record(started.elapsed()),
                    (_, false) => mix.errors += 1,
                }
            }
            mix
        }));
    }
    tokio::time::sleep(cfg.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Mix::default();
    for client in clients {
        let mix = client.await.map_err(|e| TargetError::Spawn(e.to_string()))?;
        total.reads.merge(mix.reads);
        total.writes.merge(mix.writes);
        total.errors += mix.errors;
    }
    Ok(total)
}

/// Reads and writes offered at fixed rates, side by side.
async fn open_loops(world: &Arc<World>, cfg: &BrowseBenchConfig, read_rate: f64, write_rate: f64) -> (Paced, Paced) {
    let reads = {
        let world = world.clone();
        open_loop(read_rate, cfg.duration, cfg.in_flight_max, move |n| {
            let world = world.clone();
            async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(5_000_000 + n);
                let event = &world.events[world.popularity.pick(&mut rng)];
                world.read(event, &mut rng).await
            }
        })
    };
    let writes = {
        let world = world.clone();
        open_loop(write_rate, cfg.duration, cfg.in_flight_max, move |n| {
            let world = world.clone();
            async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(9_000_000 + n);
                let event = &world.events[world.popularity.pick(&mut rng)];
                world.write(event, &mut rng).await
            }
        })
    };
    tokio::join!(reads, writes)
}

pub async fn run(target: Arc<Target>, cfg: BrowseBenchConfig) -> Result<Report, TargetError> {
    let (events, load_rate) = load(&target, &cfg).await?;
    let mut tokens = Vec::with_capacity(BUYERS);
    for n in 0..BUYERS {
        tokens.push(target.token(&format!("browse-bench-buyer{n}"), "user").await?);
    }
    let popularity = Popularity::new(events.len(), cfg.popularity_skew);
    let world =
        Arc::new(World { target: target.clone(), events, tokens, popularity, reads_per_write: cfg.reads_per_write });
    let secs = cfg.duration.as_secs_f64();

    let before = cache_counters(&target).await;
    let mut peak = closed_loop(&world, &cfg).await?;
    let after_peak = cache_counters(&target).await;
    let (peak_reads, peak_writes) = (peak.reads.len() as f64 / secs, peak.writes.len() as f64 / secs);

    let share = cfg.latency_load_of_peak;
    let (mut reads, mut writes) = open_loops(&world, &cfg, peak_reads * share, peak_writes * share).await;
    let after_latency = cache_counters(&target).await;

    let mut report = Report::new(&format!("browse ({}, {} events)", target.describe(), cfg.events));
    report.line("events loaded", format!("{} at {load_rate:.0}/s", cfg.events));
    report.line(
        "peak (closed loop)",
        format!(
            "{peak_reads:.0} reads/s, {peak_writes:.0} writes/s by {} clients ({} errors)",
            cfg.clients, peak.errors
        ),
    );
    report.latencies("peak: read", &mut peak.reads);
    report.latencies("peak: write", &mut peak.writes);
    report.line("peak: cache hit ratio", hit_ratio(before, after_peak));
    report.line(
        "latency run (open loop)",
        format!(
            "{:.0} reads/s and {:.0} writes/s offered ({:.0}% of peak)",
            peak_reads * share,
            peak_writes * share,
            share * 100.0
        ),
    );
    report.latencies("latency run: read", &mut reads.latencies);
    report.latencies("latency run: write", &mut writes.latencies);
    report.line("latency run: errors", format!("{} reads, {} writes", reads.errors, writes.errors));
    report.line("latency run: not started (server behind)", reads.skipped + writes.skipped);
    report.line("latency run: cache hit ratio", hit_ratio(after_peak, after_latency));
    Ok(report)
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
}
