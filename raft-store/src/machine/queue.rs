//! The waiting room's replicated state for one high-traffic event.
//!
//! - Sequence numbers are given to joins, many per command (`JoinQueue`, see
//!   `shard/places.rs`, which keeps each user's one place). Logs written before that lease them
//!   to api instances in blocks (`LeaseQueueBlock`), which still apply.
//! - Sequences leased before the sale opens are "early": their admission order is a keyed
//!   shuffle among themselves (computed by the api), so joining early gives no edge over joining
//!   on time. The first lease at or after the opening fixes the boundary.
//! - The admission watermark only moves forward; its history lets an admission's time (and with it
//!   an access pass's expiry) be derived by any api instance.
//! - A pass is single-use: its redemption (a successful hold) is recorded here.
//! - The admission controller paces on what was admitted lately and not yet redeemed: counted over
//!   a short window ([`ADMISSION_WINDOW_MS`]), so buyers who walk away stop holding admission back
//!   once the window has passed, while their passes stay valid for the whole pass lifetime.

use imbl::{OrdMap, OrdSet, Vector};
use serde::{Deserialize, Serialize};

use super::partition_point;
use crate::command::{AccessPass, QueueBlock, QueueCounters};
use crate::limits::{ADMISSION_WINDOW_MS, PASS_TTL_MS, QUEUE_ADVANCES_RETAINED_MAX, QUEUE_BLOCK_MAX};

/// Persistent collections, as in the rest of a shard's state: a snapshot's copy is O(1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct QueueState {
    /// The next sequence number to lease.
    next_seq: u64,
    /// Sequences below this were leased before the sale opened.
    early_bound: Option<u64>,
    /// Queue positions below this are admitted.
    watermark: u64,
    /// `(time, watermark)` of each advance, oldest first, bounded.
    #[serde(deserialize_with = "crate::cautious::vector")]
    advances: Vector<(i64, u64)>,
    /// Redeemed passes by their expiry: forgotten once expired, since apply refuses them then.
    #[serde(deserialize_with = "crate::cautious::ord_map")]
    redeemed: OrdMap<[u8; 16], i64>,
    #[serde(deserialize_with = "crate::cautious::ord_set")]
    redeemed_by_expiry: OrdSet<(i64, [u8; 16])>,
    /// Redemptions counted by the admission time of their pass, within the admission window.
    #[serde(deserialize_with = "crate::cautious::ord_map")]
    redemptions: OrdMap<i64, u64>,
    /// Leased early sequences no api instance handed out; spread over the early positions by the
    /// shuffle, so admission counts them by proportion.
    early_unused: u64,
    /// Leased later sequences (= positions) no api instance handed out, `start -> end`; forgotten
    /// once admission has passed them by more than the window.
    #[serde(deserialize_with = "crate::cautious::ord_map")]
    unused: OrdMap<u64, u64>,
}

/// A lease asked for a block size outside `1..=QUEUE_BLOCK_MAX`. Its text is the detail of the
/// refusal the client sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a queue block has 1 to {QUEUE_BLOCK_MAX} numbers")]
pub(crate) struct BlockSizeOutOfRange;

impl QueueState {
    pub(crate) fn lease(&mut self, size: u64, on_sale: bool) -> Result<QueueBlock, BlockSizeOutOfRange> {
        if size == 0 || size > QUEUE_BLOCK_MAX {
            return Err(BlockSizeOutOfRange);
        }
        if on_sale {
            self.open();
        }
        let start = self.next_seq;
        self.next_seq += size;
        Ok(QueueBlock { start, end: self.next_seq, early: self.early_bound.is_none() })
    }

