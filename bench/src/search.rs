//! Search under load: loads many events, waits until the indexer has them all, then searches
//! (keywords with and without typos, city, distance, dates and categories) while buyers book at a
//! fixed rate. Two runs: a closed loop finds the peak searches per second; an open loop offered a
//! fixed rate below it measures latency, as the client sees it and as the api measured it
//! (`took_ms`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::error::TargetError;
use crate::pace::{open_loop, Paced};
use crate::report::{Latencies, Report};
use crate::target::Target;

#[derive(Clone, Debug)]
pub struct SearchBenchConfig {
    pub events: usize,
    /// Closed-loop searchers of the peak run.
    pub searchers: usize,
    /// Searches per second offered in the latency run; by default half the measured peak.
    pub search_rate: Option<f64>,
    /// Holds per second offered during both runs.
    pub hold_rate: f64,
    /// Requests in flight at most in the open-loop runs (and buyers booking).
    pub in_flight_max: usize,
    /// Length of each run.
    pub duration: Duration,
    /// Event creations in flight while loading.
    pub load_concurrency: usize,
}

impl Default for SearchBenchConfig {
    fn default() -> Self {
        SearchBenchConfig {
            events: 100_000,
            searchers: 8,
            search_rate: None,
            hold_rate: 200.0,
            in_flight_max: 64,
            duration: Duration::from_secs(15),
            load_concurrency: 32,
        }
    }
}

pub(crate) const CITIES: &[(&str, f64, f64)] = &[
    ("Lisbon", 38.72, -9.14),
    ("Porto", 41.15, -8.61),
    ("Madrid", 40.42, -3.70),
    ("Barcelona", 41.39, 2.17),
    ("Paris", 48.86, 2.35),
    ("Berlin", 52.52, 13.40),
    ("Amsterdam", 52.37, 4.90),
    ("Rome", 41.90, 12.50),
    ("Vienna", 48.21, 16.37),
    ("Prague", 50.08, 14.44),
    ("Dublin", 53.35, -6.26),
    ("London", 51.51, -0.13),
    ("Oslo", 59.91, 10.75),
    ("Warsaw", 52.23, 21.01),
    ("Athens", 37.98, 23.73),
    ("Milan", 45.46, 9.19),
    ("Lyon", 45.76, 4.84),
    ("Seville", 37.39, -5.98),
    ("Munich", 48.14, 11.58),
    ("Zurich", 47.38, 8.54),
];
pub(crate) const ADJECTIVES: &[&str] = &[
    "Electric", "Midnight", "Golden", "Silent", "Wild", "Crimson", "Velvet", "Northern", "Lunar", "Urban", "Secret",
    "Royal", "Broken", "Neon", "Summer", "Winter", "Hidden", "Radiant", "Distant", "Savage",
];
pub(crate) const NOUNS: &[&str] = &[
    "Harbor",
    "Garden",
    "Echo",
    "Orchestra",
    "Circus",
    "Rhythm",
    "Voyage",
    "Mirror",
    "Lantern",
    "Festival",
    "Parade",
    "Symphony",
    "Carnival",
    "Horizon",
    "Canyon",
    "Theatre",
    "Ballet",
    "Opera",
    "Quartet",
    "Rodeo",
];
pub(crate) const CATEGORIES: &[&str] = &["music", "theatre", "comedy", "sports", "conference", "family"];
pub(crate) const PERFORMERS: &[&str] = &[
    "Aurora Skies",
    "The Midnight Echo",
    "Marta Ribeiro",
    "Lisbon Lions",
    "Tom Baker",
    "Rita Alves",
    "Ada Lindqvist",
    "Electric Owls",
    "Paulo Santos",
    "Nina Hagen",
    "Kasper Holm",
    "Sofia Marques",
];

/// A word with one letter changed: what a hurried buyer types.
fn typo(word: &str, rng: &mut impl Rng) -> String {
    let mut chars: Vec<char> = word.to_lowercase().chars().collect();
    if chars.len() > 4 {
        let i = rng.gen_range(1..chars.len() - 1);
        chars.swap(i, i + 1);
    }
    chars.into_iter().collect()
}

