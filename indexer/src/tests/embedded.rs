use std::collections::BTreeMap;
use std::sync::Arc;

use seams::{GeoFilter, SearchBackend, SearchError, SearchQuery, SEARCH_DEPTH_MAX, SEARCH_RADIUS_KM_MAX};

use super::{doc, ids, query, search_ids};
use crate::{Document, EmbeddedIndex, Index};

async fn index_with(docs: Vec<Document>) -> (tempfile::TempDir, Arc<EmbeddedIndex>) {
    let dir = tempfile::tempdir().unwrap();
    let index = EmbeddedIndex::open(dir.path()).unwrap();
    index.apply(docs, BTreeMap::new()).await.unwrap();
    (dir, index)
}

fn named(id: u64, name: &str) -> Document {
    Document { name: name.into(), ..doc(id) }
}

fn text(words: &str) -> SearchQuery {
    query(Some(words))
}

#[tokio::test]
async fn finds_by_keyword_despite_a_typo() {
    let (_dir, index) = index_with(vec![
        named(1, "Jazz Festival"),
        named(2, "Rock Concert"),
        named(3, "Philharmonic Orchestra"),
        named(4, "Pop Night"),
    ])
    .await;
    assert_eq!(search_ids(&index, text("festival")).await, [1]);
    // One edit (a dropped letter, a swapped pair) for 4 to 7 letters, two from 8.
    assert_eq!(search_ids(&index, text("festivl")).await, [1]);
    assert_eq!(search_ids(&index, text("concret")).await, [2]);
    assert_eq!(search_ids(&index, text("orkestra")).await, [3]);
    assert_eq!(search_ids(&index, text("JAZZ festivals")).await, [1]);
    // Short words must match exactly, and every word must match.
    assert!(search_ids(&index, text("pip")).await.is_empty());
    assert!(search_ids(&index, text("jazz rock")).await.is_empty());
}

#[tokio::test]
async fn finds_by_performer() {
    let (_dir, index) = index_with(vec![
        Document { performers: vec!["Miles Davis".into(), "John Coltrane".into()], ..named(1, "Kind of Blue") },
        Document { performers: vec!["Madonna".into()], ..named(2, "Celebration") },
    ])
    .await;
    assert_eq!(search_ids(&index, text("coltrane")).await, [1]);
    assert_eq!(search_ids(&index, text("madona")).await, [2]);
}

#[tokio::test]
async fn finds_by_venue_and_city_words() {
    let (_dir, index) = index_with(vec![
        Document { venue_name: "Coliseu dos Recreios".into(), ..named(1, "Fado") },
        Document { venue_name: "Casa da Música".into(), city: "Porto".into(), ..named(2, "Fado") },
    ])
    .await;
    assert_eq!(search_ids(&index, text("coliseu")).await, [1]);
    assert_eq!(search_ids(&index, text("música porto")).await, [2]);
    assert_eq!(search_ids(&index, text("fado lisbon")).await, [1]);
    assert_eq!(search_ids(&index, text("fado")).await, [1, 2]);
}

#[tokio::test]
async fn filters_by_date_range_including_from_and_excluding_to() {
    let (_dir, index) = index_with((1..=4).map(doc).collect()).await;
    let q = SearchQuery { from_ms: 2_000, to_ms: 4_000, ..query(None) };
    assert_eq!(search_ids(&index, q).await, [2, 3]);
    let q = SearchQuery { from_ms: 4_000, to_ms: 4_000, ..query(None) };
    assert!(search_ids(&index, q).await.is_empty());
    let q = SearchQuery { from_ms: 5_000, to_ms: 1_000, ..query(None) };
    assert!(search_ids(&index, q).await.is_empty());
}

#[tokio::test]
async fn filters_by_exact_category_any_case() {
    let (_dir, index) = index_with(vec![
        Document { category: "Theatre".into(), ..doc(1) },
        Document { category: "music".into(), ..doc(2) },
        Document { category: "musical theatre".into(), ..doc(3) },
    ])
    .await;
    let q = SearchQuery { category: Some("theatre".into()), ..query(None) };
    assert_eq!(search_ids(&index, q).await, [1]);
    let q = SearchQuery { category: Some("Musical Theatre".into()), ..query(None) };
    assert_eq!(search_ids(&index, q).await, [3]);
}

#[tokio::test]
async fn filters_by_exact_city_any_case() {
    let (_dir, index) = index_with(vec![
        Document { city: "New York".into(), ..doc(1) },
        Document { city: "York".into(), ..doc(2) },
        doc(3),
    ])
    .await;
    let q = SearchQuery { city: Some("new york".into()), ..query(None) };
    assert_eq!(search_ids(&index, q).await, [1]);
    let q = SearchQuery { city: Some("york".into()), ..text("untitled") };
    assert_eq!(search_ids(&index, q).await, [2]);
}

