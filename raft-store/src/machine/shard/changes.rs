//! The change feed: every change to an event or its inventory is recorded with its log index, and
//! read back in pages that never split one index. Bounded by [`CHANGES_RETAINED_MAX`] and, as
//! records are written, by age ([`CHANGES_RETAIN_MS`] of log time); a reader that fell behind the
//! oldest retained record is told so, not given a gap.

use super::state::ShardState;
use crate::command::{Change, ChangeKind, ChangesPage};
use crate::ids::EventId;
use crate::limits::{CHANGES_AGED_DROPS_MAX, CHANGES_RETAINED_MAX, CHANGES_RETAIN_MS};
use crate::machine::ctx::Ctx;
use crate::machine::partition_point;

impl ShardState {
    pub(super) fn record(&mut self, ctx: Ctx, event_id: &EventId, kind: ChangeKind) {
        self.changes.push_back(Change { index: ctx.index, time_ms: ctx.now_ms, event_id: event_id.clone(), kind });
        while self.changes.len() > CHANGES_RETAINED_MAX {
            self.drop_oldest_change();
        }
        // The record just pushed is never past the horizon, so these are older ones.
        let horizon_ms = ctx.now_ms.saturating_sub(CHANGES_RETAIN_MS);
        for _ in 0..CHANGES_AGED_DROPS_MAX {
            if self.changes.front().is_none_or(|c| c.time_ms >= horizon_ms) {
                break;
            }
            self.drop_oldest_change();
        }
    }

    fn drop_oldest_change(&mut self) {
        let dropped = self.changes.pop_front().expect("non-empty");
        self.changes_dropped_through = dropped.index;
    }

    /// Restarts the feed at `index` (a restored shard): the records of the old log's indexes go,
    /// and a reader from before `index` is told to re-read the shard.
    pub(crate) fn rebase_changes(&mut self, index: u64) {
        self.changes.clear();
        self.changes_dropped_through = index;
    }

    pub(super) fn changes_after(&self, after_index: u64, limit: usize, last_index: u64) -> ChangesPage {
        if after_index < self.changes_dropped_through {
            let oldest_retained_index = self.changes.front().map_or(last_index, |c| c.index);
            return ChangesPage::Compacted { oldest_retained_index, last_index };
        }
        let start = partition_point(&self.changes, |c| c.index <= after_index);
        let from = |i: usize| (i..self.changes.len()).map(|i| &self.changes[i]);
        let mut changes: Vec<Change> = from(start).take(limit).cloned().collect();
        // Never split the records of one log index across pages.
        if let Some(last) = changes.last().map(|c| c.index) {
            changes.extend(from(start + changes.len()).take_while(|c| c.index == last).cloned());
        }
        ChangesPage::Records { changes, last_index }
    }
}
