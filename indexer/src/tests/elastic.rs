//! The Elasticsearch backend without a server: the exact JSON it sends and how it reads answers.
//! With `BOXOFFICE_TEST_ELASTICSEARCH_URL` set, also both backends side by side on a real server.

use std::collections::BTreeMap;

use seams::{GeoFilter, SearchBackend, SearchQuery};
use serde_json::{json, Value};

use super::{doc, ids, query};
use crate::document::Document;
use crate::elastic::body::{
    bulk_body, bulk_outcome, checkpoints_body, checkpoints_template, generation_of, index_template, parse_checkpoints,
    parse_search, reindex_body, search_body, swap_alias_body, BulkOutcome, SearchAnswer,
};
use crate::plan::Plan;
use crate::text::ENGLISH_STOP_WORDS;
use crate::{ElasticConfig, ElasticIndex};

fn lines(ndjson: &str) -> Vec<Value> {
    assert!(ndjson.ends_with('\n'), "bulk bodies end with a newline");
    ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn plan(q: &SearchQuery) -> Plan {
    Plan::new(q).unwrap()
}

#[test]
fn the_template_maps_analyzed_text_exact_keywords_dates_and_a_geo_point() {
    let t = index_template("boxoffice-events");
    assert_eq!(t["index_patterns"], json!(["boxoffice-events-*"]));
    let settings = &t["template"]["settings"];
    assert_eq!(settings["number_of_shards"], 1);
    assert_eq!(settings["max_result_window"], 10_001);
    let analysis = &settings["analysis"];
    assert_eq!(
        analysis["analyzer"]["boxoffice_en"],
        json!({"type": "custom", "tokenizer": "boxoffice_words",
               "filter": ["boxoffice_length", "lowercase", "boxoffice_stop", "boxoffice_stemmer"]})
    );
    assert_eq!(analysis["tokenizer"]["boxoffice_words"]["pattern"], "[^\\p{IsAlphabetic}\\p{N}]+");
    assert_eq!(analysis["filter"]["boxoffice_length"]["max"], 40);
    assert_eq!(analysis["filter"]["boxoffice_stop"]["stopwords"], json!(ENGLISH_STOP_WORDS.as_slice()));
    assert_eq!(analysis["filter"]["boxoffice_stemmer"], json!({"type": "stemmer", "language": "porter2"}));
    assert_eq!(analysis["normalizer"]["boxoffice_lowercase"]["filter"], json!(["lowercase", "trim"]));

    let mapping = &t["template"]["mappings"];
    assert_eq!(mapping["dynamic"], "strict");
    let p = &mapping["properties"];
    for text in ["name", "description", "performers", "venue_name", "city"] {
        assert_eq!((&p[text]["type"], &p[text]["analyzer"]), (&json!("text"), &json!("boxoffice_en")), "{text}");
    }
    let keyword = json!({"type": "keyword", "normalizer": "boxoffice_lowercase"});
    assert_eq!(p["event_id"], keyword);
    assert_eq!(p["category"], keyword);
    assert_eq!(p["city"]["fields"]["exact"], keyword);
    assert_eq!(p["starts_at_ms"], json!({"type": "date", "format": "epoch_millis"}));
    assert_eq!(p["location"], json!({"type": "geo_point"}));
    assert_eq!(p["price_min"]["properties"]["amount"]["type"], "long");
    assert_eq!(p["version"]["type"], "long");
    // Every field a document carries is mapped (the mapping is strict).
    let source = crate::elastic::body::source(&doc(1)).unwrap();
    for field in source.as_object().unwrap().keys() {
        assert!(p.get(field).is_some(), "{field} is not mapped");
    }

    let c = checkpoints_template("boxoffice-events");
    assert_eq!(c["index_patterns"], json!(["boxoffice-events-checkpoints"]));
    assert!(c["priority"].as_u64() > t["priority"].as_u64(), "the checkpoints template wins for its index");
}

#[test]
fn bulk_bodies_use_external_versions() {
    let lisbon = Document { version: 42, ..doc(1) };
    let nowhere = Document { lat: f64::NAN, version: 7, ..doc(2) };
    let body = lines(&bulk_body(&[lisbon.clone(), nowhere]).unwrap());
    assert_eq!(body.len(), 4);
    assert_eq!(body[0], json!({"index": {"_id": "ev0000000000000001", "version": 42, "version_type": "external"}}));
    assert_eq!(body[1]["location"], json!({"lat": 38.7223, "lon": -9.1393}));
    assert_eq!(body[1]["price_min"], json!({"amount": 1000, "currency": "USD"}));
    assert_eq!(serde_json::from_value::<Document>(body[1].clone()).unwrap(), lisbon);
    assert_eq!(body[2]["index"]["version"], 7);
    assert!(body[3].get("location").is_none(), "no location rather than an invalid one");

    let checkpoints = lines(&checkpoints_body(&BTreeMap::from([(0, 12), (3, 40)])).unwrap());
    assert_eq!(checkpoints[0], json!({"index": {"_id": "shard-0", "version": 12, "version_type": "external"}}));
    assert_eq!(checkpoints[1], json!({"shard": 0, "checkpoint": 12}));
    assert_eq!(checkpoints[2]["index"]["_id"], "shard-3");
}

#[test]
fn a_bulk_answer_is_done_despite_version_conflicts_and_retried_on_back_pressure() {
    let item = |status: u16, error: Value| json!({"index": {"_id": "x", "status": status, "error": error}});
    assert_eq!(bulk_outcome(&json!({"errors": false, "items": [item(201, Value::Null)]})), BulkOutcome::Done);
    let conflict = json!({"type": "version_conflict_engine_exception"});
    assert_eq!(
        bulk_outcome(&json!({"errors": true, "items": [item(201, Value::Null), item(409, conflict)]})),
        BulkOutcome::Done
    );
    let busy = json!({"errors": true, "items": [item(429, json!({"type": "es_rejected_execution_exception"}))]});
    assert!(matches!(bulk_outcome(&busy), BulkOutcome::Retry(_)));
    let bad = json!({"errors": true, "items": [item(503, json!({})), item(400, json!({"type": "mapper_parsing_exception"}))]});
    assert!(
        matches!(bulk_outcome(&bad), BulkOutcome::Rejected { status: 400, detail } if detail.contains("mapper_parsing"))
    );
}

#[test]
fn a_text_search_requires_every_word_with_boosts_fuzziness_filters_sort_and_paging() {
    let q = SearchQuery {
        text: Some("The Jazz festivals, pop philharmonic".into()),
        from_ms: 1_000,
        to_ms: 2_000,
        category: Some("Music".into()),
        city: Some(" Lisbon".into()),
        near: Some(GeoFilter { lat: 38.7, lon: -9.1, radius_km: 25.0 }),
        offset: 40,
        limit: 20,
    };
    let body = search_body(&plan(&q));
    assert_eq!((&body["from"], &body["size"]), (&json!(40), &json!(21)), "one more than the page, for `more`");
    assert_eq!(body["sort"], json!([{"_score": "desc"}, {"starts_at_ms": "asc"}, {"event_id": "asc"}]));
    let fields = json!(["name^3", "performers^2", "venue_name^1.5", "city^1.5", "description^1"]);
    let must = body["query"]["bool"]["must"].as_array().unwrap();
    // "the" is a stop word; each remaining word once.
    assert_eq!(must.len(), 4);
    let exact = |word: &str| json!({"multi_match": {"query": word, "type": "best_fields", "fields": fields}});
    let fuzzy = |word: &str, distance: u8| {
        json!({"bool": {"should": [exact(word), {"multi_match": {
            "query": word, "type": "best_fields", "fields": fields, "fuzziness": distance,
            "fuzzy_transpositions": true, "prefix_length": 0, "max_expansions": 200, "boost": 0.25,
        }}], "minimum_should_match": 1}})
    };
    assert_eq!(must[0], fuzzy("jazz", 1));
    assert_eq!(must[1], fuzzy("festivals", 1), "distance counts the stemmed word, `festiv`");
    assert_eq!(must[2], exact("pop"), "words under 4 letters match exactly");
    assert_eq!(must[3], fuzzy("philharmonic", 2));
    assert_eq!(
        body["query"]["bool"]["filter"],
        json!([
            {"range": {"starts_at_ms": {"gte": 1_000, "lt": 2_000, "format": "epoch_millis"}}},
            {"term": {"category": "music"}},
            {"term": {"city.exact": "lisbon"}},
            {"geo_distance": {"distance": "25km", "distance_type": "arc", "location": {"lat": 38.7, "lon": -9.1}}},
        ])
    );
}

#[test]
fn a_search_without_text_sorts_by_date_and_leaves_open_bounds_out() {
    let body = search_body(&plan(&SearchQuery { to_ms: 5_000, limit: 10, ..query(None) }));
    assert_eq!(body["sort"], json!([{"starts_at_ms": "asc"}, {"event_id": "asc"}]));
    assert_eq!(body["query"]["bool"]["must"], json!([]));
    assert_eq!(
        body["query"]["bool"]["filter"],
        json!([{"range": {"starts_at_ms": {"lt": 5_000, "format": "epoch_millis"}}}])
    );
    let open = search_body(&plan(&query(None)));
    assert_eq!(open["query"]["bool"]["filter"], json!([]));
    assert_eq!(search_body(&plan(&query(Some("the of")))), open, "text of stop words only lists by date");
    assert!(ElasticIndex::search_body(&SearchQuery { offset: usize::MAX, ..query(None) }).is_err());
}

#[test]
fn search_answers_become_pages_with_more() {
    let hit = |id: u64, score: Value| json!({"_id": "x", "_score": score, "_source": crate::elastic::body::source(&doc(id)).unwrap()});
    let complete = |answer: &Value, plan: &Plan| match parse_search(answer, plan).unwrap() {
        SearchAnswer::Complete(page) => page,
        partial => panic!("{partial:?}"),
    };
    let answer = json!({"_shards": {"total": 1, "successful": 1, "failed": 0},
                        "hits": {"hits": [hit(1, json!(2.5)), hit(2, json!(1.0)), hit(3, json!(0.5))]}});
    let page = complete(&answer, &plan(&SearchQuery { limit: 2, ..query(Some("untitled")) }));
    assert_eq!((ids(&page), page.more), (vec![1, 2], true));
    assert_eq!(page.hits[0].score, 2.5);
    assert_eq!(page.hits[0].event, doc(1).summary());
    let unscored = json!({"hits": {"hits": [hit(1, Value::Null)]}});
    let page = complete(&unscored, &plan(&query(None)));
    assert_eq!((ids(&page), page.more, page.hits[0].score), (vec![1], false, 0.0));
    assert!(parse_search(&json!({"hits": {"hits": [{"_source": {"name": 1}}]}}), &plan(&query(None))).is_err());
}

#[test]
fn answers_missing_shards_or_time_are_partial_whatever_their_hits() {
    // The shapes of `_shards` and `timed_out` in the ES 8 search API reference.
    let hit = json!({"_score": 1.0, "_source": crate::elastic::body::source(&doc(1)).unwrap()});
    let failed = json!({"timed_out": false, "hits": {"hits": [hit.clone()]},
        "_shards": {"total": 3, "successful": 2, "skipped": 0, "failed": 1,
                    "failures": [{"shard": 0, "index": "p-v1", "reason": {"type": "illegal_argument_exception"}}]}});
    let partial = parse_search(&failed, &plan(&query(None))).unwrap();
    assert!(
        matches!(&partial, SearchAnswer::Partial { failed: 1, total: 3, timed_out: false, reason } if reason.contains("illegal_argument")),
        "{partial:?}"
    );
    let slow =
        json!({"timed_out": true, "_shards": {"total": 1, "successful": 1, "failed": 0}, "hits": {"hits": [hit]}});
    assert!(matches!(parse_search(&slow, &plan(&query(None))).unwrap(), SearchAnswer::Partial { timed_out: true, .. }));
    let skipped = json!({"timed_out": false, "_shards": {"total": 2, "successful": 2, "skipped": 1, "failed": 0}, "hits": {"hits": []}});
    assert!(
        matches!(parse_search(&skipped, &plan(&query(None))).unwrap(), SearchAnswer::Complete(_)),
        "skipped is not failed"
    );
}

#[test]
fn checkpoints_generations_and_reindex_bodies() {
    let answer = json!({"hits": {"hits": [
        {"_id": "shard-0", "_source": {"shard": 0, "checkpoint": 12}},
        {"_id": "shard-2", "_source": {"shard": 2, "checkpoint": 7}},
    ]}});
    assert_eq!(parse_checkpoints(&answer).unwrap(), BTreeMap::from([(0, 12), (2, 7)]));
    assert!(parse_checkpoints(&json!({"hits": {"hits": [{"_source": {}}]}})).is_err());
    assert_eq!(generation_of("boxoffice-events", "boxoffice-events-v12"), Some(12));
    for other in ["boxoffice-events", "boxoffice-events-checkpoints", "other-v1", "boxoffice-events-vx"] {
        assert_eq!(generation_of("boxoffice-events", other), None, "{other}");
    }
    assert_eq!(
        reindex_body("p-v1", "p-v2"),
        json!({"conflicts": "proceed", "source": {"index": "p-v1"}, "dest": {"index": "p-v2", "version_type": "external"}})
    );
    assert_eq!(
        swap_alias_body("p", "p-v1", "p-v2"),
        json!({"actions": [{"remove": {"index": "p-v1", "alias": "p"}}, {"add": {"index": "p-v2", "alias": "p", "is_write_index": true}}]})
    );
}

#[tokio::test]
async fn configuration_is_checked_and_secrets_are_masked() {
    let config = ElasticConfig {
        api_key: Some("c2VjcmV0".into()),
        password: Some("hunter2".into()),
        ..ElasticConfig::default()
    };
    let printed = format!("{config:?}");
    assert!(!printed.contains("c2VjcmV0") && !printed.contains("hunter2"), "{printed}");
    assert_eq!(ElasticConfig::default().index_prefix, "boxoffice-events");
    for bad in [
        ElasticConfig { index_prefix: "Upper".into(), ..ElasticConfig::default() },
        ElasticConfig { index_prefix: "_hidden".into(), ..ElasticConfig::default() },
        ElasticConfig { url: "not a url".into(), ..ElasticConfig::default() },
        ElasticConfig { username: Some("elastic".into()), ..ElasticConfig::default() },
    ] {
        assert!(matches!(crate::ElasticSearch::connect(bad.clone()).await, Err(crate::IndexError::Config(_))));
        assert!(matches!(ElasticIndex::connect(bad).await, Err(crate::IndexError::Config(_))));
    }
}

/// Events that exercise every part of a query: typos, performers, venues, cities, dates,
/// categories, distances, and relevance by field.
fn corpus() -> Vec<Document> {
    let event =
        |id: u64, name: &str, performer: &str, description: &str, city: &str, (lat, lon): (f64, f64)| Document {
            name: name.into(),
            performers: vec![performer.into()],
            description: description.into(),
            venue_name: format!("{city} Coliseum"),
            city: city.into(),
            lat,
            lon,
            category: if name == "Hamlet" { "theatre".into() } else { "music".into() },
            ..doc(id)
        };
    let (lisbon, porto) = ((38.7157, -9.1407), (41.1588, -8.6307));
    let mut docs = vec![
        event(1, "Hamlet", "Companhia de Teatro", "The prince of Denmark", "Lisbon", lisbon),
        event(2, "Midnight Jazz", "Marta Ribeiro Quartet", "Standards and improvisation", "Porto", porto),
        event(3, "Summer Rock Night", "The Electric Owls", "Loud guitars by the river", "Lisbon", lisbon),
        event(4, "Guitar Heroes", "Various", "Six strings", "Porto", porto),
        event(5, "Guitars", "Solo", "Acoustic evening", "Lisbon", lisbon),
    ];
    for id in 10..40 {
        let city = ["Lisbon", "Porto", "Faro"][id as usize % 3];
        let at = (37.0 + (id % 7) as f64 * 0.5, -9.0 + (id % 5) as f64 * 0.3);
        docs.push(event(id, &format!("Comedy Night {id}"), "Stand Up Crew", "Jokes all evening", city, at));
    }
    docs
}

fn comparison_queries() -> Vec<SearchQuery> {
    let text = |t: &str| query(Some(t));
    let near = |radius_km| SearchQuery { near: Some(GeoFilter { lat: 38.72, lon: -9.14, radius_km }), ..query(None) };
    vec![
        query(None),
        SearchQuery { offset: 20, ..query(None) },
        text("hamlte"),
        text("ribeiro"),
        text("electric owls"),
        text("guitars"),
        text("coliseum lisbon"),
        text("comedy"),
        SearchQuery { offset: 10, limit: 5, ..text("comedy night") },
        text("jazz zzyzx"),
        SearchQuery { from_ms: 3_000, to_ms: 15_000, ..query(None) },
        SearchQuery { category: Some("theatre".into()), ..query(None) },
        SearchQuery { city: Some("porto".into()), ..query(None) },
        SearchQuery { city: Some("faro".into()), ..text("comedy") },
        near(10.0),
        near(150.0),
        SearchQuery { limit: 3, ..near(400.0) },
    ]
}

#[tokio::test]
async fn both_backends_answer_the_same_queries_alike() {
    let Ok(url) = std::env::var("BOXOFFICE_TEST_ELASTICSEARCH_URL") else {
        println!("note: BOXOFFICE_TEST_ELASTICSEARCH_URL is not set; not comparing with Elasticsearch");
        return;
    };
    let env = |name: &str| std::env::var(name).ok();
    let config = ElasticConfig {
        url,
        index_prefix: format!("boxoffice-test-{:08x}", rand::random::<u32>()),
        api_key: env("BOXOFFICE_TEST_ELASTICSEARCH_API_KEY"),
        username: env("BOXOFFICE_TEST_ELASTICSEARCH_USERNAME"),
        password: env("BOXOFFICE_TEST_ELASTICSEARCH_PASSWORD"),
        ca_file: env("BOXOFFICE_TEST_ELASTICSEARCH_CA_FILE").map(Into::into),
    };
    let elastic = ElasticIndex::connect(config.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let embedded = crate::EmbeddedIndex::open(dir.path()).unwrap();
    let backends: [std::sync::Arc<dyn crate::Index>; 2] = [elastic.clone(), embedded.clone()];
    let older = Document { name: "Regressed".into(), version: 0, ..corpus()[0].clone() };
    for backend in &backends {
        backend.apply(corpus(), BTreeMap::from([(0, 9), (1, 4)])).await.unwrap();
        // Older versions and checkpoints change nothing in either backend.
        backend.apply(vec![older.clone()], BTreeMap::from([(0, 2)])).await.unwrap();
    }
    elastic.refresh().await.unwrap();
    // The api's read-only side answers what the indexer's does.
    let reader = crate::ElasticSearch::connect(config.clone()).await.unwrap();
    for q in comparison_queries() {
        let (a, b) = (elastic.search(q.clone()).await.unwrap(), reader.search(q.clone()).await.unwrap());
        assert_eq!((ids(&a), a.more), (ids(&b), b.more), "reader: {q:?}");
    }
    for backend in &backends {
        assert_eq!(backend.checkpoints().await.unwrap(), BTreeMap::from([(0, 9), (1, 4)]));
    }
    let compare = |label: &'static str| {
        let (elastic, embedded) = (elastic.clone(), embedded.clone());
        async move {
            for q in comparison_queries() {
                let (a, b) = (elastic.search(q.clone()).await.unwrap(), embedded.search(q.clone()).await.unwrap());
                assert_eq!((ids(&a), a.more), (ids(&b), b.more), "{label}: {q:?}");
            }
        }
    };
    compare("as written").await;
    let next = elastic.reindex().await.unwrap();
    assert!(next.ends_with("-v2"), "{next}");
    compare("after a reindex").await;
    elastic.delete_everything().await.unwrap();
}
