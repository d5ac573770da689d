//! The JSON Elasticsearch receives and returns, as pure functions: index templates, bulk bodies,
//! search bodies, and the reading of their answers. The client in `mod.rs` only sends them.

use seams::{SearchHit, SearchPage};
use serde_json::{json, Map, Value};

use crate::document::Document;
use crate::error::IndexError;
use crate::index::Checkpoints;
use crate::plan::{valid_point, Plan, FIELD_BOOSTS, FUZZY_WEIGHT};
use crate::text::{ANALYZER, ENGLISH_STOP_WORDS, WORD_CHARS_MAX};

/// Priority of the events template; the checkpoints template outranks it for its one index.
const EVENTS_TEMPLATE_PRIORITY: u32 = 100;
const CHECKPOINTS_TEMPLATE_PRIORITY: u32 = 200;
/// Terms one fuzzy word may expand to per field. tantivy has no such bound; this one is high
/// enough that it rarely cuts anything off in an events catalogue.
pub(crate) const FUZZY_EXPANSIONS_MAX: u32 = 200;
/// Dates Elasticsearch parses safely, in milliseconds either side of the epoch (the ECMAScript
/// range); a query bound beyond it is left open instead.
const DATE_MS_LIMIT: i64 = 8_640_000_000_000_000;
/// `from + size` a search may reach: the api's depth plus the one extra hit that tells whether
/// more follow (Elasticsearch's default window is exactly 10,000).
const RESULT_WINDOW_MAX: usize = seams::SEARCH_DEPTH_MAX + 1;
const NORMALIZER: &str = "boxoffice_lowercase";

/// The template every events index (`{prefix}-v1`, `-v2`, …) is created from: the shared
/// analyzer, exact lower-cased keywords, epoch-millisecond dates and a geo point.
pub(crate) fn index_template(prefix: &str) -> Value {
    let text = json!({"type": "text", "analyzer": ANALYZER});
    let keyword = json!({"type": "keyword", "normalizer": NORMALIZER});
    let money = json!({"properties": {"amount": {"type": "long"}, "currency": {"type": "keyword"}}});
    json!({
        "index_patterns": [format!("{prefix}-*")],
        "priority": EVENTS_TEMPLATE_PRIORITY,
        "template": {
            "settings": {
                // One primary shard: a catalogue fits in one, and BM25 statistics are then exact,
                // so scores agree with the embedded index.
                "number_of_shards": 1,
                // Set explicitly: an idle index then still refreshes every second, and a write is
                // searchable within the api's two seconds.
                "refresh_interval": "1s",
                "max_result_window": RESULT_WINDOW_MAX,
                "analysis": analysis(),
            },
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "event_id": keyword,
                    "name": text,
                    "description": text,
                    "performers": text,
                    "venue_name": text,
                    "city": {"type": "text", "analyzer": ANALYZER, "fields": {"exact": keyword}},
                    "category": keyword,
                    "country": {"type": "keyword"},
                    // Kept in `_source` for hits; searches use `location`.
                    "lat": {"type": "double", "index": false, "doc_values": false},
                    "lon": {"type": "double", "index": false, "doc_values": false},
                    "location": {"type": "geo_point"},
                    "starts_at_ms": {"type": "date", "format": "epoch_millis"},
                    "price_min": money,
                    "price_max": money,
                    "available": {"type": "long"},
                    "status": {"type": "keyword"},
                    "version": {"type": "long"},
                    "shard": {"type": "integer"},
                }
            }
        }
    })
}

/// The analyzer of `text::analyzer`, in Elasticsearch's terms: the pattern splits where
/// tantivy's simple tokenizer does (anything not alphabetic or numeric).
fn analysis() -> Value {
    json!({
        "tokenizer": {"boxoffice_words": {"type": "pattern", "pattern": "[^\\p{IsAlphabetic}\\p{N}]+"}},
        "filter": {
            "boxoffice_length": {"type": "length", "min": 1, "max": WORD_CHARS_MAX},
            "boxoffice_stop": {"type": "stop", "stopwords": ENGLISH_STOP_WORDS.as_slice()},
            "boxoffice_stemmer": {"type": "stemmer", "language": "porter2"},
        },
        "analyzer": {
            ANALYZER: {
                "type": "custom",
                "tokenizer": "boxoffice_words",
                "filter": ["boxoffice_length", "lowercase", "boxoffice_stop", "boxoffice_stemmer"],
            }
        },
        "normalizer": {NORMALIZER: {"type": "custom", "filter": ["lowercase", "trim"]}},
    })
}

/// The template of `{prefix}-checkpoints`, which the events pattern also matches.
pub(crate) fn checkpoints_template(prefix: &str) -> Value {
    json!({
        "index_patterns": [checkpoints_index(prefix)],
        "priority": CHECKPOINTS_TEMPLATE_PRIORITY,
        "template": {
            "settings": {"number_of_shards": 1},
            "mappings": {
                "dynamic": "strict",
                "properties": {"shard": {"type": "integer"}, "checkpoint": {"type": "long"}},
            }
        }
    })
}

