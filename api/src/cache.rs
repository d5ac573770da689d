//! The read cache: event details and seat maps, rendered once and served from memory for a
//! short time, with request coalescing, ETags and invalidation from the change feed.
//!
//! Why: browsing dwarfs buying. In a sale thousands of clients poll the same few seat maps, and
//! each poll would otherwise be a read of the shard's state machine plus a JSON rendering of up
//! to tens of thousands of seats. Here a map is read and rendered at most once per `ttl` per api
//! instance, and N concurrent misses on one event cost the cluster one read (`moka`'s
//! `try_get_with` runs one loader and lets the others wait for it).
//!
//! Freshness: browsing already reads with `Consistency::Stale`, so a map may be a bounded time
//! behind; the cache adds at most `ttl` (1 s by default). A stale map can only make a hold
//! answer 409 `seats_unavailable`; it can never sell a seat twice, which apply decides.
//! Two things keep it closer than `ttl`:
//!
//! - a successful write through this instance invalidates its event at once, so a client sees
//!   its own hold in the next read of the same instance;
//! - one follower per shard long-polls the change feed and invalidates every event its records
//!   mention, so writes through other instances show within about one feed round trip; when the
//!   feed was compacted past the follower, everything is invalidated.
//!
//! A load that started before an invalidation of its event may finish after it and put the old
//! map back. Every invalidation therefore takes a number from one counter (`epoch`) and every
//! rendered answer records the number current when its read began; an answer read before its
//! event's last invalidation is dropped and read again (once), so an invalidation is never undone.
//!
//! Errors are not cached (an unknown event's 404 is read each time): every coalesced waiter gets
//! the loader's error, and the next request tries again.
//!
//! ETags are strong, a hash of what the document says: the whole body for event details; for
//! seat maps, the event id, seats and general sections, leaving out `as_of` and `as_of_index`,
//! which say when the map was read, not what it shows. Two maps with the same tag show every
//! seat, count and price the same, so a client or CDN holding either has a correct map; counting
//! the read position in would change the tag on every read (and on every write to any event of
//! the shard), and no revalidation would ever answer 304.

use std::collections::BTreeSet;
use std::future::Future;
use std::hash::{DefaultHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use moka::future::Cache;
use raft_store::{ChangesPage, EventId};

use crate::config::ReadCacheConfig;
use crate::error::ApiError;
use seams::Cluster;

/// Change records asked of the feed per read.
const FEED_BATCH_RECORDS_MAX: usize = 256;
/// How long one feed read waits for a record before it asks again.
const FEED_POLL_WAIT: Duration = Duration::from_secs(10);
/// Backoff between failed feed reads: from the first to the last, doubling.
const FEED_RETRY_MIN: Duration = Duration::from_millis(100);
const FEED_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often the feed supervisor looks for shards it does not follow yet (a `boxoffice api`
/// learns the shard count from the cluster after start-up).
const FEED_SHARDS_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long an invalidation is remembered beyond the ttl: a load may have been in flight when it
/// happened, and loads give up well within this (the router's own timeouts are shorter).
const INVALIDATION_MEMORY_EXTRA: Duration = Duration::from_secs(30);
/// Events whose last invalidation is remembered; past it the oldest are forgotten, which can
/// only let a load that raced an invalidation live out its ttl.
const INVALIDATIONS_TRACKED_MAX: u64 = 100_000;
/// Reads of one request after its answer turned out older than an invalidation.
const STALE_RELOADS_MAX: u32 = 1;
/// `stale-while-revalidate` for a CDN: it may serve an expired copy this long while it asks us
/// again in the background. A few seconds keeps a hot map's origin traffic at one request per
/// `max-age` per edge, and a map that old is still within what browsing promises.
const STALE_WHILE_REVALIDATE_S: u64 = 5;

/// Which document a cache holds; the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Doc {
    Event,
    Seats,
}

impl Doc {
    fn label(self) -> &'static str {
        match self {
            Doc::Event => "event",
            Doc::Seats => "seats",
        }
    }
}

