//! The waiting room's replicated state for one high-traffic event.
//!
//! - Sequence numbers are leased to api instances in blocks: joining the queue costs no Raft
//!   write; one lease serves a block of arrivals.
//! - Sequences leased before the sale opens are "early": their admission order is a keyed
//!   shuffle among themselves (computed by the api), so joining early gives no edge over joining
//!   on time. The first lease at or after the opening fixes the boundary.
//! - The admission watermark only moves forward; its history lets an admission's time (and with it
//!   an access pass's expiry) be derived by any api instance.
//! - A pass is single-use: its redemption (a successful hold) is recorded here.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::AccessPass;
use crate::limits::{PASS_TTL_MS, QUEUE_ADVANCES_RETAINED_MAX, QUEUE_BLOCK_MAX};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct QueueState {
    /// The next sequence number to lease.
    next_seq: u64,
    /// Sequences below this were leased before the sale opened.
    early_bound: Option<u64>,
    /// Queue positions below this are admitted.
    watermark: u64,
    /// `(time, watermark)` of each advance, oldest first, bounded.
    advances: VecDeque<(i64, u64)>,
    /// Redeemed passes by their expiry: forgotten once expired, since apply refuses them then.
    redeemed: BTreeMap<[u8; 16], i64>,
    redeemed_by_expiry: BTreeSet<(i64, [u8; 16])>,
    /// When passes were redeemed, oldest first, within the last pass lifetime.
    redemptions: VecDeque<i64>,
}

/// A leased block of queue sequence numbers: `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueBlock {
    pub start: u64,
    pub end: u64,
    /// Leased before the sale opened: its positions are shuffled among the early ones.
    pub early: bool,
}

impl QueueState {
    pub(crate) fn lease(&mut self, size: u64, on_sale: bool) -> Result<QueueBlock, String> {
        if size == 0 || size > QUEUE_BLOCK_MAX {
            return Err(format!("a queue block has 1 to {QUEUE_BLOCK_MAX} numbers"));
        }
        if on_sale && self.early_bound.is_none() {
            self.early_bound = Some(self.next_seq);
        }
        let start = self.next_seq;
        self.next_seq += size;
        Ok(QueueBlock { start, end: self.next_seq, early: self.early_bound.is_none() })
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
    }

    pub(crate) fn is_redeemed(&self, pass: &AccessPass) -> bool {
        self.redeemed.contains_key(&pass.pass_id)
    }

    pub(crate) fn redeem(&mut self, pass: &AccessPass, now_ms: i64) {
        if self.redeemed.insert(pass.pass_id, pass.expires_at_ms).is_none() {
            self.redeemed_by_expiry.insert((pass.expires_at_ms, pass.pass_id));
        }
        self.redemptions.push_back(now_ms);
        self.forget_old(now_ms);
    }

    fn forget_old(&mut self, now_ms: i64) {
        while self.redemptions.front().is_some_and(|t| *t <= now_ms - PASS_TTL_MS) {
            self.redemptions.pop_front();
        }
        while let Some(&(expires, pass_id)) = self.redeemed_by_expiry.first() {
            if expires > now_ms {
                break;
            }
            self.redeemed_by_expiry.pop_first();
            self.redeemed.remove(&pass_id);
        }
    }

    /// When position `position` was admitted: `None` if not yet; the oldest retained time if
    /// before the retained history (long expired anyway).
    pub(crate) fn admitted_at(&self, position: u64) -> Option<i64> {
        if position >= self.watermark {
            return None;
        }
        let i = self.advances.partition_point(|(_, w)| *w <= position);
        Some(self.advances.get(i).map_or(0, |(t, _)| *t))
    }

    /// Positions admitted within the last pass lifetime before `now_ms`.
    fn admitted_since(&self, now_ms: i64) -> u64 {
        let before = self.advances.iter().rev().find(|(t, _)| *t <= now_ms - PASS_TTL_MS).map_or(0, |(_, w)| *w);
        self.watermark - before.min(self.watermark)
    }

    pub(crate) fn view(&self, now_ms: i64) -> QueueCounters {
        let redeemed_recently = self.redemptions.iter().filter(|t| **t > now_ms - PASS_TTL_MS).count() as u64;
        QueueCounters {
            next_seq: self.next_seq,
            early_bound: self.early_bound,
            watermark: self.watermark,
            admitted_recently: self.admitted_since(now_ms),
            redeemed_recently,
        }
    }
}

/// The queue part of [`crate::QueueView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounters {
    pub next_seq: u64,
    pub early_bound: Option<u64>,
    pub watermark: u64,
    /// Positions admitted within the last pass lifetime.
    pub admitted_recently: u64,
    /// Passes redeemed within the last pass lifetime.
    pub redeemed_recently: u64,
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
    fn recent_admissions_and_redemptions_are_counted_within_the_pass_lifetime() {
        let mut q = QueueState::default();
        q.lease(1_000, true).unwrap();
        q.advance(100, 0);
        q.advance(300, PASS_TTL_MS + 10);
        let early = AccessPass { pass_id: [1; 16], expires_at_ms: PASS_TTL_MS + 25 };
        let late = AccessPass { pass_id: [2; 16], expires_at_ms: 2 * PASS_TTL_MS };
        q.redeem(&early, 5);
        q.redeem(&late, PASS_TTL_MS + 20);
        let v = q.view(PASS_TTL_MS + 30);
        assert_eq!((v.admitted_recently, v.redeemed_recently), (200, 1));
        assert!(q.is_redeemed(&early) && q.is_redeemed(&late));
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
