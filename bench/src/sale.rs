//! The flash-sale workload, independent of the store that sells the seats: one hot event, many
//! buyers holding 1–4 random seats all-or-nothing, some of them checking out. Boxoffice and the
//! peer baselines (PostgreSQL, etcd) implement [`SaleStore`]; the buyers, the clock and the
//! figures are the same code for all of them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::error::TargetError;
use crate::pace::{open_loop_varying, Paced};
use crate::report::Latencies;

#[derive(Clone, Debug)]
pub struct FlashSaleConfig {
    /// Seats of the hot event: `rows` rows of 200 (the last row may be shorter).
    pub seats: u32,
    pub buyers: usize,
    pub duration: Duration,
    /// Fraction of successful holds that go on to checkout.
    pub checkout_ratio: f64,
}

impl Default for FlashSaleConfig {
    fn default() -> Self {
        FlashSaleConfig { seats: 20_000, buyers: 128, duration: Duration::from_secs(20), checkout_ratio: 0.5 }
    }
}

/// Seats per row of the hot event's one section.
pub const ROW_SEATS: u32 = 200;

/// Consecutive conflicts after which a buyer asks whether the event has sold out.
const CONFLICTS_BEFORE_CHECK: u32 = 16;

/// Seats one hold asks for, at most.
pub const HOLD_SEATS_MAX: usize = 4;

pub fn row_id(r: u32) -> String {
    format!("R{r}")
}

/// The seat ids of the hot event, as Boxoffice names them (`MAIN-R0-1` …); the baselines use
/// the same names.
pub fn seat_ids(seats: u32) -> Vec<String> {
    (0..seats).map(|i| format!("MAIN-{}-{}", row_id(i / ROW_SEATS), i % ROW_SEATS + 1)).collect()
}

/// What a store answered to one hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Every seat asked for is now held; the id names the hold for checkout.
    Held(String),
    /// At least one seat was taken: nothing was held.
    Conflict,
    /// The store failed to answer (timeout, connection, server error).
    Error,
}

/// A store that sells the hot event's seats. Each call is durable before it returns success,
/// with the store's own default durability.
pub trait SaleStore: Send + Sync + 'static {
    /// One buyer's session (a token, a connection's index, a hold counter).
    type Buyer: Send;

    /// For report titles.
    fn describe(&self) -> String;

    /// Creates the hot event with `seats` seats named by [`seat_ids`]; returns its id.
    fn setup(&self, seats: u32) -> impl Future<Output = Result<String, TargetError>> + Send;

    fn buyer(&self, n: usize) -> impl Future<Output = Result<Self::Buyer, TargetError>> + Send;

    /// Holds all of `seats` or none of them.
    fn hold(&self, buyer: &mut Self::Buyer, event: &str, seats: &[String]) -> impl Future<Output = HoldOutcome> + Send;

    /// Turns a hold (of `seats`) into an order; true if the order is durable.
    fn checkout(
        &self,
        buyer: &mut Self::Buyer,
        event: &str,
        hold_id: &str,
        seats: &[String],
    ) -> impl Future<Output = bool> + Send;

    /// Seats of the event that are held or sold, for the I1 check.
    fn taken(&self, event: &str) -> impl Future<Output = Result<usize, TargetError>> + Send;

    /// Removes what the sale wrote, once its final state has been read, so that the next run
    /// starts from the state this one did: a store left holding every earlier run's rows would
    /// be measured slower run after run. Boxoffice starts afresh for each run and keeps nothing.
    fn teardown(&self, _event: &str) -> impl Future<Output = Result<(), TargetError>> + Send {
        async { Ok(()) }
    }

    /// Whether no seat of the event (of `seats`) is left; false when unsure.
    fn sold_out(&self, event: &str, seats: u32) -> impl Future<Output = bool> + Send {
        async move { self.taken(event).await.is_ok_and(|t| t >= seats as usize) }
    }
}