/// A rendered answer: the JSON body and its tag.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub body: Bytes,
    pub etag: HeaderValue,
    /// The shard's log index a seat map reflects (its `as_of_index`); 0 for event details.
    pub index: u64,
    /// The seat map as a stream's `snapshot` frame, built once for every stream that starts
    /// from this map (see `seat_feed.rs`).
    sse_snapshot: std::sync::OnceLock<Bytes>,
    /// The invalidation counter when the read began.
    epoch: u64,
}

impl Rendered {
    /// `body` with a tag hashed from `body[tagged]`, the part of the document the tag covers.
    /// One hash over contiguous bytes: hashing a second serialization of the document, fragment
    /// by fragment, was a tenth of the api's CPU under browsing.
    pub(crate) fn new(body: Vec<u8>, tagged: std::ops::Range<usize>) -> Rendered {
        let mut hasher = DefaultHasher::new();
        hasher.write(body.get(tagged).unwrap_or(&body));
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .unwrap_or(HeaderValue::from_static("\"0\""));
        Rendered { body: Bytes::from(body), etag, index: 0, sse_snapshot: std::sync::OnceLock::new(), epoch: 0 }
    }

    /// The same document, reflecting log index `index`.
    pub(crate) fn at_index(self, index: u64) -> Rendered {
        Rendered { index, ..self }
    }

    /// The body as a server-sent `snapshot` event, built on first use and shared after.
    pub(crate) fn sse_snapshot(&self) -> Bytes {
        self.sse_snapshot.get_or_init(|| crate::sse::snapshot_frame(self.index, &self.body)).clone()
    }

    /// 200 with the body, or 304 without one when `If-None-Match` names this tag; both with the
    /// tag, `Cache-Control` and `X-Cache` (whether this instance answered from memory).
    pub(crate) fn respond(
        &self,
        doc: Doc,
        source: Source,
        request: &HeaderMap,
        cache_control: &HeaderValue,
    ) -> Response {
        let mut response = if if_none_match(request, &self.etag) {
            metrics::counter!("api_cache_not_modified_total", "cache" => doc.label()).increment(1);
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let content_type = HeaderValue::from_static("application/json");
            ([(header::CONTENT_TYPE, content_type)], self.body.clone()).into_response()
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::CACHE_CONTROL, cache_control.clone());
        headers.insert(X_CACHE, HeaderValue::from_static(source.label()));
        response
    }
}

/// Says whether a cached document came from memory; clients and benchmarks can tell hits apart.
pub(crate) const X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");

/// Where a document came from: memory (`hit`, including a wait on another request's read) or a
/// read of the store (`miss`, always with the cache off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Hit,
    Miss,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Hit => "hit",
            Source::Miss => "miss",
        }
    }
}

/// RFC 9110 §13.1.2: `*`, or a list of tags compared weakly (a `W/` prefix is ignored).
fn if_none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|list| {
        list.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
    })
}

pub(crate) struct ReadCache {
    /// `None` when the cache is off (ttl zero): every request reads.
    events: Option<Cache<EventId, Arc<Rendered>>>,
    seats: Option<Cache<EventId, Arc<Rendered>>>,
    /// Per event, the epoch of its last invalidation.
    invalidated: Cache<EventId, u64>,
    /// The epoch of the last invalidation of everything.
    invalidated_all: AtomicU64,
    epoch: AtomicU64,
    cache_control: HeaderValue,
}

