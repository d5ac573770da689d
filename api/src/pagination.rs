//! Lists over shards: `?limit=` and `?cursor=`, scatter-gather and merge.
//!
//! Each shard returns its own first items after the cursor, sorted by the list's key; the merge
//! keeps the first `limit` overall. The cursor is the key of the last item returned, written out
//! in a grammar `/openapi.json` declares (a [`Cursor`]'s `SHAPE`), so it needs no server state
//! and every string of that grammar is a position in the list: a client may pass any of them.

use futures_util::future::join_all;
use raft_store::{Answer, EventId, GroupId, OrderId, Query, LIST_LIMIT_MAX};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::dto::rules::Shape;
use crate::error::ApiError;
use seams::{Cluster, Consistency, SEARCH_DEPTH_MAX};

/// Items per page when `?limit=` is absent.
pub(crate) const LIST_LIMIT_DEFAULT: usize = 20;

/// `?limit=` and `?cursor=` as a list reads them; each list declares its own parameters (the
/// cursor's grammar differs), then builds this.
#[derive(Debug, Default)]
pub(crate) struct PageParams {
    pub limit: Option<u64>,
    pub cursor: Option<String>,
}

impl PageParams {
    pub(crate) fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(LIST_LIMIT_DEFAULT),
            Some(n) if (1..=LIST_LIMIT_MAX as u64).contains(&n) => Ok(n as usize),
            Some(_) => Err(ApiError::BadRequest(format!("`limit` is between 1 and {LIST_LIMIT_MAX}"))),
        }
    }

    /// The decoded cursor, or `None` for the first page.
    pub(crate) fn cursor<K: Cursor>(&self) -> Result<Option<K>, ApiError> {
        let bad = || ApiError::BadRequest(format!("`cursor` must be {}", K::SHAPE.what));
        self.cursor.as_deref().map(|text| K::decode(text).ok_or_else(bad)).transpose()
    }
}

/// `?limit=`'s schema: 1 to 100.
pub(crate) fn limit_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(LIST_LIMIT_MAX as i64))
        .default(Some(serde_json::json!(LIST_LIMIT_DEFAULT)))
        .build()
}

/// The key of a list's last item, as `next_cursor` carries it.
pub(crate) trait Cursor: Sized {
    const SHAPE: Shape;
    fn encode(&self) -> String;
    fn decode(text: &str) -> Option<Self>;
}

/// Longest decimal time in a cursor; 19 digits cover every `i64` of milliseconds.
const MS_DIGITS_MAX: usize = 19;

