//! The idempotency table: outcomes of recent requests by request id, bounded by count and age.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::Outcome;
use crate::ids::RequestId;
use crate::limits::{DEDUP_ENTRIES_MAX, DEDUP_RETAIN_MS};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Remembered {
    pub fingerprint: u64,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Dedup {
    /// A `BTreeMap`, not a hash map, so snapshots of equal states are equal bytes.
    entries: BTreeMap<RequestId, Remembered>,
    /// Insertion order; apply time never decreases, so this is also time order.
    order: VecDeque<(i64, RequestId)>,
}

impl Dedup {
    pub fn get(&self, id: &RequestId) -> Option<&Remembered> {
        self.entries.get(id)
    }

    pub fn remember(&mut self, id: RequestId, fingerprint: u64, now_ms: i64, outcome: Outcome) {
        debug_assert!(self.order.back().is_none_or(|(t, _)| *t <= now_ms));
        if self.entries.insert(id, Remembered { fingerprint, outcome }).is_none() {
            self.order.push_back((now_ms, id));
        }
        while self.order.len() > DEDUP_ENTRIES_MAX {
            self.pop_oldest();
        }
        assert!(self.entries.len() <= DEDUP_ENTRIES_MAX);
    }

    /// Forgets requests older than the retention window.
    pub fn evict(&mut self, now_ms: i64) {
        while self.order.front().is_some_and(|(t, _)| *t < now_ms - DEDUP_RETAIN_MS) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.entries.remove(&id);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