async fn load(target: &Arc<Target>, cfg: &SearchBenchConfig) -> Result<(Vec<String>, f64), TargetError> {
    let admin = target.token("bench-admin", "admin").await?;
    let mut venues = Vec::new();
    for (i, (city, lat, lon)) in CITIES.iter().enumerate() {
        let body = json!({
            "name": format!("{} {}", NOUNS[i % NOUNS.len()], "Hall"), "city": city, "country": "EU",
            "location": {"lat": lat, "lon": lon},
            "sections": [{"id": "GA", "name": "Standing", "kind": "general", "capacity": 100_000}]
        });
        let venue = target.post("/v1/venues", Some(&admin), body, 201).await?;
        venues.push(venue["venue_id"].as_str().unwrap_or_default().to_owned());
    }
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..cfg.load_concurrency {
        let (target, admin, venues, next, total) =
            (target.clone(), admin.clone(), venues.clone(), next.clone(), cfg.events as u64);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(worker as u64);
            let mut ids = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, TargetError>(ids);
                }
                let name = format!("{} {} {}", ADJECTIVES.choose(&mut rng).unwrap_or(&"Grand"), NOUNS.choose(&mut rng).unwrap_or(&"Show"), n);
                let day = rng.gen_range(1..700);
                let starts = time_after_days(day);
                let body = json!({
                    "name": name, "category": CATEGORIES.choose(&mut rng).unwrap_or(&"music"),
                    "description": format!("A {} evening with {}", ADJECTIVES.choose(&mut rng).unwrap_or(&"fine").to_lowercase(), NOUNS.choose(&mut rng).unwrap_or(&"friends").to_lowercase()),
                    "performers": [{"name": PERFORMERS.choose(&mut rng).unwrap_or(&"Someone")}],
                    "venue_id": venues.choose(&mut rng).cloned().unwrap_or_default(), "starts_at": starts,
                    "prices": [{"section": "GA", "price": {"amount": rng.gen_range(1_000..20_000), "currency": "USD"}}]
                });
                let event = target.post("/v1/events", Some(&admin), body, 201).await?;
                ids.push(event["event_id"].as_str().unwrap_or_default().to_owned());
            }
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.map_err(|e| TargetError::Spawn(e.to_string()))??);
    }
    Ok((ids, cfg.events as f64 / started.elapsed().as_secs_f64()))
}

/// An RFC 3339 time `days` days from now.
pub(crate) fn time_after_days(days: i64) -> String {
    rfc3339(unix_now_s() + days * 86_400)
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64
}

/// `t` (seconds since the Unix epoch) in RFC 3339, UTC.
pub(crate) fn rfc3339(t: i64) -> String {
    let (d, rem) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = d + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:00Z", rem / 3_600, rem % 3_600 / 60)
}

