//! The node's wall clock. The leader reads it to stamp commands; apply never does.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch. Under madsim the simulation intercepts the system clock.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// The largest difference assumed between two nodes' clocks unless configured: NTP keeps
/// servers within a few milliseconds of each other; this leaves a wide margin.
pub const MAX_OFFSET_MS_DEFAULT: i64 = 500;

/// One node's clock: the system clock plus a skew, which is always zero in production and which
/// the simulation sets to model nodes whose clocks disagree or jump; and the largest offset the
/// cluster assumes between any two nodes' clocks.
#[derive(Clone, Debug)]
pub struct Clock {
    skew_ms: Arc<AtomicI64>,
    max_offset_ms: i64,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new(MAX_OFFSET_MS_DEFAULT)
    }
}

impl Clock {
    pub fn new(max_offset_ms: i64) -> Clock {
        Clock { skew_ms: Arc::default(), max_offset_ms: max_offset_ms.max(0) }
    }

    pub fn now_ms(&self) -> i64 {
        now_ms().saturating_add(self.skew_ms.load(Ordering::Relaxed))
    }

    /// A time every node's clock has passed, as long as no two clocks are further apart than the
    /// maximum offset. Reads judge expiry at this time (or at the applied state's own time, if
    /// later): a hold a read shows lapsed is then lapsed for every leader that may stamp the next
    /// command, so no checkout can succeed on a seat a read has shown free.
    pub fn passed_ms(&self) -> i64 {
        self.now_ms().saturating_sub(self.max_offset_ms)
    }

    pub fn max_offset_ms(&self) -> i64 {
        self.max_offset_ms
    }

    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.skew_ms.store(skew_ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clock_has_passed_this_one_less_the_offset() {
        let clock = Clock::new(500);
        clock.set_skew_ms(-2_000);
        let (now, passed) = (clock.now_ms(), clock.passed_ms());
        assert!((now - passed - 500).abs() < 100, "now {now}, passed {passed}");
        assert!(Clock::new(-5).passed_ms() <= Clock::new(0).now_ms(), "a negative offset counts as none");
    }
}
