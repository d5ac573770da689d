//! Search latency at 100,000 documents while writes go on. Ignored by default; run it with
//! `cargo test --release -p indexer search_latency -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seams::{GeoFilter, SearchBackend, SearchQuery};

use super::{doc, query};
use crate::{Document, EmbeddedIndex, Index};

const DOCUMENTS: u64 = 100_000;
const LOAD_BATCH: u64 = 1_000;
const QUERIES_PER_KIND: usize = 300;
/// Background writes during the measurement: a page of this many documents ...
const WRITE_BATCH: u64 = 200;
/// ... this often, each its own commit, as the follower does.
const WRITE_EVERY: Duration = Duration::from_millis(100);

const WORDS: [&str; 40] = [
    "jazz",
    "rock",
    "symphony",
    "opera",
    "comedy",
    "festival",
    "night",
    "summer",
    "winter",
    "acoustic",
    "electric",
    "orchestra",
    "quartet",
    "ballet",
    "theatre",
    "hamlet",
    "musical",
    "tour",
    "live",
    "session",
    "midnight",
    "garden",
    "river",
    "city",
    "classic",
    "modern",
    "gospel",
    "blues",
    "soul",
    "disco",
    "legends",
    "voices",
    "strings",
    "piano",
    "guitar",
    "drums",
    "dance",
    "poetry",
    "magic",
    "circus",
];
const CITIES: [(&str, f64, f64); 8] = [
    ("Lisbon", 38.72, -9.14),
    ("Porto", 41.15, -8.63),
    ("Madrid", 40.42, -3.70),
    ("Paris", 48.86, 2.35),
    ("Berlin", 52.52, 13.40),
    ("London", 51.51, -0.13),
    ("New York", 40.71, -74.01),
    ("Tokyo", 35.68, 139.69),
];
const CATEGORIES: [&str; 6] = ["music", "theatre", "comedy", "dance", "sports", "family"];
const YEAR_MS: i64 = 365 * 24 * 3_600_000;

fn synthetic(rng: &mut StdRng, id: u64, version: u64) -> Document {
    let mut words = || WORDS[rng.gen_range(0..WORDS.len())];
    let name = format!("{} {} {}", words(), words(), words());
    let performers = vec![format!("The {} {}", words(), words())];
    let description = (0..12).map(|_| words()).collect::<Vec<_>>().join(" ");
    let (city, lat, lon) = CITIES[rng.gen_range(0..CITIES.len())];
    Document {
        name,
        performers,
        description,
        category: CATEGORIES[rng.gen_range(0..CATEGORIES.len())].into(),
        venue_name: format!("{city} {} Hall", WORDS[rng.gen_range(0..WORDS.len())]),
        city: city.into(),
        lat: lat + rng.gen_range(-0.3..0.3),
        lon: lon + rng.gen_range(-0.3..0.3),
        starts_at_ms: rng.gen_range(0..YEAR_MS),
        version,
        ..doc(id)
    }
}

fn queries(rng: &mut StdRng) -> Vec<(&'static str, SearchQuery)> {
    let mut out = Vec::new();
    for _ in 0..QUERIES_PER_KIND {
        let word = WORDS[rng.gen_range(0..WORDS.len())];
        let other = WORDS[rng.gen_range(0..WORDS.len())];
        let (city, lat, lon) = CITIES[rng.gen_range(0..CITIES.len())];
        let from_ms = rng.gen_range(0..YEAR_MS / 2);
        // A typo: the second letter dropped.
        let typo: String = word.chars().enumerate().filter(|(i, _)| *i != 1).map(|(_, c)| c).collect();
        out.push(("list by date", SearchQuery { from_ms, ..query(None) }));
        out.push(("one word", query(Some(word))));
        out.push(("two words, one typo", query(Some(&format!("{typo} {other}")))));
        out.push((
            "category + dates",
            SearchQuery {
                category: Some(CATEGORIES[rng.gen_range(0..CATEGORIES.len())].into()),
                from_ms,
                to_ms: from_ms + YEAR_MS / 12,
                ..query(None)
            },
        ));
        out.push(("word + city", SearchQuery { city: Some(city.to_lowercase()), ..query(Some(word)) }));
        out.push(("near 25 km", SearchQuery { near: Some(GeoFilter { lat, lon, radius_km: 25.0 }), ..query(None) }));
        out.push(("word, page 10", SearchQuery { offset: 200, ..query(Some(word)) }));
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
async fn search_latency_at_100k_documents_while_writing() {
    let dir = tempfile::tempdir().unwrap();
    let index = EmbeddedIndex::open(dir.path()).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let started = Instant::now();
    for batch in 0..DOCUMENTS / LOAD_BATCH {
        let docs = (0..LOAD_BATCH).map(|i| synthetic(&mut rng, batch * LOAD_BATCH + i, 1)).collect();
        index.apply(docs, BTreeMap::from([(0, batch)])).await.unwrap();
    }
    println!("loaded {} documents in {:?}", index.len(), started.elapsed());

    let writing = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn({
        let (index, writing) = (index.clone(), writing.clone());
        async move {
            let mut rng = StdRng::seed_from_u64(11);
            let mut version = 2;
            let mut commits = 0;
            while writing.load(Ordering::SeqCst) {
                let docs = (0..WRITE_BATCH)
                    .map(|_| {
                        let id = rng.gen_range(0..DOCUMENTS);
                        synthetic(&mut rng, id, version)
                    })
                    .collect();
                index.apply(docs, BTreeMap::from([(0, DOCUMENTS + version)])).await.unwrap();
                version += 1;
                commits += 1;
                tokio::time::sleep(WRITE_EVERY).await;
            }
            commits
        }
    });

    let mut by_kind: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut hits = 0;
    let started = Instant::now();
    for (kind, q) in queries(&mut rng) {
        let at = Instant::now();
        hits += index.search(q).await.unwrap().hits.len();
        by_kind.entry(kind).or_default().push(at.elapsed());
    }
    let measured = started.elapsed();
    writing.store(false, Ordering::SeqCst);
    let commits = writer.await.unwrap();

    let mut all: Vec<Duration> = by_kind.values().flatten().copied().collect();
    by_kind.insert("all", std::mem::take(&mut all));
    println!(
        "{hits} hits in {measured:?}, {commits} commits of {WRITE_BATCH} documents meanwhile, {} segments at the end",
        index.segments()
    );
    println!("{:<22} {:>7} {:>9} {:>9} {:>9}", "query", "count", "p50", "p99", "max");
    for (kind, times) in &mut by_kind {
        times.sort();
        let (p50, p99, max) = (percentile(times, 0.50), percentile(times, 0.99), times[times.len() - 1]);
        println!("{kind:<22} {:>7} {p50:>9.2?} {p99:>9.2?} {max:>9.2?}", times.len());
    }
    let all = &by_kind["all"];
    assert!(percentile(all, 0.99) < Duration::from_millis(20), "p99 is over 20 ms");
}