impl ReadCache {
    pub(crate) fn new(config: &ReadCacheConfig) -> ReadCache {
        let on = !config.ttl.is_zero();
        // The two caches share the byte budget; maps are the large ones.
        let build = |share_bytes: u64| {
            Cache::builder()
                .time_to_live(config.ttl)
                .max_capacity(share_bytes.max(1))
                .weigher(|_: &EventId, r: &Arc<Rendered>| u32::try_from(r.body.len()).unwrap_or(u32::MAX))
                .build()
        };
        let invalidated = Cache::builder()
            .time_to_live(config.ttl + INVALIDATION_MEMORY_EXTRA)
            .max_capacity(INVALIDATIONS_TRACKED_MAX)
            .build();
        ReadCache {
            events: on.then(|| build(config.capacity_bytes / 4)),
            seats: on.then(|| build(config.capacity_bytes - config.capacity_bytes / 4)),
            invalidated,
            invalidated_all: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            cache_control: cache_control(config.ttl),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.events.is_some()
    }

    pub(crate) fn cache_control(&self) -> &HeaderValue {
        &self.cache_control
    }

    fn cache(&self, doc: Doc) -> Option<&Cache<EventId, Arc<Rendered>>> {
        match doc {
            Doc::Event => self.events.as_ref(),
            Doc::Seats => self.seats.as_ref(),
        }
    }

    /// The document of `event_id`: from the cache, or from `load` (one load for any number of
    /// concurrent requests). `load` reads the store and renders.
    pub(crate) async fn get<F, Fut>(
        &self,
        doc: Doc,
        event_id: &EventId,
        load: F,
    ) -> Result<(Arc<Rendered>, Source), ApiError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Rendered, ApiError>>,
    {
        let Some(cache) = self.cache(doc) else {
            count(doc, Source::Miss);
            return load().await.map(|r| (Arc::new(r), Source::Miss));
        };
        let mut reloads = 0;
        loop {
            let loaded = AtomicBool::new(false);
            let init = async {
                loaded.store(true, Ordering::Relaxed);
                let epoch = self.epoch.load(Ordering::SeqCst);
                load().await.map(|rendered| Arc::new(Rendered { epoch, ..rendered }))
            };
            let result = cache.try_get_with_by_ref(event_id, init).await;
            // A request that caused a read is a miss; one served without (a hit, or a wait on
            // another request's read) is a hit.
            let source = if loaded.load(Ordering::Relaxed) { Source::Miss } else { Source::Hit };
            count(doc, source);
            let rendered = result.map_err(|e| shared_error(&e))?;
            if reloads < STALE_RELOADS_MAX && self.predates_invalidation(event_id, rendered.epoch).await {
                reloads += 1;
                cache.invalidate(event_id).await;
                continue;
            }
            return Ok((rendered, source));
        }
    }

    async fn predates_invalidation(&self, event_id: &EventId, epoch: u64) -> bool {
        if epoch < self.invalidated_all.load(Ordering::SeqCst) {
            return true;
        }
        self.invalidated.get(event_id).await.is_some_and(|at| epoch < at)
    }

    /// Drops both documents of the event; loads already under way will not put theirs back.
    pub(crate) async fn invalidate(&self, event_id: &EventId, source: &'static str) {
        if !self.enabled() {
            return;
        }
        metrics::counter!("api_cache_invalidations_total", "source" => source).increment(1);
        let at = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.invalidated.insert(event_id.clone(), at).await;
        for cache in [&self.events, &self.seats].into_iter().flatten() {
            cache.invalidate(event_id).await;
        }
    }

    /// Drops everything (the feed was compacted past a follower: what changed is unknown).
    pub(crate) fn invalidate_all(&self) {
        if !self.enabled() {
            return;
        }
        metrics::counter!("api_cache_invalidations_total", "source" => "compacted").increment(1);
        let at = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.invalidated_all.fetch_max(at, Ordering::SeqCst);
        for cache in [&self.events, &self.seats].into_iter().flatten() {
            cache.invalidate_all();
        }
    }
}

fn count(doc: Doc, source: Source) {
    metrics::counter!("api_cache_requests_total", "cache" => doc.label(), "result" => source.label()).increment(1);
}

/// The loaders fail only with these; any other kind becomes an internal error.
fn shared_error(e: &ApiError) -> ApiError {
    match e {
        ApiError::NotFound(d) => ApiError::NotFound(d.clone()),
        ApiError::Unavailable(d) => ApiError::Unavailable(d.clone()),
        other => ApiError::Internal(other.to_string()),
    }
}

/// `Cache-Control` for event details and seat maps: shared caches may keep them as long as we do
/// (`max-age`, whole seconds, rounded up) and serve them a little past that while they
/// revalidate. With the cache off, every use revalidates (the ETag keeps that cheap).
fn cache_control(ttl: Duration) -> HeaderValue {
    if ttl.is_zero() {
        return HeaderValue::from_static("public, no-cache");
    }
    let max_age_s = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    HeaderValue::from_str(&format!("public, max-age={max_age_s}, stale-while-revalidate={STALE_WHILE_REVALIDATE_S}"))
        .unwrap_or(HeaderValue::from_static("public, no-cache"))
}

/// Starts a follower for every shard, and for shards learned later (a `boxoffice api` knows the
/// shard count only once it has reached the cluster). Dropping the future stops them all.
pub(crate) async fn follow_feeds(cache: Arc<ReadCache>, cluster: Arc<dyn Cluster>) {
    let mut followers = tokio::task::JoinSet::new();
    let mut followed = 0;
    loop {
        let shards = cluster.shard_count();
        while followed < shards {
            followers.spawn(follow_shard(cache.clone(), cluster.clone(), followed));
            followed += 1;
        }
        tokio::time::sleep(FEED_SHARDS_CHECK_INTERVAL).await;
    }
}

/// Follows one shard's change feed from its current end, invalidating the events its records
/// mention. Tolerates an unreachable cluster: retries with backoff, warns once per outage.
async fn follow_shard(cache: Arc<ReadCache>, cluster: Arc<dyn Cluster>, shard: u32) {
    let mut after_index: Option<u64> = None;
    let mut backoff = FEED_RETRY_MIN;
    let mut failing = false;
    loop {
        // The first read asks for one record without waiting, only to learn where the feed ends:
        // nothing is cached from before this follower started.
        let read = match after_index {
            None => cluster.changes(shard, 0, 1, Duration::ZERO).await,
            Some(after) => cluster.changes(shard, after, FEED_BATCH_RECORDS_MAX, FEED_POLL_WAIT).await,
        };
        match read {
            Ok(page) => {
                if failing {
                    tracing::info!(shard, "read cache: the change feed answers again");
                    failing = false;
                }
                backoff = FEED_RETRY_MIN;
                after_index = Some(match after_index {
                    None => page_last_index(&page),
                    Some(after) => apply_page(&cache, page, after).await,
                });
            }
            Err(e) => {
                metrics::counter!("api_cache_feed_errors_total").increment(1);
                if !failing {
                    tracing::warn!(shard, error = %e, "read cache: the change feed is unavailable; retrying");
                    failing = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(FEED_RETRY_MAX);
            }
        }
    }
}

fn page_last_index(page: &ChangesPage) -> u64 {
    match page {
        ChangesPage::Records { last_index, .. } | ChangesPage::Compacted { last_index, .. } => *last_index,
    }
}

/// Invalidates what one page mentions; returns the index to continue after.
async fn apply_page(cache: &ReadCache, page: ChangesPage, after_index: u64) -> u64 {
    match page {
        ChangesPage::Compacted { last_index, .. } => {
            tracing::info!(after_index, last_index, "read cache: the change feed was compacted; dropping everything");
            cache.invalidate_all();
            after_index.max(last_index)
        }
        ChangesPage::Records { changes, last_index } => {
            let events: BTreeSet<&EventId> = changes.iter().map(|c| &c.event_id).collect();
            for event_id in events {
                cache.invalidate(event_id, "feed").await;
            }
            // A full page may stop short of `last_index`: continue after its last record.
            let read_through = match changes.last() {
                Some(last) if changes.len() >= FEED_BATCH_RECORDS_MAX => last.index,
                _ => last_index,
            };
            after_index.max(read_through)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(text: &str) -> Rendered {
        Rendered::new(text.as_bytes().to_vec(), 0..text.len())
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let etag = tagged("{}").etag;
        let tag = etag.to_str().expect("ascii").to_owned();
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).expect("header"));
            if_none_match(&headers, &etag)
        };
        assert!(with(&tag));
        assert!(with(&format!("\"other\", W/{tag}")));
        assert!(with("*"));
        assert!(!with("\"other\""));
        assert!(!if_none_match(&HeaderMap::new(), &etag));
    }

    #[test]
    fn tags_follow_the_content() {
        assert_eq!(tagged("a").etag, tagged("a").etag);
        assert_ne!(tagged("a").etag, tagged("b").etag);
    }

    #[test]
    fn cache_control_rounds_the_ttl_up_to_whole_seconds() {
        assert_eq!(cache_control(Duration::from_millis(1_000)), "public, max-age=1, stale-while-revalidate=5");
        assert_eq!(cache_control(Duration::from_millis(1_500)), "public, max-age=2, stale-while-revalidate=5");
        assert_eq!(cache_control(Duration::ZERO), "public, no-cache");
    }
}
