//! What the follower writes through: a search backend that also stores documents and the
//! follower's checkpoints.

use std::collections::BTreeMap;

use seams::{BoxFuture, SearchBackend};

use crate::document::Document;
use crate::error::IndexError;

/// Shard → the shard log index through which every change record has been applied.
pub type Checkpoints = BTreeMap<u32, u64>;

/// Adds `newer` to `into`; a checkpoint never moves backwards.
pub fn merge_checkpoints(into: &mut Checkpoints, newer: Checkpoints) {
    for (shard, through) in newer {
        let entry = into.entry(shard).or_insert(through);
        *entry = (*entry).max(through);
    }
}

pub trait Index: SearchBackend {
    /// Stores `docs` and then `checkpoints`.
    ///
    /// A document whose `version` is lower than the stored one for its event never replaces it,
    /// so replays and concurrent writers cannot regress the index. A checkpoint never moves
    /// backwards. Checkpoints become durable no earlier than the documents they cover (in one
    /// commit where the backend can), so a crash can only cause a harmless replay.
    fn apply(&self, docs: Vec<Document>, checkpoints: Checkpoints) -> BoxFuture<'_, Result<(), IndexError>>;

    /// The stored checkpoints; an empty map for a new index.
    fn checkpoints(&self) -> BoxFuture<'_, Result<Checkpoints, IndexError>>;
}