#[tokio::test]
async fn filters_by_distance_inside_and_outside_the_radius() {
    let at = |id, lat, lon| Document { lat, lon, ..doc(id) };
    let (_dir, index) = index_with(vec![
        at(1, 38.7223, -9.1393), // Lisbon
        at(2, 38.8029, -9.3817), // Sintra, about 23 km away
        at(3, 41.1579, -8.6291), // Porto, about 274 km away
        at(4, 39.5, -8.1),       // inside the 100 km box around Lisbon, outside the circle
    ])
    .await;
    let near =
        |radius_km| SearchQuery { near: Some(GeoFilter { lat: 38.7223, lon: -9.1393, radius_km }), ..query(None) };
    assert_eq!(search_ids(&index, near(10.0)).await, [1]);
    assert_eq!(search_ids(&index, near(50.0)).await, [1, 2]);
    assert_eq!(search_ids(&index, near(100.0)).await, [1, 2]);
    assert_eq!(search_ids(&index, near(130.0)).await, [1, 2, 4]);
    assert_eq!(search_ids(&index, near(300.0)).await, [1, 2, 3, 4]);
    assert_eq!(search_ids(&index, near(SEARCH_RADIUS_KM_MAX)).await, [1, 2, 3, 4]);
}

#[tokio::test]
async fn distance_filter_keeps_pages_full_and_more_exact() {
    // Every other event is far away: pages must still be full, in order, and end exactly.
    let docs = (1..=30).map(|id| if id % 2 == 0 { Document { lat: -33.9, lon: 18.4, ..doc(id) } } else { doc(id) });
    let (_dir, index) = index_with(docs.collect()).await;
    let near = |offset| SearchQuery {
        near: Some(GeoFilter { lat: 38.7223, lon: -9.1393, radius_km: 5.0 }),
        offset,
        limit: 5,
        ..query(None)
    };
    let mut seen = Vec::new();
    for (offset, more) in [(0, true), (5, true), (10, false)] {
        let page = index.search(near(offset)).await.unwrap();
        assert_eq!((page.hits.len(), page.more), (5, more), "offset {offset}");
        seen.extend(ids(&page));
    }
    assert_eq!(seen, (1..=30).filter(|id| id % 2 == 1).collect::<Vec<_>>());
}

#[tokio::test]
async fn pages_through_results_with_more_until_the_last_page() {
    let (_dir, index) = index_with((1..=25).map(|id| named(id, "Comedy Club")).collect()).await;
    let page = |offset| SearchQuery { offset, limit: 10, ..text("comedy") };
    let mut seen = Vec::new();
    for (offset, len, more) in [(0, 10, true), (10, 10, true), (20, 5, false), (30, 0, false)] {
        let got = index.search(page(offset)).await.unwrap();
        assert_eq!((got.hits.len(), got.more), (len, more), "offset {offset}");
        seen.extend(ids(&got));
    }
    // Equal scores fall back to the date order: every event once, soonest first.
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    let exact = index.search(SearchQuery { offset: 15, limit: 10, ..text("comedy") }).await.unwrap();
    assert!(!exact.more, "the last page ends exactly at the last result");
}

#[tokio::test]
async fn ranks_a_name_match_above_a_description_match() {
    let (_dir, index) = index_with(vec![
        Document { description: "An evening of jazz standards and more".into(), ..named(1, "Standards Night") },
        named(2, "Jazz at the Park"),
        Document { performers: vec!["The Jazz Trio".into()], ..named(3, "Evening Session") },
    ])
    .await;
    let page = index.search(text("jazz")).await.unwrap();
    assert_eq!(ids(&page), [2, 3, 1]);
    assert!(page.hits.windows(2).all(|w| w[0].score > w[1].score), "{page:?}");
}

#[tokio::test]
async fn ranks_an_exact_match_above_a_fuzzy_one() {
    let (_dir, index) = index_with(vec![named(1, "Rick Astley Live"), named(2, "Rock Live")]).await;
    assert_eq!(search_ids(&index, text("rock")).await, [2, 1]);
    assert_eq!(search_ids(&index, text("rick")).await, [1, 2]);
}

#[tokio::test]
async fn without_text_lists_soonest_first_with_zero_scores() {
    let docs = vec![doc(3), doc(1), doc(2), Document { starts_at_ms: 1_000, ..doc(0) }];
    let (_dir, index) = index_with(docs).await;
    let page = index.search(query(None)).await.unwrap();
    // 0 and 1 start together: the event id breaks the tie.
    assert_eq!(ids(&page), [0, 1, 2, 3]);
    assert!(page.hits.iter().all(|h| h.score == 0.0));
    assert_eq!(page.hits[1].event, doc(1).summary());
}