/// `-?DIGITS` as milliseconds; values beyond `i64` are clamped: a position past every item.
fn decode_ms(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > MS_DIGITS_MAX || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i128 = text.parse().ok()?;
    Some(value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

const MS_PATTERN: &str = "-?[0-9]{1,19}";
const ORDER_ID_PATTERN: &str = "or-ev[0-9a-f]{16}-[0-9]{1,19}";

/// An order id whose sequence fits 64 bits and has at most 19 digits, as its pattern says.
fn decode_order_id(text: &str) -> Option<OrderId> {
    let seq = text.rsplit('-').next()?;
    (seq.len() <= 19).then(|| OrderId::parse(text)).flatten()
}

/// The event list's position: `STARTS_AT_MS.EVENT_ID` of the last event returned.
pub(crate) struct EventCursor {
    pub starts_at_ms: i64,
    pub event_id: EventId,
}

impl Cursor for EventCursor {
    const SHAPE: Shape = Shape {
        pattern: || format!("^{MS_PATTERN}\\.ev[0-9a-f]{{16}}$"),
        accepts: |text| EventCursor::decode(text).is_some(),
        what: "the `next_cursor` of a page: STARTS_AT_MS.EVENT_ID",
        example: Some("1906830000000.ev0123456789abcdef"),
    };

    fn encode(&self) -> String {
        format!("{}.{}", self.starts_at_ms, self.event_id)
    }

    fn decode(text: &str) -> Option<Self> {
        let (ms, id) = text.split_once('.')?;
        Some(EventCursor { starts_at_ms: decode_ms(ms)?, event_id: EventId::parse(id)? })
    }
}

/// The caller's orders' position, newest first: `CREATED_AT_MS.ORDER_ID`.
pub(crate) struct OrderCursor {
    pub created_at_ms: i64,
    pub order_id: OrderId,
}

impl Cursor for OrderCursor {
    const SHAPE: Shape = Shape {
        pattern: || format!("^{MS_PATTERN}\\.{ORDER_ID_PATTERN}$"),
        accepts: |text| OrderCursor::decode(text).is_some(),
        what: "the `next_cursor` of a page: CREATED_AT_MS.ORDER_ID",
        example: Some("1906830000000.or-ev0123456789abcdef-7"),
    };

    fn encode(&self) -> String {
        format!("{}.{}", self.created_at_ms, self.order_id)
    }

    fn decode(text: &str) -> Option<Self> {
        let (ms, id) = text.split_once('.')?;
        Some(OrderCursor { created_at_ms: decode_ms(ms)?, order_id: decode_order_id(id)? })
    }
}

/// The caller's tickets' position: `CREATED_AT_MS.ORDER_ID.N`, N the ticket's number in its
/// order.
pub(crate) struct TicketCursor {
    pub created_at_ms: i64,
    pub order_id: OrderId,
    pub n: u32,
}

/// Digits of a ticket's number in a cursor: every such number fits `u32`.
const TICKET_N_DIGITS_MAX: usize = 9;

impl Cursor for TicketCursor {
    const SHAPE: Shape = Shape {
        pattern: || format!("^{MS_PATTERN}\\.{ORDER_ID_PATTERN}\\.[0-9]{{1,{TICKET_N_DIGITS_MAX}}}$"),
        accepts: |text| TicketCursor::decode(text).is_some(),
        what: "the `next_cursor` of a page: CREATED_AT_MS.ORDER_ID.N",
        example: Some("1906830000000.or-ev0123456789abcdef-7.2"),
    };

    fn encode(&self) -> String {
        format!("{}.{}.{}", self.created_at_ms, self.order_id, self.n)
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let (ms, id, n) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || n.is_empty() || n.len() > TICKET_N_DIGITS_MAX {
            return None;
        }
        if !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(TicketCursor { created_at_ms: decode_ms(ms)?, order_id: decode_order_id(id)?, n: n.parse().ok()? })
    }
}

/// A search's position: how many results the pages so far held, at most the depth a search
/// pages through (`SEARCH_DEPTH_MAX`).
pub(crate) struct SearchCursor(pub usize);

impl Cursor for SearchCursor {
    const SHAPE: Shape = Shape {
        pattern: || {
            let max = SEARCH_DEPTH_MAX.to_string();
            format!("^0*([0-9]{{1,{}}}|{max})$", max.len() - 1)
        },
        accepts: |text| SearchCursor::decode(text).is_some(),
        what: "the `next_cursor` of a page: the number of results before it, at most 10000",
        example: Some("20"),
    };

    fn encode(&self) -> String {
        self.0.to_string()
    }

    fn decode(text: &str) -> Option<Self> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = text.trim_start_matches('0');
        if digits.len() > SEARCH_DEPTH_MAX.to_string().len() {
            return None;
        }
        let offset: usize = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        (offset <= SEARCH_DEPTH_MAX).then_some(SearchCursor(offset))
    }
}

/// How many items to ask each shard for: one more than the page, to learn whether more exist,
/// within what a shard answers at most.
pub(crate) fn per_shard_limit(limit: usize) -> usize {
    (limit + 1).min(LIST_LIMIT_MAX)
}

/// Asks every shard the query `query_for(shard)` and unpacks each answer with `unpack`.
pub(crate) async fn gather<T>(
    cluster: &dyn Cluster,
    consistency: Consistency,
    query_for: impl Fn(u32) -> Query,
    unpack: impl Fn(Answer) -> Option<Vec<T>>,
) -> Result<Vec<Vec<T>>, ApiError> {
    let reads = (0..cluster.shard_count()).map(|s| cluster.query(GroupId::shard(s), query_for(s), consistency));
    let mut pages = Vec::new();
    for answer in join_all(reads).await {
        let page = unpack(answer?).ok_or_else(|| ApiError::Internal("a shard answered a list query oddly".into()))?;
        pages.push(page);
    }
    Ok(pages)
}

/// Merges per-shard pages, each sorted by `key` and holding that shard's first `asked` items,
/// into the first `limit` items overall. The flag says whether another page may follow.
pub(crate) fn merge<T, K: Ord>(
    pages: Vec<Vec<T>>,
    asked: usize,
    limit: usize,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, bool) {
    debug_assert!(asked >= limit, "every shard must offer a whole page");
    // A shard that filled its page while asked for no more than `limit` may hold more: only
    // possible at the largest page, where `limit + 1` is above what a shard answers.
    let shard_full = asked <= limit && pages.iter().any(|p| p.len() >= asked);
    let mut items: Vec<T> = pages.into_iter().flatten().collect();
    items.sort_by_key(|item| key(item));
    let more = items.len() > limit || shard_full;
    items.truncate(limit);
    (items, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_a_bad_request() {
        let event = EventCursor { starts_at_ms: 42, event_id: EventId::parse("ev0000000000000001").unwrap() };
        let params = PageParams { limit: None, cursor: Some(event.encode()) };
        let back = params.cursor::<EventCursor>().unwrap().unwrap();
        assert_eq!((back.starts_at_ms, back.event_id.as_str()), (42, "ev0000000000000001"));
        let order = OrderCursor { created_at_ms: -5, order_id: OrderId::parse("or-ev0000000000000001-9").unwrap() };
        assert_eq!(OrderCursor::decode(&order.encode()).unwrap().order_id, order.order_id);
        let ticket = TicketCursor { created_at_ms: 7, order_id: order.order_id.clone(), n: 3 };
        assert_eq!(TicketCursor::decode(&ticket.encode()).unwrap().n, 3);
        assert_eq!(SearchCursor::decode(&SearchCursor(40).encode()).unwrap().0, 40);
        for bad in ["!!", "e30", "", "42", "42.", ".ev0000000000000001", "42.ev00000000000000g1", "1.2.3"] {
            let params = PageParams { limit: None, cursor: Some(bad.to_owned()) };
            assert!(params.cursor::<EventCursor>().is_err(), "{bad}");
        }
        for bad in ["", "-1", "10001", "1e3", " 1"] {
            assert!(SearchCursor::decode(bad).is_none(), "{bad}");
        }
        // Beyond i64 is a position past everything, not an error: the grammar allows it.
        assert_eq!(EventCursor::decode("9999999999999999999.ev0000000000000001").unwrap().starts_at_ms, i64::MAX);
    }

    #[test]
    fn limit_defaults_to_20_and_is_bounded() {
        assert_eq!(PageParams::default().limit().unwrap(), 20);
        assert_eq!(PageParams { limit: Some(100), cursor: None }.limit().unwrap(), 100);
        assert!(PageParams { limit: Some(0), cursor: None }.limit().is_err());
        assert!(PageParams { limit: Some(101), cursor: None }.limit().is_err());
    }

    #[test]
    fn merge_keeps_the_first_items_overall_and_says_when_more_exist() {
        let (items, more) = merge(vec![vec![1, 4, 5], vec![2, 3]], 3, 2, |x| *x);
        assert_eq!((items, more), (vec![1, 2], true));
        let (items, more) = merge(vec![vec![1], vec![2]], 3, 2, |x| *x);
        assert_eq!((items, more), (vec![1, 2], false));
        // At the largest page a full shard page may hide more items.
        let full: Vec<u32> = (0..100).collect();
        let (items, more) = merge(vec![full, vec![]], 100, 100, |x| *x);
        assert_eq!((items.len(), more), (100, true));
    }
}
