//! The waiting room's admission controller: how far each high-traffic event's shard leader moves
//! the admission watermark on each tick.
//!
//! Three things bound an advance, and the smallest wins:
//!
//! - **What is left to sell.** Admitting more buyers than there are seats only moves the queue's
//!   disappointment into the sale. Buyers admitted within the admission window who have not held
//!   yet are counted as taking a seat each: `available - outstanding`.
//! - **Buyers mid-purchase.** Seats held or awaiting payment, plus the outstanding admissions, stay
//!   under [`HELD_MAX`]: the load the cluster takes from one sale is bounded whatever its size.
//! - **Cluster latency.** The rate (positions per second) grows additively while the leader's own
//!   `AdvanceQueue` proposals commit within [`LATENCY_TARGET`] and is cut multiplicatively when
//!   they do not (AIMD, as TCP does): a cluster busy with other sales slows admission down.
//!
//! The controller is a pure function of the replicated queue view, the measured latency and its
//! own rate, so it is tested without a cluster; `host.rs` runs it on the leader.

use std::time::Duration;

use raft_store::QueueView;

/// How often a shard leader considers advancing its waiting rooms.
pub(crate) const ADMISSION_TICK: Duration = Duration::from_millis(250);
/// Admission rate bounds, in queue positions per second.
const RATE_MIN_PER_S: f64 = 10.0;
const RATE_MAX_PER_S: f64 = 2_000.0;
/// The rate a waiting room starts at when the sale opens.
const RATE_START_PER_S: f64 = 100.0;
/// Added to the rate per tick while proposals are fast.
const RATE_INCREASE_PER_TICK: f64 = 25.0;
/// The rate is multiplied by this after a slow proposal.
const RATE_DECREASE: f64 = 0.7;
/// A proposal that commits slower than this means the cluster is loaded.
const LATENCY_TARGET: Duration = Duration::from_millis(100);
/// Buyers mid-purchase (seats held or awaiting payment, plus admitted buyers yet to hold) per
/// event at most.
pub(crate) const HELD_MAX: u64 = 5_000;

/// One event's controller state on the current leader.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Controller {
    rate_per_s: f64,
}

impl Default for Controller {
    fn default() -> Self {
        Controller { rate_per_s: RATE_START_PER_S }
    }
}

impl Controller {
    /// The watermark to propose now, or `None` to leave the queue as it is. `now_ms` is the
    /// leader's clock.
    pub(crate) fn next(&self, view: &QueueView, now_ms: i64) -> Option<u64> {
        if !view.high_traffic || view.sold_out || now_ms < view.on_sale_at_ms || now_ms >= view.starts_at_ms {
            return None;
        }
        let q = &view.queue;
        if q.early_bound.is_none() {
            // The sale has opened: an advance, even an empty one, closes the early group so every
            // api instance can place the early arrivals.
            return Some(q.watermark);
        }
        let waiting = q.next_seq.saturating_sub(q.watermark);
        let outstanding = q.admitted_recently.saturating_sub(q.redeemed_recently);
        let for_sale = u64::from(view.available).saturating_sub(outstanding);
        let mid_purchase = u64::from(view.held) + outstanding;
        let under_cap = HELD_MAX.saturating_sub(mid_purchase);
        let by_rate = (self.rate_per_s * ADMISSION_TICK.as_secs_f64()).ceil() as u64;
        let step = waiting.min(for_sale).min(under_cap).min(by_rate.max(1));
        (step > 0).then(|| q.watermark + step)
    }

    /// Feeds back how long the last advance took to commit.
    pub(crate) fn observe(&mut self, latency: Duration) {
        self.rate_per_s = if latency > LATENCY_TARGET {
            (self.rate_per_s * RATE_DECREASE).max(RATE_MIN_PER_S)
        } else {
            (self.rate_per_s + RATE_INCREASE_PER_TICK).min(RATE_MAX_PER_S)
        };
    }

    #[cfg(test)]
    fn rate_per_s(&self) -> f64 {
        self.rate_per_s
    }
}