pub(crate) fn checkpoints_index(prefix: &str) -> String {
    format!("{prefix}-checkpoints")
}

/// The concrete events index of a generation: `{prefix}-v{n}`.
pub(crate) fn versioned_index(prefix: &str, generation: u32) -> String {
    format!("{prefix}-v{generation}")
}

/// The generation of a concrete events index, if `name` is one.
pub(crate) fn generation_of(prefix: &str, name: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.strip_prefix("-v")?.parse().ok()
}

/// Bulk NDJSON indexing `docs` with external versions: Elasticsearch keeps a document only if
/// its version is higher than the stored one, and answers 409 for the others.
pub(crate) fn bulk_body(docs: &[Document]) -> Result<String, IndexError> {
    let mut body = String::new();
    for doc in docs {
        let action =
            json!({"index": {"_id": doc.event_id.as_str(), "version": doc.version, "version_type": "external"}});
        push_line(&mut body, &action)?;
        push_line(&mut body, &source(doc)?)?;
    }
    Ok(body)
}

/// The stored form of a document: its serde form plus `location` when it has a valid point.
pub(crate) fn source(doc: &Document) -> Result<Value, IndexError> {
    let mut value = serde_json::to_value(doc).map_err(|e| IndexError::Corrupt(format!("encoding a document: {e}")))?;
    if let (Some((lat, lon)), Value::Object(map)) = (valid_point(doc.lat, doc.lon), &mut value) {
        map.insert("location".into(), json!({"lat": lat, "lon": lon}));
    }
    Ok(value)
}

/// Bulk NDJSON writing one checkpoint document per shard, versioned by the checkpoint itself so
/// that a checkpoint never moves back.
pub(crate) fn checkpoints_body(checkpoints: &Checkpoints) -> Result<String, IndexError> {
    let mut body = String::new();
    for (shard, index) in checkpoints {
        let action = json!({"index": {"_id": format!("shard-{shard}"), "version": index, "version_type": "external"}});
        push_line(&mut body, &action)?;
        push_line(&mut body, &json!({"shard": shard, "checkpoint": index}))?;
    }
    Ok(body)
}

fn push_line(body: &mut String, value: &Value) -> Result<(), IndexError> {
    let line = serde_json::to_string(value).map_err(|e| IndexError::Corrupt(format!("encoding a bulk line: {e}")))?;
    body.push_str(&line);
    body.push('\n');
    Ok(())
}

/// What a bulk answer means for the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BulkOutcome {
    /// Every item was stored or was already stored at a higher version (409).
    Done,
    /// Some items met back-pressure (429) or a server error: send the batch again.
    Retry(String),
    /// Some item was refused for good (a mapping error, say).
    Rejected { status: u16, detail: String },
}

pub(crate) fn bulk_outcome(answer: &Value) -> BulkOutcome {
    if answer.get("errors") == Some(&Value::Bool(false)) {
        return BulkOutcome::Done;
    }
    let mut retry = None;
    for item in answer.get("items").and_then(Value::as_array).into_iter().flatten() {
        let Some(result) = item.as_object().and_then(|o| o.values().next()) else { continue };
        let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
        let detail = || result.get("error").map(Value::to_string).unwrap_or_default();
        match status {
            200..=299 | 409 => {}
            429 | 500..=599 => retry = retry.or_else(|| Some(format!("{status}: {}", detail()))),
            _ => return BulkOutcome::Rejected { status: status as u16, detail: detail() },
        }
    }
    match retry {
        Some(reason) => BulkOutcome::Retry(reason),
        None => BulkOutcome::Done,
    }
}

/// Checkpoints from a search of the checkpoints index.
pub(crate) fn parse_checkpoints(answer: &Value) -> Result<Checkpoints, IndexError> {
    let mut checkpoints = Checkpoints::new();
    for hit in hits(answer) {
        let source = hit.get("_source");
        let shard = source.and_then(|s| s.get("shard")).and_then(Value::as_u64).and_then(|s| u32::try_from(s).ok());
        let index = source.and_then(|s| s.get("checkpoint")).and_then(Value::as_u64);
        match (shard, index) {
            (Some(shard), Some(index)) => {
                checkpoints.insert(shard, index);
            }
            _ => return Err(IndexError::Corrupt(format!("checkpoint document {hit}"))),
        }
    }
    Ok(checkpoints)
}

fn hits(answer: &Value) -> impl Iterator<Item = &Value> {
    answer.pointer("/hits/hits").and_then(Value::as_array).into_iter().flatten()
}