    /// The next sequence number, for one join (see `shard/places.rs`): a block of one, early
    /// or not as a leased block would be.
    pub(crate) fn take(&mut self, on_sale: bool) -> u64 {
        if on_sale {
            self.open();
        }
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// The sale has opened: sequences leased from now on keep their order.
    pub(crate) fn open(&mut self) {
        if self.early_bound.is_none() {
            self.early_bound = Some(self.next_seq);
        }
    }

    /// Records a leased range that was never handed out. Ranges wholly early or wholly late only
    /// (a block is one or the other); anything else is ignored.
    pub(crate) fn forgo(&mut self, start: u64, end: u64) {
        if start >= end || end > self.next_seq {
            return;
        }
        match self.early_bound {
            None => self.early_unused += end - start,
            Some(bound) if end <= bound => self.early_unused += end - start,
            Some(bound) if start >= bound => {
                self.unused.insert(start, end);
            }
            Some(_) => {}
        }
    }

    /// Admits positions below `to` (never past what was leased; never backwards).
    pub(crate) fn advance(&mut self, to: u64, now_ms: i64) {
        let to = to.min(self.next_seq);
        if to <= self.watermark {
            return;
        }
        self.watermark = to;
        self.advances.push_back((now_ms, to));
        while self.advances.len() > QUEUE_ADVANCES_RETAINED_MAX {
            self.advances.pop_front();
        }
        let counted_from = self.watermark_at(now_ms - ADMISSION_WINDOW_MS);
        while let Some(&(start, end)) = self.unused.get_min() {
            if end > counted_from {
                break;
            }
            self.unused.remove(&start);
        }
    }

    pub(crate) fn is_redeemed(&self, pass: &AccessPass) -> bool {
        self.redeemed.contains_key(&pass.pass_id)
    }

    pub(crate) fn redeem(&mut self, pass: &AccessPass, now_ms: i64) {
        if self.redeemed.insert(pass.pass_id, pass.expires_at_ms).is_none() {
            self.redeemed_by_expiry.insert((pass.expires_at_ms, pass.pass_id));
        }
        *self.redemptions.entry(pass.expires_at_ms - PASS_TTL_MS).or_insert(0) += 1;
        self.forget_old(now_ms);
    }

    fn forget_old(&mut self, now_ms: i64) {
        while let Some(&(t, _)) = self.redemptions.get_min() {
            if t > now_ms - ADMISSION_WINDOW_MS {
                break;
            }
            self.redemptions.remove(&t);
        }
        while let Some(&(expires, pass_id)) = self.redeemed_by_expiry.get_min() {
            if expires > now_ms {
                break;
            }
            self.redeemed_by_expiry.remove(&(expires, pass_id));
            self.redeemed.remove(&pass_id);
        }
    }

    /// When position `position` was admitted: `None` if not yet; the oldest retained time if
    /// before the retained history (long expired anyway).
    pub(crate) fn admitted_at(&self, position: u64) -> Option<i64> {
        if position >= self.watermark {
            return None;
        }
        // Watermarks only grow, so the advances are sorted by them.
        let i = partition_point(&self.advances, |(_, w)| *w <= position);
        Some(self.advances.get(i).map_or(0, |(t, _)| *t))
    }

    /// The watermark as it was at `at_ms`.
    fn watermark_at(&self, at_ms: i64) -> u64 {
        self.advances.iter().rev().find(|(t, _)| *t <= at_ms).map_or(0, |(_, w)| *w)
    }

    /// Buyers admitted within the admission window before `now_ms`: the positions admitted, less
    /// those nobody held.
    fn admitted_since(&self, now_ms: i64) -> u64 {
        let from = self.watermark_at(now_ms - ADMISSION_WINDOW_MS).min(self.watermark);
        let to = self.watermark;
        let bound = self.early_bound.unwrap_or(self.next_seq);
        let early_admitted = to.min(bound).saturating_sub(from);
        let early_unused = if bound == 0 {
            0
        } else {
            (u128::from(early_admitted) * u128::from(self.early_unused.min(bound)) / u128::from(bound)) as u64
        };
        let mut late_unused = 0;
        for (start, end) in self.unused.range(..to).rev() {
            if *end <= from {
                break;
            }
            late_unused += (*end).min(to) - (*start).max(from);
        }
        (to - from).saturating_sub(early_unused + late_unused)
    }

    pub(crate) fn view(&self, now_ms: i64) -> QueueCounters {
        let since = now_ms - ADMISSION_WINDOW_MS;
        let redeemed_recently = self.redemptions.range(since + 1..).map(|(_, n)| n).sum();
        QueueCounters {
            next_seq: self.next_seq,
            early_bound: self.early_bound,
            watermark: self.watermark,
            admitted_recently: self.admitted_since(now_ms),
            redeemed_recently,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_before_the_sale_are_early_and_the_first_after_fixes_the_boundary() {
        let mut q = QueueState::default();
        assert_eq!(q.lease(100, false), Ok(QueueBlock { start: 0, end: 100, early: true }));
        assert_eq!(q.lease(50, false), Ok(QueueBlock { start: 100, end: 150, early: true }));
        assert_eq!(q.lease(10, true), Ok(QueueBlock { start: 150, end: 160, early: false }));
        assert_eq!(q.view(0).early_bound, Some(150));
        assert!(q.lease(0, true).is_err());
        assert!(q.lease(QUEUE_BLOCK_MAX + 1, true).is_err());
    }

    #[test]
    fn the_watermark_only_moves_forward_and_never_past_what_was_leased() {
        let mut q = QueueState::default();
        q.lease(100, true).unwrap();
        q.advance(40, 1_000);
        q.advance(30, 2_000);
        assert_eq!(q.view(2_000).watermark, 40);
        q.advance(1_000, 3_000);
        assert_eq!(q.view(3_000).watermark, 100);
        assert_eq!(q.admitted_at(10), Some(1_000));
        assert_eq!(q.admitted_at(50), Some(3_000));
        assert_eq!(q.admitted_at(100), None);
    }

    #[test]
    fn recent_admissions_and_their_redemptions_are_counted_within_the_window() {
        let mut q = QueueState::default();
        q.lease(1_000, true).unwrap();
        let (first, second) = (1_000, 1_000 + ADMISSION_WINDOW_MS + 10);
        q.advance(100, first);
        q.advance(300, second);
        let pass = |b: u8, admitted_at: i64| AccessPass { pass_id: [b; 16], expires_at_ms: admitted_at + PASS_TTL_MS };
        // Admitted before the window: still a valid pass, but no longer counted.
        q.redeem(&pass(1, first), second + 5);
        q.redeem(&pass(2, second), second + 20);
        q.redeem(&pass(3, second), second + 25);
        let v = q.view(second + 30);
        assert_eq!((v.admitted_recently, v.redeemed_recently), (200, 2));
        assert!(q.is_redeemed(&pass(1, first)) && q.is_redeemed(&pass(2, second)));
        let v = q.view(second + ADMISSION_WINDOW_MS);
        assert_eq!((v.admitted_recently, v.redeemed_recently), (0, 0));
    }

    #[test]
    fn positions_nobody_was_handed_are_not_counted_as_admitted_buyers() {
        let mut q = QueueState::default();
        q.lease(100, false).unwrap();
        q.lease(100, false).unwrap();
        q.forgo(150, 200); // an early block's tail, dropped at the opening
        q.lease(100, true).unwrap(); // 200..300, late
        q.lease(100, true).unwrap(); // 300..400
        q.forgo(250, 300);
        q.forgo(390, 500); // beyond what was leased: ignored
        q.forgo(199, 201); // straddles the opening: ignored
        assert_eq!(q.early_unused, 50);
        // Half the early positions admitted: a quarter of the 50 early holes on average.
        q.advance(100, 1_000);
        assert_eq!(q.view(1_000).admitted_recently, 100 - 25);
        q.advance(280, 2_000);
        assert_eq!(q.view(2_000).admitted_recently, 280 - 50 - 30);
        let later = 2_000 + ADMISSION_WINDOW_MS + 1;
        q.advance(400, later);
        assert_eq!(q.view(later).admitted_recently, 120 - 20);
        // Once the window has passed them, the holes are forgotten.
        q.lease(100, true).unwrap();
        q.advance(450, later + ADMISSION_WINDOW_MS + 1);
        assert!(q.unused.is_empty());
    }

    #[test]
    fn redeemed_passes_are_forgotten_once_expired() {
        let mut q = QueueState::default();
        let pass = |b: u8, exp: i64| AccessPass { pass_id: [b; 16], expires_at_ms: exp };
        q.redeem(&pass(1, 100), 10);
        q.redeem(&pass(2, 300), 20);
        q.redeem(&pass(3, 500), 200);
        assert!(!q.is_redeemed(&pass(1, 100)), "expired at 100, so apply refuses it anyway");
        assert!(q.is_redeemed(&pass(2, 300)) && q.is_redeemed(&pass(3, 500)));
        assert_eq!(q.redeemed.len(), q.redeemed_by_expiry.len());
    }
}
