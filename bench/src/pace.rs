//! Open-loop load: requests start on a fixed schedule whether or not earlier ones finished, and
//! each latency is measured from when its request was due, not from when it was sent. A closed
//! loop (N clients, each waiting for its answer) measures a saturated server's queue instead, and
//! hides stalls: a slow answer delays the requests that would have seen the stall.
//!
//! The pacer wakes up to [`EARLY_MAX`] before a request is due: tokio's timer fires on whole
//! milliseconds, at or after its deadline, so waking at the due time itself would charge every
//! request up to a millisecond of the pacer's own lateness. A request started early is measured
//! from when it started; one started late, from when it was due. Either way a latency is never
//! counted from later than the request was due, nor from before it was sent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::report::Latencies;

/// What an open-loop run measured.
#[derive(Default)]
pub struct Paced {
    pub latencies: Latencies,
    /// Requests that failed.
    pub errors: u64,
    /// Requests not started because `in_flight_max` were still waiting: the server fell behind
    /// the offered rate, and the figures would otherwise describe a queue without bound.
    pub skipped: u64,
    /// When the first and the last skipped request were due, from the start: whether the server
    /// fell behind once or all along.
    pub skipped_span: Option<(Duration, Duration)>,
}

impl Paced {
    /// Requests due in the run: answered, failed or skipped.
    pub fn scheduled(&self) -> u64 {
        self.latencies.len() as u64 + self.errors + self.skipped
    }

    /// Requests due per second over a run of `duration`.
    pub fn offered_per_s(&self, duration: Duration) -> f64 {
        self.scheduled() as f64 / duration.as_secs_f64().max(f64::EPSILON)
    }
}

/// "N" or "N (due from 1.20 s to 1.45 s)": skipped requests and when, for reports.
pub fn skipped_line(skipped: u64, span: Option<(Duration, Duration)>) -> String {
    match span {
        Some((first, last)) if skipped > 0 => {
            format!("{skipped} (due from {:.2} s to {:.2} s)", first.as_secs_f64(), last.as_secs_f64())
        }
        _ => skipped.to_string(),
    }
}

/// Whichever of two spans starts first, to whichever ends last.
pub fn union_span(a: Option<(Duration, Duration)>, b: Option<(Duration, Duration)>) -> Option<(Duration, Duration)> {
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
        (one, None) | (None, one) => one,
    }
}

/// The lowest rate [`open_loop_varying`] schedules at, so that a rate of zero cannot stall it.
const RATE_MIN: f64 = 1.0;
/// How long before its due time a request may start (see the module's documentation).
pub const EARLY_MAX: Duration = Duration::from_millis(1);

/// Starts `request(n, from)` at `rate` per second for `duration`, at most `in_flight_max` at once;
/// `from` is when the request was due or, if the pacer started it early, when it started: what
/// latencies of its own count from. `request` answers whether it succeeded.
pub async fn open_loop<F, Fut>(rate: f64, duration: Duration, in_flight_max: usize, request: F) -> Paced
where
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    if rate <= 0.0 {
        return Paced::default();
    }
    open_loop_varying(|| rate, duration, in_flight_max, request).await
}