#[tokio::test]
async fn an_older_version_never_replaces_a_newer_one() {
    let (_dir, index) = index_with(vec![Document { version: 5, ..named(1, "Newer") }]).await;
    index.apply(vec![Document { version: 3, ..named(1, "Older") }], BTreeMap::new()).await.unwrap();
    assert_eq!(search_ids(&index, text("newer")).await, [1]);
    assert!(search_ids(&index, text("older")).await.is_empty());
    // Within one batch the highest version wins, whatever the order.
    let batch = vec![Document { version: 9, ..named(1, "Ninth") }, Document { version: 7, ..named(1, "Seventh") }];
    index.apply(batch, BTreeMap::new()).await.unwrap();
    assert_eq!(search_ids(&index, text("ninth")).await, [1]);
    assert!(search_ids(&index, text("seventh")).await.is_empty());
    // The same version again is a later read of the same state: it may refresh the document.
    index.apply(vec![Document { version: 9, ..named(1, "Refreshed") }], BTreeMap::new()).await.unwrap();
    assert_eq!(search_ids(&index, text("refreshed")).await, [1]);
    assert_eq!(index.len(), 1);
}

#[tokio::test]
async fn checkpoints_survive_reopening_and_never_move_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = EmbeddedIndex::open(dir.path()).unwrap();
        assert!(index.checkpoints().await.unwrap().is_empty());
        index.apply(vec![named(1, "Kept")], BTreeMap::from([(0, 10), (1, 20)])).await.unwrap();
        index.apply(Vec::new(), BTreeMap::from([(0, 15)])).await.unwrap();
        index.apply(Vec::new(), BTreeMap::from([(1, 5), (2, 1)])).await.unwrap();
        assert_eq!(index.checkpoints().await.unwrap(), BTreeMap::from([(0, 15), (1, 20), (2, 1)]));
    }
    let index = EmbeddedIndex::open(dir.path()).unwrap();
    assert_eq!(index.checkpoints().await.unwrap(), BTreeMap::from([(0, 15), (1, 20), (2, 1)]));
    assert_eq!(search_ids(&index, text("kept")).await, [1]);
}

#[tokio::test]
async fn hostile_input_is_answered_or_refused_without_panicking() {
    let hostile = Document {
        name: "\u{0}\u{1b}[31m\u{7f}ctrl\u{202e}".into(),
        description: "é".repeat(10_000),
        performers: vec![String::new(); 20],
        lat: f64::NAN,
        lon: f64::INFINITY,
        ..doc(1)
    };
    let (_dir, index) = index_with(vec![hostile, doc(2)]).await;
    let long = "long words ".repeat(1_000);
    let many = (0..5_000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    for t in ["\u{0}\u{1}\u{2}", "ctrl\u{0}", "🎷🎺", "%%%", "*", "\"", &long, &many, &"x".repeat(10_000)] {
        match index.search(text(t)).await {
            Ok(_) | Err(SearchError::Invalid(_)) => {}
            Err(e) => panic!("{t:?}: {e}"),
        }
    }
    assert_eq!(search_ids(&index, text("ctrl")).await, [1]);
    let near = |lat, lon, radius_km| SearchQuery { near: Some(GeoFilter { lat, lon, radius_km }), ..query(None) };
    for bad in [near(f64::NAN, 0.0, 1.0), near(0.0, f64::NAN, 1.0), near(0.0, 0.0, f64::NAN), near(1e308, 0.0, 1.0)] {
        assert!(matches!(index.search(bad).await, Err(SearchError::Invalid(_))));
    }
    for edge in
        [near(90.0, 180.0, SEARCH_RADIUS_KM_MAX), near(-90.0, -180.0, 1e-9), near(0.0, 0.0, SEARCH_RADIUS_KM_MAX)]
    {
        assert!(index.search(edge).await.is_ok());
    }
    let deep = SearchQuery { offset: usize::MAX, limit: usize::MAX, ..query(None) };
    assert!(matches!(index.search(deep).await, Err(SearchError::Invalid(_))));
    let deepest = SearchQuery { offset: SEARCH_DEPTH_MAX - 1, limit: 1, ..query(None) };
    assert!(index.search(deepest).await.unwrap().hits.is_empty());
    let odd = SearchQuery {
        category: Some("\u{0}".into()),
        city: Some(" ".into()),
        from_ms: i64::MAX,
        to_ms: i64::MIN,
        limit: 0,
        ..query(None)
    };
    assert!(index.search(odd).await.unwrap().hits.is_empty());
    let empty_limit = SearchQuery { limit: 0, ..query(None) };
    let page = index.search(empty_limit).await.unwrap();
    assert!(page.hits.is_empty() && page.more);
}
