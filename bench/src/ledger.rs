//! What the clients of the browse and mixed workloads were told about their holds, kept to check
//! I1 on the store's final state.

use std::collections::HashMap;
use std::time::Instant;

/// One acknowledged hold of one seat, for the I1 check.
#[derive(Clone, Debug)]
struct HoldRecord {
    event: usize,
    seat: String,
    /// When the store's "held" answer arrived: from then on the seat is certainly held.
    acknowledged: Instant,
    /// When its release was sent: until then the seat was certainly still held. `None` while
    /// it is kept.
    release_sent: Option<Instant>,
    end: HoldEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HoldEnd {
    Kept,
    Released,
    /// The release failed to answer: the seat may or may not be free.
    Unsure,
}

/// What the clients were told, kept to check I1 on the store's final state.
#[derive(Default)]
pub struct Ledger {
    holds: Vec<HoldRecord>,
    /// Holds that failed to answer, per event: each may or may not have taken its seat.
    unsure_holds: HashMap<usize, usize>,
}

/// I1 on the final state: per event, the seats acknowledged as held and not released are the
/// seats the store shows taken, and no seat was acknowledged to two holds at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct I1Check {
    /// Seats acknowledged as held and not released, over all events.
    pub acknowledged: usize,
    /// Seats the store shows taken, over all events.
    pub taken: usize,
    /// Events whose taken seats differ from the acknowledged ones (beyond the answers that were
    /// lost, which may have gone either way).
    pub events_mismatched: usize,
    /// Pairs of holds of one seat acknowledged while the other was certainly still held.
    pub held_twice: usize,
}

impl I1Check {
    pub fn ok(&self) -> bool {
        self.events_mismatched == 0 && self.held_twice == 0
    }
}

impl Ledger {
    /// Records a hold acknowledged now; returns its index, for [`Ledger::released`].
    pub(crate) fn held(&mut self, event: usize, seat: &str, acknowledged: Instant) -> usize {
        self.holds.push(HoldRecord {
            event,
            seat: seat.to_owned(),
            acknowledged,
            release_sent: None,
            end: HoldEnd::Kept,
        });
        self.holds.len() - 1
    }

    pub(crate) fn released(&mut self, hold: usize, sent: Instant, ok: bool) {
        if let Some(record) = self.holds.get_mut(hold) {
            record.release_sent = Some(sent);
            record.end = if ok { HoldEnd::Released } else { HoldEnd::Unsure };
        }
    }

    pub(crate) fn hold_unanswered(&mut self, event: usize) {
        *self.unsure_holds.entry(event).or_default() += 1;
    }

    /// Compares the ledger with `taken[e]`, the seats the store shows taken at event `e`.
    pub fn check(&self, taken: &[usize]) -> I1Check {
        let mut certain = vec![0usize; taken.len()];
        let mut unsure = vec![0usize; taken.len()];
        for (event, n) in &self.unsure_holds {
            if let Some(u) = unsure.get_mut(*event) {
                *u += n;
            }
        }
        let mut by_seat: HashMap<(usize, &str), Vec<HeldSpan>> = HashMap::new();
        for h in &self.holds {
            match h.end {
                HoldEnd::Kept => certain.get_mut(h.event).into_iter().for_each(|c| *c += 1),
                HoldEnd::Unsure => unsure.get_mut(h.event).into_iter().for_each(|u| *u += 1),
                HoldEnd::Released => {}
            }
            by_seat.entry((h.event, h.seat.as_str())).or_default().push((h.acknowledged, h.release_sent));
        }
        let events_mismatched =
            (0..taken.len()).filter(|&e| taken[e] < certain[e] || taken[e] > certain[e] + unsure[e]).count();
        let held_twice = by_seat.values_mut().map(|intervals| overlaps(intervals)).sum();
        I1Check { acknowledged: certain.iter().sum(), taken: taken.iter().sum(), events_mismatched, held_twice }
    }
}

/// When a seat was certainly held by one hold: from its acknowledgement until its release was
/// sent (`None`: never released).
type HeldSpan = (Instant, Option<Instant>);

/// Spans that begin before an earlier one ended.
fn overlaps(intervals: &mut [HeldSpan]) -> usize {
    intervals.sort_by_key(|i| i.0);
    let mut end_max: Option<Option<Instant>> = None;
    let mut n = 0;
    for &(from, until) in intervals.iter() {
        if let Some(end) = end_max {
            if end.is_none_or(|end| from < end) {
                n += 1;
            }
        }
        end_max = Some(match (end_max, until) {
            (None, u) => u,
            (Some(None), _) | (Some(_), None) => None,
            (Some(Some(a)), Some(b)) => Some(a.max(b)),
        });
    }
    n
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn i1_holds_when_kept_holds_are_what_the_store_shows() {
        let t = Instant::now();
        let mut ledger = Ledger::default();
        let a = ledger.held(0, "FLOOR-A-1", at(t, 10));
        ledger.released(a, at(t, 20), true);
        // Held again after the release was sent: fine.
        ledger.held(0, "FLOOR-A-1", at(t, 25));
        ledger.held(1, "FLOOR-A-1", at(t, 5));
        let check = ledger.check(&[1, 1, 0]);
        assert_eq!(check, I1Check { acknowledged: 2, taken: 2, events_mismatched: 0, held_twice: 0 });
        assert!(check.ok());
        // The store lost a hold at event 1, and shows a seat nobody was given at event 2.
        let check = ledger.check(&[1, 0, 1]);
        assert_eq!(check.events_mismatched, 2);
        assert!(!check.ok());
    }

    #[test]
    fn a_seat_acknowledged_to_two_holds_at_once_breaks_i1_even_if_one_is_released_later() {
        let t = Instant::now();
        let mut ledger = Ledger::default();
        let a = ledger.held(0, "FLOOR-B-2", at(t, 10));
        ledger.held(0, "FLOOR-B-2", at(t, 15));
        ledger.released(a, at(t, 20), true);
        let check = ledger.check(&[1]);
        assert_eq!(check.events_mismatched, 0);
        assert_eq!(check.held_twice, 1);
        assert!(!check.ok());
    }

    #[test]
    fn lost_answers_allow_either_outcome() {
        let t = Instant::now();
        let mut ledger = Ledger::default();
        ledger.hold_unanswered(0);
        let a = ledger.held(0, "FLOOR-C-3", at(t, 10));
        ledger.released(a, at(t, 20), false);
        for taken in 0..=2 {
            assert!(ledger.check(&[taken]).ok(), "{taken} taken");
        }
        assert!(!ledger.check(&[3]).ok());
    }
}