#[cfg(test)]
mod tests {
    use raft_store::{EventId, QueueCounters};

    use super::*;

    const OPEN: i64 = 1_000_000;

    fn view(next_seq: u64, watermark: u64, available: u32) -> QueueView {
        QueueView {
            event_id: EventId::from_u64(7),
            high_traffic: true,
            on_sale_at_ms: OPEN,
            starts_at_ms: OPEN * 10,
            queue: QueueCounters {
                next_seq,
                early_bound: Some(0),
                watermark,
                admitted_recently: 0,
                redeemed_recently: 0,
            },
            available,
            held: 0,
            sold_out: false,
        }
    }

    #[test]
    fn nothing_is_admitted_before_the_opening_after_the_start_or_after_the_sell_out() {
        let c = Controller::default();
        assert_eq!(c.next(&view(100, 0, 500), OPEN - 1), None);
        assert_eq!(c.next(&view(100, 0, 500), OPEN * 10), None);
        let sold_out = QueueView { sold_out: true, available: 0, ..view(100, 0, 0) };
        assert_eq!(c.next(&sold_out, OPEN), None);
        let plain = QueueView { high_traffic: false, ..view(100, 0, 500) };
        assert_eq!(c.next(&plain, OPEN), None);
    }

    #[test]
    fn the_first_tick_after_the_opening_closes_the_early_group() {
        let c = Controller::default();
        let mut v = view(100, 0, 500);
        v.queue.early_bound = None;
        assert_eq!(c.next(&v, OPEN), Some(0));
    }

    #[test]
    fn admission_follows_the_rate_and_never_passes_the_queue() {
        let c = Controller::default();
        let per_tick = (RATE_START_PER_S * ADMISSION_TICK.as_secs_f64()).ceil() as u64;
        assert_eq!(c.next(&view(1_000, 0, 500), OPEN), Some(per_tick));
        assert_eq!(c.next(&view(10, 0, 500), OPEN), Some(10), "only who is queued");
        assert_eq!(c.next(&view(10, 10, 500), OPEN), None, "nobody waits");
    }

    #[test]
    fn admission_is_tied_to_what_is_left_to_sell() {
        let c = Controller::default();
        let mut v = view(1_000, 100, 20);
        v.queue.admitted_recently = 100;
        v.queue.redeemed_recently = 95;
        // 20 seats left, 5 admitted buyers yet to hold: 15 more.
        assert_eq!(c.next(&v, OPEN), Some(115));
        v.queue.redeemed_recently = 80;
        assert_eq!(c.next(&v, OPEN), None, "the admitted buyers can take every seat left");
    }

    #[test]
    fn buyers_mid_purchase_are_capped() {
        let c = Controller::default();
        let mut v = view(100_000, 0, 50_000);
        v.held = (HELD_MAX - 3) as u32;
        assert_eq!(c.next(&v, OPEN), Some(3));
        v.held = HELD_MAX as u32;
        assert_eq!(c.next(&v, OPEN), None);
    }

    #[test]
    fn the_rate_grows_while_fast_and_is_cut_when_slow_within_bounds() {
        let mut c = Controller::default();
        c.observe(Duration::from_millis(5));
        assert_eq!(c.rate_per_s(), RATE_START_PER_S + RATE_INCREASE_PER_TICK);
        c.observe(Duration::from_millis(500));
        assert_eq!(c.rate_per_s(), (RATE_START_PER_S + RATE_INCREASE_PER_TICK) * RATE_DECREASE);
        for _ in 0..100 {
            c.observe(Duration::from_secs(1));
        }
        assert_eq!(c.rate_per_s(), RATE_MIN_PER_S);
        for _ in 0..1_000 {
            c.observe(Duration::ZERO);
        }
        assert_eq!(c.rate_per_s(), RATE_MAX_PER_S);
        let v = view(1_000_000, 0, 1_000_000);
        let per_tick = (RATE_MAX_PER_S * ADMISSION_TICK.as_secs_f64()).ceil() as u64;
        assert_eq!(c.next(&v, OPEN), Some(per_tick.min(HELD_MAX)));
    }
}
