//! The idempotency table: the outcome of each request with an id, kept in the cold store (see
//! `cold.rs`) for `DEDUP_RETAIN_MS` (an `Idempotency-Key`) or `RETRY_RETAIN_MS` (a router's own
//! id). A retry finds its first outcome there; the same id with another fingerprint is refused.
//!
//! On disk rather than in memory: a sale of 5,000 writes a second remembers 432 million outcomes
//! a day if every request carried a key, far beyond what a count-bounded table in memory holds
//! for 24 hours. The store's rules make this deterministic: apply sees only records written by
//! earlier entries, and a record counts until its expiry by apply time on every replica.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::cold::{ColdError, ColdRead, ColdRecord, ColdWrites};
use crate::command::Outcome;
use crate::ids::RequestId;
use crate::keys::cold::DEDUP;
use crate::limits::{DEDUP_RETAIN_MS, RETRY_RETAIN_MS};
use crate::machine::ctx::Ctx;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Remembered {
    pub fingerprint: u64,
    pub outcome: Outcome,
}

fn key(id: &RequestId) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.0.len());
    key.push(DEDUP);
    key.extend_from_slice(&id.0);
    key
}

/// The outcome remembered for `id`, as the entry at `ctx.index` sees it: written by an earlier
/// entry, or by an earlier proposal of this one (`pending`).
pub(crate) fn lookup(
    cold: &dyn ColdRead,
    pending: &ColdWrites,
    ctx: Ctx,
    id: &RequestId,
) -> Result<Option<Remembered>, ColdError> {
    let key = key(id);
    let record = match pending.get(&key) {
        Some(record) => Some(record.clone()),
        None => cold.get(&key)?.filter(|r| r.visible_to(ctx.index, ctx.now_ms)),
    };
    match record {
        Some(record) => record.decode_body(&key).map(Some),
        None => Ok(None),
    }
}

/// Remembers `outcome` for `id` from this entry on.
pub(crate) fn remember(
    writes: &mut ColdWrites,
    ctx: Ctx,
    id: &RequestId,
    keyed: bool,
    remembered: &Remembered,
) -> Result<(), ColdError> {
    let retain_ms = if keyed { DEDUP_RETAIN_MS } else { RETRY_RETAIN_MS };
    let body = codec::encode(remembered).map_err(ColdError::Encode)?;
    writes.put(key(id), ColdRecord { index: ctx.index, expires_ms: Some(ctx.now_ms + retain_ms), body });
    Ok(())
}
