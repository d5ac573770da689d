//! Browsing under load: many events, a 100:1 read/write mix, popularity skewed so a few events
//! are hot. Reads are event details and seat maps (what the api's read cache serves); writes are
//! holds of one seat, half of them released again. Two runs: a closed loop finds the peak; an
//! open loop offered a share of that peak measures latency from when each request was due. The
//! workload is `mix.rs`'s, shared with the peer baselines; this file is Boxoffice's side of it
//! ([`BoxofficeBrowse`]) and `boxoffice-bench browse`'s report. The cache hit ratio comes from the
//! server's own counters (`api_cache_requests_total`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::catalogue::{
    row_name, venue_name, CatalogEvent, SearchQuery, GENERAL_CAPACITY, GENERAL_PRICE, GENERAL_SECTION, ROWS,
    SEATED_PRICE, SEATED_SECTION, SEATS_PER_ROW,
};
use crate::error::TargetError;
use crate::flash_sale::BoxofficeStore;
use crate::mix::{occurrences, Answered, BrowseBenchConfig, BrowseStore, Workload};
use crate::report::Report;
use crate::sale::{HoldOutcome, SaleStore};
use crate::search::CITIES;
use crate::target::Target;

/// Buyers whose tokens the writes use.
const BUYERS: usize = 64;
/// How long the search index may take to have every loaded event.
const SEARCHABLE_TIMEOUT: Duration = Duration::from_secs(120);
const SEARCHABLE_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Events a search page lists at most (the api's bound).
const SEARCH_PAGE_MAX: usize = 100;

/// Boxoffice over its public HTTP api, as a browser or an app uses it.
pub struct BoxofficeBrowse {
    target: Arc<Target>,
    /// Holds go through the flash sale's client code.
    sale: BoxofficeStore,
    tokens: Vec<String>,
    load_concurrency: usize,
    /// Whether `load` waits until the search index has every event (the mixed workload).
    wait_searchable: bool,
}

impl BoxofficeBrowse {
    /// Gets the buyers' tokens. With `wait_searchable`, loading waits until searches find every
    /// event, so that the mixed workload's searches see the whole catalogue.
    pub async fn new(
        target: Arc<Target>,
        load_concurrency: usize,
        wait_searchable: bool,
    ) -> Result<BoxofficeBrowse, TargetError> {
        let mut tokens = Vec::with_capacity(BUYERS);
        for n in 0..BUYERS {
            tokens.push(target.token(&format!("browse-bench-buyer{n}"), "user").await?);
        }
        let sale = BoxofficeStore::new(target.clone());
        Ok(BoxofficeBrowse { target, sale, tokens, load_concurrency, wait_searchable })
    }

    fn token(&self, client: u64) -> &str {
        self.tokens.get(client as usize % self.tokens.len().max(1)).map_or("", String::as_str)
    }

    /// GETs `path`; the number of times `item` occurs in a 200 answer.
    /// GETs `path` and counts `item` in the body; `X-Cache: hit` says the api answered from its
    /// read cache.
    async fn count(&self, path: &str, item: &[u8]) -> Option<Answered> {
        let resp = self.target.http.get(format!("{}{path}", self.target.url)).send().await.ok()?;
        if resp.status() != 200 {
            return None;
        }
        let cached = resp.headers().get("x-cache").is_some_and(|v| v.as_bytes() == b"hit");
        Some(Answered { items: occurrences(&resp.bytes().await.ok()?, item), cached })
    }

    /// One venue per city, each with the seated and the general section.
    async fn venues(&self, admin: &str) -> Result<HashMap<&'static str, String>, TargetError> {
        let rows: Vec<_> = (0..ROWS).map(|r| json!({"id": row_name(r), "seats": SEATS_PER_ROW})).collect();
        let mut venues = HashMap::new();
        for (i, (city, lat, lon)) in CITIES.iter().enumerate() {
            let venue = json!({
                "name": venue_name(i), "city": city, "country": "EU", "location": {"lat": lat, "lon": lon},
                "sections": [{"id": SEATED_SECTION, "name": "Floor", "kind": "seated", "rows": rows},
                             {"id": GENERAL_SECTION, "name": "Lawn", "kind": "general", "capacity": GENERAL_CAPACITY}]
            });
            let venue = self.target.post("/v1/venues", Some(admin), venue, 201).await?;
            venues.insert(*city, id_in(&venue, "venue_id")?);
        }
        Ok(venues)
    }

    /// Waits until a search by city lists every event of the catalogue in that city.
    async fn wait_searchable(&self, catalogue: &[CatalogEvent]) -> Result<(), TargetError> {
        let deadline = Instant::now() + SEARCHABLE_TIMEOUT;
        let mut cities: Vec<(&str, usize)> = Vec::new();
        for spec in catalogue {
            match cities.iter_mut().find(|(c, _)| *c == spec.city) {
                Some((_, n)) => *n += 1,
                None => cities.push((spec.city, 1)),
            }
        }
        while let Some(&(city, want)) = cities.last() {
            if self.searchable_in(city).await? >= want {
                cities.pop();
                continue;
            }
            if Instant::now() >= deadline {
                return Err(TargetError::Scenario(format!("search does not list {city}'s {want} events in time")));
            }
            tokio::time::sleep(SEARCHABLE_POLL_INTERVAL).await;
        }
        Ok(())
    }

    /// Events that a search lists in `city`, page after page.
    async fn searchable_in(&self, city: &str) -> Result<usize, TargetError> {
        let (mut found, mut cursor) = (0, None::<String>);
        loop {
            let mut path = format!("/v1/search?city={city}&limit={SEARCH_PAGE_MAX}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.target.get(&path).await?;
            found += page["items"].as_array().map_or(0, Vec::len);
            match page["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(found),
            }
        }
    }
}

impl BrowseStore for BoxofficeBrowse {
    fn describe(&self) -> String {
        self.target.describe()
    }

    fn searches(&self) -> bool {
        true
    }

    async fn load(&self, catalogue: &[CatalogEvent]) -> Result<Vec<String>, TargetError> {
        let admin = self.target.token("browse-bench-admin", "admin").await?;
        let venues = Arc::new(self.venues(&admin).await?);
        let catalogue: Arc<Vec<CatalogEvent>> = Arc::new(catalogue.to_vec());
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..self.load_concurrency.max(1) {
            let (target, admin, venues, next, catalogue) =
                (self.target.clone(), admin.clone(), venues.clone(), next.clone(), catalogue.clone());
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(spec) = catalogue.get(n) else { return Ok::<_, TargetError>(ids) };
                    let body = json!({
                        "name": spec.name, "description": spec.description, "category": spec.category,
                        "performers": [{"name": spec.performer}], "venue_id": venues.get(spec.city),
                        "starts_at": spec.starts_at(),
                        "prices": [{"section": SEATED_SECTION, "price": {"amount": SEATED_PRICE, "currency": "USD"}},
                                   {"section": GENERAL_SECTION, "price": {"amount": GENERAL_PRICE, "currency": "USD"}}]
                    });
                    let event = target.post("/v1/events", Some(&admin), body, 201).await?;
                    ids.push((n, id_in(&event, "event_id")?));
                }
            }));
        }
        let mut ids = Vec::with_capacity(catalogue.len());
        for task in tasks {
            ids.extend(task.await.map_err(|e| TargetError::Spawn(e.to_string()))??);
        }
        ids.sort();
        if self.wait_searchable {
            self.wait_searchable(&catalogue).await?;
        }
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    /// Each section of the details carries its `held` count.
    async fn details(&self, _client: u64, event: &str) -> Option<Answered> {
        self.count(&format!("/v1/events/{event}"), br#""held""#).await
    }

    /// Each seat of the map carries its `status`.
    async fn seat_map(&self, _client: u64, event: &str) -> Option<Answered> {
        self.count(&format!("/v1/events/{event}/seats"), br#""status""#).await
    }

    /// Each result carries its `score`.
    async fn search(&self, _client: u64, query: &SearchQuery) -> Option<usize> {
        self.count(&format!("/v1/search?{}", query.url_query()), br#""score""#).await.map(|a| a.items)
    }

    async fn hold(&self, client: u64, event: &str, seat: &str) -> HoldOutcome {
        let mut token = self.token(client).to_owned();
        self.sale.hold(&mut token, event, &[seat.to_owned()]).await
    }

    async fn release(&self, client: u64, _event: &str, hold_id: &str, _seat: &str) -> bool {
        let url = format!("{}/v1/holds/{hold_id}", self.target.url);
        let resp = self.target.http.delete(url).bearer_auth(self.token(client)).send().await;
        matches!(resp, Ok(r) if r.status() == 204)
    }

    async fn taken(&self, event: &str) -> Result<usize, TargetError> {
        self.sale.taken(event).await
    }
}

/// The id a 201 answer names in `field`; an answer without one is the server's error.
fn id_in(answer: &serde_json::Value, field: &str) -> Result<String, TargetError> {
    match answer[field].as_str() {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(TargetError::Scenario(format!("a 201 answer without `{field}`: {answer}"))),
    }
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

pub async fn run(target: Arc<Target>, cfg: BrowseBenchConfig) -> Result<Report, TargetError> {
    let store = Arc::new(BoxofficeBrowse::new(target.clone(), cfg.load_concurrency, cfg.search_share > 0.0).await?);
    let workload = Arc::new(Workload::load(store, &cfg).await?);
    let secs = cfg.duration.as_secs_f64();

    let before = cache_counters(&target).await;
    let mut peak = workload.peak(cfg.clients, cfg.duration).await?;
    let after_peak = cache_counters(&target).await;
    let (peak_reads, peak_writes) = (peak.reads.len() as f64 / secs, peak.writes.len() as f64 / secs);

    let share = cfg.latency_load_of_peak;
    let mut paced = workload.paced(peak_reads * share, peak_writes * share, cfg.duration, cfg.in_flight_max).await;
    let after_latency = cache_counters(&target).await;

    let mut report = Report::new(&format!("browse ({}, {} events)", target.describe(), cfg.events));
    report.line("events loaded", format!("{} at {:.0}/s", cfg.events, workload.load_per_s));
    report.line(
        "peak (closed loop)",
        format!(
            "{peak_reads:.0} reads/s, {peak_writes:.0} writes/s by {} clients ({} errors)",
            cfg.clients,
            peak.errors()
        ),
    );
    report.latencies("peak: read", &mut peak.reads);
    report.latencies("peak: write", &mut peak.writes);
    report.latencies("peak: read answered from the cache (X-Cache: hit)", &mut peak.cached_reads);
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
    report.latencies("latency run: read", &mut paced.reads);
    report.latencies("latency run: write", &mut paced.writes);
    report.latencies("latency run: read answered from the cache (X-Cache: hit)", &mut paced.cached_reads);
    report.line("latency run: errors", format!("{} reads, {} writes", paced.read_errors, paced.write_errors));
    report.line(
        "latency run: not started (server behind)",
        crate::pace::skipped_line(paced.not_started, paced.not_started_span),
    );
    report.line("latency run: cache hit ratio", hit_ratio(after_peak, after_latency));
    Ok(report)
}