/// As [`open_loop`], with the rate asked anew before each request: the gap after a request is
/// one over the rate `rate()` gives when it is due (at least [`RATE_MIN`]). A workload whose
/// cost changes as it goes (a sale: successes first, then mostly refusals) can follow what the
/// server carried at each stage.
pub async fn open_loop_varying<R, F, Fut>(mut rate: R, duration: Duration, in_flight_max: usize, request: F) -> Paced
where
    R: FnMut() -> f64,
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let mut paced = Paced::default();
    if duration.is_zero() {
        return paced;
    }
    let permits = Arc::new(Semaphore::new(in_flight_max.max(1)));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    // Seconds from the start, summed in f64 so that many short gaps do not drift.
    let mut offset_s = 0.0_f64;
    let mut n: u64 = 0;
    loop {
        let due = start + Duration::from_secs_f64(offset_s);
        if due >= start + duration {
            break;
        }
        tokio::time::sleep_until(due.checked_sub(EARLY_MAX).unwrap_or(due)).await;
        let from = Instant::now().min(due);
        n += 1;
        offset_s += 1.0 / rate().max(RATE_MIN);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            paced.skipped += 1;
            let at = due - start;
            paced.skipped_span = Some(paced.skipped_span.map_or((at, at), |(first, _)| (first, at)));
            continue;
        };
        let fut = request(n, from);
        let done = done_tx.clone();
        tokio::spawn(async move {
            let ok = fut.await;
            drop(permit);
            let _ = done.send((ok, from.elapsed()));
        });
    }
    drop(done_tx);
    while let Some((ok, latency)) = done_rx.recv().await {
        if ok {
            paced.latencies.record(latency);
        } else {
            paced.errors += 1;
        }
    }
    paced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_every_scheduled_request_and_counts_failures() {
        let paced = open_loop(200.0, Duration::from_millis(250), 1_000, |n, _| async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            n % 10 != 0
        })
        .await;
        assert_eq!(paced.latencies.len() as u64 + paced.errors, 50);
        assert_eq!(paced.errors, 5);
        assert_eq!(paced.skipped, 0);
        assert_eq!(paced.scheduled(), 50);
    }

    #[tokio::test]
    async fn follows_a_rate_that_changes_as_the_run_goes() {
        // 100/s for the first 10 requests (0.1 s), then 1,000/s: 101 more are due before 0.2005 s.
        let mut asked = 0;
        let paced = open_loop_varying(
            || {
                asked += 1;
                if asked <= 10 {
                    100.0
                } else {
                    1_000.0
                }
            },
            Duration::from_micros(200_500),
            1_000,
            |_, _| async { true },
        )
        .await;
        assert_eq!(paced.scheduled(), 111);
        assert_eq!(paced.latencies.len(), 111);
        assert!((paced.offered_per_s(Duration::from_micros(200_500)) - 111.0 / 0.2005).abs() < 1e-6);
    }

    #[tokio::test]
    async fn a_rate_of_zero_still_moves_on() {
        let paced = open_loop_varying(|| 0.0, Duration::from_millis(1_050), 10, |_, _| async { true }).await;
        assert_eq!(paced.scheduled(), 2, "one at the start, one a second later");
    }

    #[tokio::test]
    async fn skips_what_it_cannot_start_when_the_server_falls_behind() {
        let paced = open_loop(100.0, Duration::from_millis(200), 5, |_, _| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            true
        })
        .await;
        assert_eq!(paced.latencies.len(), 5);
        assert_eq!(paced.skipped, 15);
        assert_eq!(paced.skipped_span, Some((Duration::from_millis(50), Duration::from_millis(190))));
        assert!(paced.latencies.clone().quantile_ms(1.0) >= 1_000.0, "measured from when it was due");
    }

    #[tokio::test]
    async fn starts_no_request_more_than_early_max_before_it_is_due() {
        // 100/s: request n (from 1) is due (n - 1) * 10 ms after the start. Request 3 keeps the
        // pacer busy for 25 ms, so request 4 (due at 30 ms) starts at 45 ms or later.
        const STALL: Duration = Duration::from_millis(25);
        let start = Instant::now();
        let early = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = early.clone();
        let paced = open_loop(100.0, Duration::from_millis(100), 100, move |n, from| {
            let due = start + Duration::from_millis((n - 1) * 10);
            seen.lock().unwrap().push((n, from, due, Instant::now()));
            if n == 3 {
                std::thread::sleep(STALL);
            }
            async { true }
        })
        .await;
        assert_eq!(paced.scheduled(), 10);
        for &(n, from, due, started) in early.lock().unwrap().iter() {
            assert!(from <= due + Duration::from_millis(1), "counted from no later than due");
            assert!(from + EARLY_MAX >= due, "started at most EARLY_MAX early");
            assert!(from <= started, "never counted from before it started");
            if n == 4 {
                assert!(started >= from + STALL / 2, "a late request is timed from when it was due");
            }
        }
    }

    #[test]
    fn skipped_requests_say_when_they_were_due() {
        let ms = Duration::from_millis;
        assert_eq!(skipped_line(0, None), "0");
        assert_eq!(skipped_line(7, Some((ms(1_200), ms(1_450)))), "7 (due from 1.20 s to 1.45 s)");
        assert_eq!(union_span(Some((ms(5), ms(9))), Some((ms(2), ms(7)))), Some((ms(2), ms(9))));
        assert_eq!(union_span(None, Some((ms(2), ms(7)))), Some((ms(2), ms(7))));
        assert_eq!(union_span(None, None), None);
    }
}