#[derive(Default)]
struct BuyerResult {
    /// When this buyer's last hold succeeded, from the start of the sale.
    last_success: Duration,
    /// (time from the start, seats won) of every successful hold.
    successes: Vec<(Duration, usize)>,
    holds: u64,
    conflicts: u64,
    errors: u64,
    checkouts: u64,
    hold_latency: Latencies,
    checkout_latency: Latencies,
    /// Seat ids won, for the I1 check.
    won: Vec<String>,
    /// When each hold was answered (held or refused), from the start of the sale.
    answered: Vec<Duration>,
}

/// One sale's figures, whatever the store.
pub struct SaleFigures {
    pub store: String,
    pub seats: u32,
    pub buyers: usize,
    /// From the start until 90% of the seats were held (until the last successful hold when
    /// 90% was never reached: see `ninety_reached`).
    pub sale_s: f64,
    pub ninety_reached: bool,
    pub elapsed_s: f64,
    /// Successful holds per second until 90% of the seats were held.
    pub holds_per_s: f64,
    pub holds: u64,
    pub conflicts: u64,
    pub checkouts: u64,
    pub errors: u64,
    pub hold_latency: Latencies,
    pub checkout_latency: Latencies,
    pub taken: usize,
    pub acknowledged: usize,
    pub double_sold: u64,
    /// (time from the start, seats won) of every successful hold, in time order.
    pub successes: Vec<(Duration, usize)>,
    /// When each hold was answered (held or refused), in time order.
    pub answered: Vec<Duration>,
}

impl SaleFigures {
    /// Hold commands answered per second (successes and refusals) until `seats` seats were won,
    /// or over the whole run if they never were: the store's pace while the sale was on, not
    /// while it refused holds of a sold-out hall.
    pub fn commands_per_s_until(&self, seats: usize) -> f64 {
        let end = until_sold(&self.successes, seats).map_or(Duration::from_secs_f64(self.elapsed_s), |(_, at)| at);
        let answered = self.answered.partition_point(|at| *at <= end);
        answered as f64 / end.as_secs_f64().max(0.001)
    }

    /// Seats won in the run.
    pub fn seats_won(&self) -> usize {
        self.successes.iter().map(|(_, won)| won).sum()
    }

    /// Successful holds per second until `seats` seats were won; `None` if they never were. Runs
    /// compared on the same stretch of the sale face the same odds: the emptier the hall, the
    /// likelier a blind pick succeeds.
    pub fn holds_per_s_until(&self, seats: usize) -> Option<f64> {
        let (holds, at) = until_sold(&self.successes, seats)?;
        Some(holds as f64 / at.as_secs_f64().max(0.001))
    }

    /// I1 on the final state: the store shows exactly the seats clients were told they got.
    pub fn i1_ok(&self) -> bool {
        self.double_sold == 0 && self.taken == self.acknowledged
    }
}

async fn buyer<S: SaleStore>(
    store: Arc<S>,
    event: String,
    n: usize,
    cfg: FlashSaleConfig,
    started: Instant,
    deadline: Instant,
) -> Result<BuyerResult, TargetError> {
    let mut session = store.buyer(n).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let mut seats = seat_ids(cfg.seats);
    seats.shuffle(&mut rng);
    let mut next = 0;
    let mut r = BuyerResult::default();
    let mut conflicts_in_a_row = 0;
    while Instant::now() < deadline && next < seats.len() {
        let want = rng.gen_range(1..=HOLD_SEATS_MAX).min(seats.len() - next);
        let pick = &seats[next..next + want];
        next += want;
        let started_hold = Instant::now();
        let outcome = store.hold(&mut session, &event, pick).await;
        if outcome != HoldOutcome::Error {
            r.answered.push(started.elapsed());
        }
        match outcome {
            HoldOutcome::Held(hold_id) => {
                r.hold_latency.record(started_hold.elapsed());
                r.last_success = started.elapsed();
                r.successes.push((r.last_success, pick.len()));
                conflicts_in_a_row = 0;
                r.holds += 1;
                r.won.extend(pick.iter().cloned());
                if rng.gen_bool(cfg.checkout_ratio) {
                    let started = Instant::now();
                    if store.checkout(&mut session, &event, &hold_id, pick).await {
                        r.checkouts += 1;
                        r.checkout_latency.record(started.elapsed());
                    } else {
                        r.errors += 1;
                    }
                }
            }
            HoldOutcome::Conflict => {
                r.conflicts += 1;
                conflicts_in_a_row += 1;
                if conflicts_in_a_row >= CONFLICTS_BEFORE_CHECK {
                    if store.sold_out(&event, cfg.seats).await {
                        break;
                    }
                    conflicts_in_a_row = 0;
                }
            }
            HoldOutcome::Error => r.errors += 1,
        }
    }
    Ok(r)
}