/// Waits until the indexer reports no lag on any shard (the `boxoffice_indexer_lag_entries`
/// gauges on `/metrics`) and has written every event.
async fn wait_indexed(target: &Target, events: usize) -> Result<f64, TargetError> {
    let started = Instant::now();
    loop {
        let metrics = target.metrics().await?;
        let lag = metrics.sum("boxoffice_indexer_lag_entries", None);
        let written = metrics.sum("boxoffice_indexer_documents_total", None);
        if lag == 0.0 && written >= events as f64 {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(TargetError::Spawn(format!("the index did not catch up: lag {lag}, {written} written")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn random_query(rng: &mut impl Rng) -> String {
    let word = |rng: &mut _| {
        let w = if rand::Rng::gen_bool(rng, 0.5) { ADJECTIVES.choose(rng) } else { NOUNS.choose(rng) };
        w.copied().unwrap_or("show").to_lowercase()
    };
    match rng.gen_range(0..100) {
        0..=34 => format!("q={}", word(rng)),
        35..=49 => format!("q={}", typo(&word(rng), rng)),
        50..=59 => format!("q={}+{}", word(rng), word(rng)),
        60..=69 => {
            let (city, _, _) = CITIES.choose(rng).copied().unwrap_or(("Lisbon", 0.0, 0.0));
            format!("q={}&city={}", word(rng), city)
        }
        70..=84 => {
            let (_, lat, lon) = CITIES.choose(rng).copied().unwrap_or(("Lisbon", 38.7, -9.1));
            format!("near={lat},{lon}&radius_km={}", rng.gen_range(5..200))
        }
        _ => {
            let from = time_after_days(rng.gen_range(1..600));
            format!("from={from}&category={}", CATEGORIES.choose(rng).copied().unwrap_or("music"))
        }
    }
}

pub async fn run(target: Arc<Target>, cfg: SearchBenchConfig) -> Result<Report, TargetError> {
    let (events, load_rate) = load(&target, &cfg).await?;
    let catch_up_s = wait_indexed(&target, cfg.events).await?;
    let events = Arc::new(events);
    let buyer_tokens = Arc::new(buyer_tokens(&target, cfg.in_flight_max).await?);

    // Peak: closed loop, every searcher asks again as soon as it is answered.
    let holds = tokio::spawn(book(target.clone(), events.clone(), buyer_tokens.clone(), &cfg, cfg.duration));
    let peak = closed_loop(&target, &cfg).await?;
    let peak_holds = holds.await.map_err(|e| TargetError::Spawn(e.to_string()))?;
    let peak_rate = peak.client.len() as f64 / cfg.duration.as_secs_f64();

    // Latency: searches offered at a fixed rate below the peak, as a service runs in production.
    let rate = cfg.search_rate.unwrap_or(peak_rate * LATENCY_LOAD_OF_PEAK).max(1.0);
    let holds = tokio::spawn(book(target.clone(), events.clone(), buyer_tokens, &cfg, cfg.duration));
    let took = Arc::new(std::sync::Mutex::new(Latencies::default()));
    let mut paced = {
        let (target, took) = (target.clone(), took.clone());
        open_loop(rate, cfg.duration, cfg.in_flight_max, move |n, _| {
            let (target, took) = (target.clone(), took.clone());
            async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(n);
                match search_once(&target, &mut rng).await {
                    Some(took_ms) => took.lock().map(|mut t| t.record(Duration::from_millis(took_ms))).is_ok(),
                    None => false,
                }
            }
        })
        .await
    };
    let latency_holds = holds.await.map_err(|e| TargetError::Spawn(e.to_string()))?;
    let mut took = took.lock().map(|t| t.clone()).unwrap_or_default();

    let secs = cfg.duration.as_secs_f64();
    let mut report = Report::new("search (one node, embedded index)");
    report.line(
        "events indexed",
        format!("{} (loaded at {load_rate:.0}/s; index caught up {catch_up_s:.1} s after the last write)", cfg.events),
    );
    report.line(
        "peak searches/s",
        format!(
            "{peak_rate:.0} by {} searchers, with {:.0} holds/s ({} errors)",
            cfg.searchers,
            peak_holds.latencies.len() as f64 / secs,
            peak.errors
        ),
    );
    report.line(
        "latency run",
        format!(
            "{:.0} searches/s offered ({:.0}% of peak), {:.0} holds/s",
            rate,
            100.0 * rate / peak_rate.max(1.0),
            latency_holds.latencies.len() as f64 / secs
        ),
    );
    report.latencies("search, in the api (took_ms)", &mut took);
    report.latencies("search, seen by the client", &mut paced.latencies);
    report.line("errors", format!("{} searches, {} holds", paced.errors, latency_holds.errors));
    report.line("not started (server behind)", paced.skipped);
    Ok(report)
}

/// Offered search load in the latency run, as a share of the measured peak.
const LATENCY_LOAD_OF_PEAK: f64 = 0.5;

struct ClosedLoop {
    client: Latencies,
    errors: u64,
}

async fn closed_loop(target: &Arc<Target>, cfg: &SearchBenchConfig) -> Result<ClosedLoop, TargetError> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut searchers = Vec::new();
    for n in 0..cfg.searchers {
        let (target, stop, errors) = (target.clone(), stop.clone(), errors.clone());
        searchers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(1_000 + n as u64);
            let mut client = Latencies::default();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match search_once(&target, &mut rng).await {
                    Some(_) => client.record(started.elapsed()),
                    None => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            client
        }));
    }
    tokio::time::sleep(cfg.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut client = Latencies::default();
    for s in searchers {
        client.merge(s.await.map_err(|e| TargetError::Spawn(e.to_string()))?);
    }
    Ok(ClosedLoop { client, errors: errors.load(Ordering::Relaxed) })
}

/// One random search; its `took_ms` when it answered 200.
async fn search_once(target: &Target, rng: &mut impl Rng) -> Option<u64> {
    let url = format!("{}/v1/search?{}&limit=20", target.url, random_query(rng));
    let resp = target.http.get(url).send().await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    let body: Value = resp.json().await.ok()?;
    body["took_ms"].as_u64()
}

/// Tokens of the buyers who book during the runs, one per hold in flight at most.
async fn buyer_tokens(target: &Target, count: usize) -> Result<Vec<String>, TargetError> {
    let mut tokens = Vec::with_capacity(count);
    for n in 0..count.max(1) {
        tokens.push(target.token(&format!("search-bench-buyer{n}"), "user").await?);
    }
    Ok(tokens)
}

/// Holds one general-admission place at a random event, `hold_rate` times a second.
fn book(
    target: Arc<Target>,
    events: Arc<Vec<String>>,
    tokens: Arc<Vec<String>>,
    cfg: &SearchBenchConfig,
    duration: Duration,
) -> impl std::future::Future<Output = Paced> + Send + 'static {
    let (rate, in_flight_max) = (cfg.hold_rate, cfg.in_flight_max);
    open_loop(rate, duration, in_flight_max, move |n, _| {
        let (target, events, tokens) = (target.clone(), events.clone(), tokens.clone());
        async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(2_000_000 + n);
            let (Some(event), Some(token)) = (events.choose(&mut rng), tokens.choose(&mut rng)) else { return false };
            let body = json!({"section": "GA", "quantity": 1});
            target.post(&format!("/v1/events/{event}/holds"), Some(token), body, 201).await.is_ok()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        let t = time_after_days(0);
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T');
    }
}
