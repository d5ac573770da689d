//! The catalogue every store of the browse and mixed workloads is loaded with: the events, their
//! venue's shape and prices, the searches asked of it, and which events are popular.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::search::{rfc3339, ADJECTIVES, CATEGORIES, CITIES, NOUNS, PERFORMERS};

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
pub(crate) const RELEASE_SHARE: f64 = 0.5;
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
pub struct CatalogEvent {
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

impl CatalogEvent {
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
pub fn catalogue(events: usize, now_s: i64) -> Vec<CatalogEvent> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    (0..events)
        .map(|n| {
            let city_index = rng.gen_range(0..CITIES.len());
            let pick = |rng: &mut rand::rngs::StdRng, words: &[&'static str]| words.choose(rng).copied().unwrap_or("");
            let (adjective, noun) = (pick(&mut rng, ADJECTIVES), pick(&mut rng, NOUNS));
            let description =
                format!("A {} evening with {}", pick(&mut rng, ADJECTIVES), pick(&mut rng, NOUNS)).to_lowercase();
            CatalogEvent {
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

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
}