/// The seats of `event` taken at the end of a run, for the I1 check; then
/// [`SaleStore::teardown`], whose failure is reported but not fatal (the figures are read).
async fn taken_at_the_end<S: SaleStore>(store: &S, event: &str) -> Result<usize, TargetError> {
    let taken = store.taken(event).await?;
    if let Err(e) = store.teardown(event).await {
        eprintln!("warning: {}: cannot remove the sale's data: {e}", store.describe());
    }
    Ok(taken)
}

/// Runs the sale against `store` and checks I1 on its final state.
pub async fn run_sale<S: SaleStore>(store: Arc<S>, cfg: &FlashSaleConfig) -> Result<SaleFigures, TargetError> {
    let event = store.setup(cfg.seats).await?;
    let started = Instant::now();
    let deadline = started + cfg.duration;
    let tasks: Vec<_> = (0..cfg.buyers)
        .map(|n| tokio::spawn(buyer(store.clone(), event.clone(), n, cfg.clone(), started, deadline)))
        .collect();
    let mut total = BuyerResult::default();
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    let mut double_sold = 0u64;
    for (n, t) in tasks.into_iter().enumerate() {
        let r = t.await.map_err(|e| TargetError::Spawn(e.to_string()))??;
        total.last_success = total.last_success.max(r.last_success);
        total.successes.extend(r.successes);
        total.holds += r.holds;
        total.conflicts += r.conflicts;
        total.errors += r.errors;
        total.checkouts += r.checkouts;
        total.hold_latency.merge(r.hold_latency);
        total.answered.extend(r.answered);
        total.checkout_latency.merge(r.checkout_latency);
        for seat in r.won {
            if owners.insert(seat, n).is_some() {
                double_sold += 1;
            }
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    total.successes.sort();
    let reached = until_sold(&total.successes, ninety_percent(cfg.seats));
    let ninety_reached = reached.is_some();
    let (holds_to_90, t90) = reached.unwrap_or((total.successes.len(), total.last_success));
    let sale_s = t90.as_secs_f64().max(0.001);
    let taken = taken_at_the_end(&*store, &event).await?;
    Ok(SaleFigures {
        store: store.describe(),
        seats: cfg.seats,
        buyers: cfg.buyers,
        sale_s,
        ninety_reached,
        elapsed_s,
        holds_per_s: holds_to_90 as f64 / sale_s,
        holds: total.holds,
        conflicts: total.conflicts,
        checkouts: total.checkouts,
        errors: total.errors,
        hold_latency: total.hold_latency,
        checkout_latency: total.checkout_latency,
        taken,
        acknowledged: owners.len(),
        double_sold,
        successes: total.successes,
        answered: {
            total.answered.sort();
            total.answered
        },
    })
}

/// What a sale offered at a fixed rate measured: latency at a load the store can carry, rather
/// than its saturated queue.
pub struct PacedSaleFigures {
    /// Hold commands due per second over the run, on average (successes and refusals alike).
    pub offered_per_s: f64,
    /// Every hold answered (held or refused), from when it was due.
    pub answered: Paced,
    /// The successful holds among them.
    pub held_latency: Latencies,
    pub holds: u64,
    pub checkouts: u64,
    pub checkout_errors: u64,
    pub taken: usize,
    pub acknowledged: usize,
    pub double_sold: u64,
}

impl PacedSaleFigures {
    pub fn i1_ok(&self) -> bool {
        self.double_sold == 0 && self.taken == self.acknowledged
    }
}

/// Offers hold commands for `cfg.duration` on a fresh event, each for 1–4 random seats, whether
/// or not earlier ones were answered (an open loop: latency counts from when each hold was due),
/// at `rate(seats won so far)` per second. The same share of successful holds checks out as in
/// [`run_sale`], off the hold's clock. Checks I1 on the final state.
pub async fn run_paced_sale<S: SaleStore>(
    store: Arc<S>,
    cfg: &FlashSaleConfig,
    rate: impl Fn(usize) -> f64,
) -> Result<PacedSaleFigures, TargetError> {
    let event = store.setup(cfg.seats).await?;
    // A session per hold that may be in flight, so holds never wait for each other's session
    // (a store's own limits, such as PostgreSQL's connections, still apply).
    let in_flight_max = paced_sessions(cfg);
    let mut sessions = Vec::with_capacity(in_flight_max);
    for n in 0..in_flight_max {
        sessions.push(tokio::sync::Mutex::new(store.buyer(n).await?));
    }
    let shared = Arc::new(PacedShared {
        store,
        event,
        seats: seat_ids(cfg.seats),
        sessions,
        checkout_ratio: cfg.checkout_ratio,
        won: Mutex::new(Won::default()),
    });
    let answered = {
        let request = shared.clone();
        let won = shared.clone();
        open_loop_varying(
            move || rate(won.won().owners.len()),
            cfg.duration,
            in_flight_max,
            move |n, due| paced_hold(request.clone(), n, due),
        )
        .await
    };
    // Checkouts started by the last holds finish before the final state is read.
    while shared.won().checkouts_running > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let taken = taken_at_the_end(&*shared.store, &shared.event).await?;
    let won = std::mem::take(&mut *shared.won());
    Ok(PacedSaleFigures {
        offered_per_s: answered.offered_per_s(cfg.duration),
        answered,
        held_latency: won.latency,
        holds: won.holds,
        checkouts: won.checkouts,
        checkout_errors: won.checkout_errors,
        taken,
        acknowledged: won.owners.len(),
        double_sold: won.double_sold,
    })
}

/// The pace a store kept in a closed-loop run at each stage of the sale: hold commands answered
/// per second while the seats won were within each tenth of the hall (the last tenth includes
/// the sold-out tail). A sale's commands change as it goes: in an empty hall almost every hold
/// succeeds and is written, in a full one almost every hold is refused, and refusals cost a
/// store far less. An open loop at one rate, a share of the whole run's average, would overload
/// the start and idle through the end; a share of this pace loads every stage alike.
#[derive(Clone, Debug, PartialEq)]
pub struct SalePace {
    seats: usize,
    /// Commands per second, by tenth of the hall.
    bands: Vec<f64>,
}

/// Tenths of the hall a [`SalePace`] tells apart.
const PACE_BANDS: usize = 10;

/// A stretch shorter than this is too short to time on its own: it takes the pace over this long
/// from where it starts.
const PACE_SPAN_MIN: Duration = Duration::from_millis(250);

impl SalePace {
    pub fn of(f: &SaleFigures) -> SalePace {
        let seats = f.seats as usize;
        let end = Duration::from_secs_f64(f.elapsed_s);
        // When the seats won first reached each tenth of the hall; None for tenths never reached.
        let mut reached = [None; PACE_BANDS];
        reached[0] = Some(Duration::ZERO);
        let mut so_far = 0;
        let mut band = 1;
        for (at, won) in &f.successes {
            so_far += won;
            while band < PACE_BANDS && so_far * PACE_BANDS >= band * seats {
                reached[band] = Some(*at);
                band += 1;
            }
        }
        let answered_before = |t: Duration| f.answered.partition_point(|at| *at < t);
        let mut bands = Vec::with_capacity(PACE_BANDS);
        for b in 0..PACE_BANDS {
            let Some(from) = reached[b] else {
                // Never got this far: the last stretch it did reach carries on.
                let last = bands.last().copied().unwrap_or(0.0);
                bands.push(last);
                continue;
            };
            // The last tenth, and the last one reached, run to the end of the run.
            let to = reached.get(b + 1).copied().flatten().unwrap_or(end).max(from);
            // Too short to time: the pace over the span's first PACE_SPAN_MIN instead (or the
            // whole run, if it is shorter).
            let (from, to) = if to - from >= PACE_SPAN_MIN {
                (from, to)
            } else if end >= PACE_SPAN_MIN {
                let to = (from + PACE_SPAN_MIN).min(end);
                (to - PACE_SPAN_MIN, to)
            } else {
                (Duration::ZERO, end)
            };
            let span = (to - from).as_secs_f64().max(f64::EPSILON);
            let rate = (answered_before(to) - answered_before(from)) as f64 / span;
            bands.push(rate);
        }
        SalePace { seats, bands }
    }

    /// Commands per second the run kept with `seats_won` seats won.
    pub fn at(&self, seats_won: usize) -> f64 {
        let band = (seats_won * PACE_BANDS).checked_div(self.seats).unwrap_or(0);
        self.bands[band.min(PACE_BANDS - 1)]
    }

    /// The rates by tenth of the hall, for reports.
    pub fn bands(&self) -> &[f64] {
        &self.bands
    }
}

/// Buyer sessions of a paced sale, one per hold that may be in flight.
pub fn paced_sessions(cfg: &FlashSaleConfig) -> usize {
    PACED_IN_FLIGHT_PER_BUYER * cfg.buyers.max(1)
}

/// Holds in flight at most, per buyer of the peak run; beyond, the store has fallen behind the
/// offered rate.
const PACED_IN_FLIGHT_PER_BUYER: usize = 4;

struct PacedShared<S: SaleStore> {
    store: Arc<S>,
    event: String,
    seats: Vec<String>,
    sessions: Vec<tokio::sync::Mutex<S::Buyer>>,
    checkout_ratio: f64,
    won: Mutex<Won>,
}

impl<S: SaleStore> PacedShared<S> {
    fn won(&self) -> std::sync::MutexGuard<'_, Won> {
        self.won.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Won {
    latency: Latencies,
    holds: u64,
    checkouts: u64,
    checkout_errors: u64,
    checkouts_running: u64,
    /// Seat → the hold that won it, for the I1 check.
    owners: BTreeMap<String, String>,
    double_sold: u64,
}

/// The `n`th hold of the open loop, timed from `due` (see `open_loop`), on buyer session
/// `n % sessions`; true when the store answered.
async fn paced_hold<S: SaleStore>(shared: Arc<PacedShared<S>>, n: u64, due: tokio::time::Instant) -> bool {
    let mut rng = rand::rngs::StdRng::seed_from_u64(n);
    let want = rng.gen_range(1..=HOLD_SEATS_MAX).min(shared.seats.len());
    let pick: Vec<String> = shared.seats.choose_multiple(&mut rng, want).cloned().collect();
    let session = n as usize % shared.sessions.len();
    let outcome = {
        let mut buyer = shared.sessions[session].lock().await;
        shared.store.hold(&mut buyer, &shared.event, &pick).await
    };
    match outcome {
        HoldOutcome::Held(hold_id) => {
            let checkout = rng.gen_bool(shared.checkout_ratio);
            {
                let mut won = shared.won();
                won.latency.record(due.elapsed());
                won.holds += 1;
                for seat in &pick {
                    if won.owners.insert(seat.clone(), hold_id.clone()).is_some() {
                        won.double_sold += 1;
                    }
                }
                won.checkouts_running += u64::from(checkout);
            }
            if checkout {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let ok = {
                        let mut buyer = shared.sessions[session].lock().await;
                        shared.store.checkout(&mut buyer, &shared.event, &hold_id, &pick).await
                    };
                    let mut won = shared.won();
                    won.checkouts_running -= 1;
                    if ok {
                        won.checkouts += 1;
                    } else {
                        won.checkout_errors += 1;
                    }
                });
            }
            true
        }
        HoldOutcome::Conflict => true,
        HoldOutcome::Error => false,
    }
}

/// Where the sale proper ends: after 90% of the seats are taken, the last few free seats are
/// found only by chance and the rate measures luck, not the store.
pub fn ninety_percent(seats: u32) -> usize {
    seats as usize * 9 / 10
}

/// The successful holds (in time order) until `seats` seats were won, and when that was; `None`
/// if they never were.
fn until_sold(successes: &[(Duration, usize)], seats: usize) -> Option<(usize, Duration)> {
    let mut so_far = 0;
    for (n, (at, won)) in successes.iter().enumerate() {
        so_far += won;
        if so_far >= seats {
            return Some((n + 1, *at));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_ids_follow_boxoffice_rows_of_200() {
        let ids = seat_ids(401);
        assert_eq!(ids[0], "MAIN-R0-1");
        assert_eq!(ids[199], "MAIN-R0-200");
        assert_eq!(ids[200], "MAIN-R1-1");
        assert_eq!(ids[400], "MAIN-R2-1");
    }

    #[test]
    fn the_sale_stretch_stops_at_the_hold_that_crosses_it() {
        let ms = Duration::from_millis;
        let s = vec![(ms(10), 3), (ms(20), 2), (ms(30), 4), (ms(40), 1)];
        assert_eq!(until_sold(&s, ninety_percent(10)), Some((3, ms(30))));
        assert_eq!(until_sold(&s, 5), Some((2, ms(20))));
        assert_eq!(until_sold(&s[..1], ninety_percent(10)), None);
    }

    /// A run of `seats` seats whose holds answered at the given (until, commands per second)
    /// stretches, one seat won per `win_every` commands.
    fn figures(seats: u32, stretches: &[(f64, f64)], win_every: usize) -> SaleFigures {
        let mut answered = Vec::new();
        let mut from = 0.0;
        for &(until, rate) in stretches {
            let n = ((until - from) * rate).round() as usize;
            answered.extend((0..n).map(|i| Duration::from_secs_f64(from + i as f64 / rate)));
            from = until;
        }
        let successes: Vec<(Duration, usize)> =
            answered.iter().step_by(win_every).take(seats as usize).map(|at| (*at, 1)).collect();
        SaleFigures {
            store: String::new(),
            seats,
            buyers: 1,
            sale_s: 0.0,
            ninety_reached: false,
            elapsed_s: from,
            holds_per_s: 0.0,
            holds: successes.len() as u64,
            conflicts: 0,
            checkouts: 0,
            errors: 0,
            hold_latency: Latencies::default(),
            checkout_latency: Latencies::default(),
            taken: 0,
            acknowledged: 0,
            double_sold: 0,
            successes,
            answered,
        }
    }

    #[test]
    fn the_pace_follows_each_tenth_of_the_hall() {
        // 100 seats, a seat won every 100 commands; 1,000 commands/s for 5 s (half the hall, a
        // tenth a second), then 2,000/s (a tenth every half second). The sixth tenth straddles both.
        let f = figures(100, &[(5.0, 1_000.0), (7.5, 2_000.0)], 100);
        let pace = SalePace::of(&f);
        assert_eq!(pace.bands().len(), PACE_BANDS);
        let near = |b: usize, want: f64| (pace.bands()[b] - want).abs() < want * 0.02;
        assert!((0..5).all(|b| near(b, 1_000.0)), "{:?}", pace.bands());
        assert!((6..PACE_BANDS).all(|b| near(b, 2_000.0)), "{:?}", pace.bands());
        assert!(pace.bands()[5] > 1_000.0 && pace.bands()[5] < 2_000.0, "{:?}", pace.bands());
        assert_eq!(pace.at(0), pace.bands()[0]);
        assert_eq!(pace.at(49), pace.bands()[4]);
        assert_eq!(pace.at(50), pace.bands()[5]);
        assert_eq!(pace.at(100), pace.bands()[9], "sold out: the last tenth's pace");
        assert_eq!(pace.at(1_000), pace.bands()[9]);
    }

    #[test]
    fn tenths_never_reached_keep_the_last_pace_seen() {
        // 3 seats of 100 won: only the first tenth was reached.
        let f = figures(100, &[(3.0, 1_000.0)], 1_000);
        let pace = SalePace::of(&f);
        assert!(pace.bands().iter().all(|r| (r - 1_000.0).abs() < 1.0), "{:?}", pace.bands());
    }

    #[test]
    fn a_tenth_too_short_to_time_takes_the_pace_over_a_longer_span() {
        // 10 seats: each tenth is one seat, won every 0.1 s at 1,000 commands/s.
        let f = figures(10, &[(1.0, 1_000.0)], 100);
        let pace = SalePace::of(&f);
        assert!(pace.bands().iter().all(|r| (r - 1_000.0).abs() < 50.0), "{:?}", pace.bands());
    }
}
