//! Lists over shards: `?limit=` and opaque `?cursor=`, scatter-gather and merge.
//!
//! Each shard returns its own first items after the cursor, sorted by the list's key; the merge
//! keeps the first `limit` overall. The cursor is the key of the last item returned, as
//! base64url JSON, so it is opaque to clients but needs no server state.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::future::join_all;
use raft_store::{Answer, GroupId, Query, LIST_LIMIT_MAX};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use seams::{Cluster, Consistency};

/// Items per page when `?limit=` is absent.
pub(crate) const LIST_LIMIT_DEFAULT: usize = 20;
/// Longest accepted cursor, in characters; ours are far shorter.
const CURSOR_LEN_MAX: usize = 512;

/// `?limit=` and `?cursor=`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// 1 to 100, default 20.
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
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
    pub(crate) fn cursor<K: DeserializeOwned>(&self) -> Result<Option<K>, ApiError> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

pub(crate) fn encode_cursor<K: Serialize>(key: &K) -> String {
    // A key of plain numbers and strings always serializes; an empty cursor would only restart
    // the list.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

fn decode_cursor<K: DeserializeOwned>(cursor: &str) -> Result<K, ApiError> {
    let bad = || ApiError::BadRequest("`cursor` is not a cursor this list returned".into());
    if cursor.len() > CURSOR_LEN_MAX {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
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
        let cursor = encode_cursor(&(42_i64, "ev0000000000000001".to_owned()));
        let params = PageParams { limit: None, cursor: Some(cursor) };
        assert_eq!(params.cursor::<(i64, String)>().unwrap(), Some((42, "ev0000000000000001".to_owned())));
        for bad in ["!!", "e30", &"A".repeat(CURSOR_LEN_MAX + 1)] {
            let params = PageParams { limit: None, cursor: Some(bad.to_owned()) };
            assert!(params.cursor::<(i64, String)>().is_err(), "{bad}");
        }
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