/// The search request for a plan: every word must match some field (exactly, or within its
/// edit distance for a smaller share of the score), the filters, the order, and one hit more
/// than the page to tell whether more follow.
pub(crate) fn search_body(plan: &Plan) -> Value {
    let fields: Vec<String> = FIELD_BOOSTS.iter().map(|(name, boost)| format!("{name}^{boost}")).collect();
    let must: Vec<Value> = plan.words.iter().map(|w| word_query(&fields, &w.word, w.distance)).collect();
    let mut sort = Vec::new();
    if plan.scored() {
        sort.push(json!({"_score": "desc"}));
    }
    sort.push(json!({"starts_at_ms": "asc"}));
    sort.push(json!({"event_id": "asc"}));
    json!({
        "from": plan.offset,
        "size": plan.limit + 1,
        "track_total_hits": false,
        "query": {"bool": {"must": must, "filter": filters(plan)}},
        "sort": sort,
    })
}

fn word_query(fields: &[String], word: &str, distance: u8) -> Value {
    let exact = json!({"multi_match": {"query": word, "type": "best_fields", "fields": fields}});
    if distance == 0 {
        return exact;
    }
    let fuzzy = json!({"multi_match": {
        "query": word,
        "type": "best_fields",
        "fields": fields,
        "fuzziness": distance,
        "fuzzy_transpositions": true,
        "prefix_length": 0,
        "max_expansions": FUZZY_EXPANSIONS_MAX,
        "boost": FUZZY_WEIGHT,
    }});
    json!({"bool": {"should": [exact, fuzzy], "minimum_should_match": 1}})
}

fn filters(plan: &Plan) -> Vec<Value> {
    let mut out = Vec::new();
    let mut range = Map::new();
    if plan.from_ms > -DATE_MS_LIMIT {
        range.insert("gte".into(), json!(plan.from_ms.min(DATE_MS_LIMIT)));
    }
    if plan.to_ms < DATE_MS_LIMIT {
        range.insert("lt".into(), json!(plan.to_ms.max(-DATE_MS_LIMIT)));
    }
    if !range.is_empty() {
        range.insert("format".into(), json!("epoch_millis"));
        out.push(json!({"range": {"starts_at_ms": range}}));
    }
    if let Some(category) = &plan.category {
        out.push(json!({"term": {"category": category}}));
    }
    if let Some(city) = &plan.city {
        out.push(json!({"term": {"city.exact": city}}));
    }
    if let Some(circle) = &plan.near {
        out.push(json!({"geo_distance": {
            "distance": format!("{}km", circle.radius_km),
            "distance_type": "arc",
            "location": {"lat": circle.lat, "lon": circle.lon},
        }}));
    }
    out
}

/// What a search answer holds: a page from every shard, or only some shards' hits.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SearchAnswer {
    Complete(SearchPage),
    /// `_shards.failed > 0` or `timed_out`: the hits are not all there are. `reason` is the
    /// first failure's, for the log.
    Partial {
        failed: u64,
        total: u64,
        timed_out: bool,
        reason: String,
    },
}

/// A page from a search answer: the first `limit` hits, and whether one more came back; or the
/// shards that failed, if any did.
pub(crate) fn parse_search(answer: &Value, plan: &Plan) -> Result<SearchAnswer, IndexError> {
    let shards = |field: &str| answer.pointer(&format!("/_shards/{field}")).and_then(Value::as_u64).unwrap_or(0);
    let (failed, total) = (shards("failed"), shards("total"));
    let timed_out = answer.get("timed_out") == Some(&Value::Bool(true));
    if failed > 0 || timed_out {
        let reason = answer.pointer("/_shards/failures/0/reason").map(Value::to_string).unwrap_or_else(|| {
            if timed_out {
                "timed out".into()
            } else {
                String::new()
            }
        });
        return Ok(SearchAnswer::Partial { failed, total, timed_out, reason });
    }
    let mut page = Vec::new();
    let mut more = false;
    for hit in hits(answer) {
        if page.len() == plan.limit {
            more = true;
            break;
        }
        let source = hit.get("_source").cloned().unwrap_or(Value::Null);
        let doc: Document =
            serde_json::from_value(source).map_err(|e| IndexError::Corrupt(format!("search hit: {e}")))?;
        let score = if plan.scored() { hit.get("_score").and_then(Value::as_f64).unwrap_or(0.0) as f32 } else { 0.0 };
        page.push(SearchHit { event: doc.summary(), score });
    }
    Ok(SearchAnswer::Complete(SearchPage { hits: page, more }))
}

/// Copies every document of `source` into `dest`, keeping external versions so that a copy
/// never overwrites a newer document already there.
pub(crate) fn reindex_body(source: &str, dest: &str) -> Value {
    json!({
        "conflicts": "proceed",
        "source": {"index": source},
        "dest": {"index": dest, "version_type": "external"},
    })
}

/// Moves `alias` from `old` to `new` in one atomic step.
pub(crate) fn swap_alias_body(alias: &str, old: &str, new: &str) -> Value {
    json!({"actions": [
        {"remove": {"index": old, "alias": alias}},
        {"add": {"index": new, "alias": alias, "is_write_index": true}},
    ]})
}
