//! The payments provider, simulated. After a checkout it tells the store the order's result the
//! way real providers do: late, twice or more, in either order, or never.
//!
//! For each order it learns of, the provider plans its events (each with an id of its own, the
//! request id it is sent under), one of:
//! - none: the order lapses at its payment deadline;
//! - one result, approved or declined;
//! - the same result twice or three times under new event ids (a re-delivered notification);
//! - a decline and an approval, in either order (the buyer's first card, then a second one), the
//!   approval sometimes delivered twice.
//!
//! An order is paid with one charge at most, so every approval of an order carries the same
//! reference; a decline carries its own.
//!
//! Each event is sent at a time of its own: promptly, late (seconds), or — in runs that go past the
//! payment timeout — around its order's deadline, mostly after it, so that the order lapses first
//! and the store must mark the money for a refund. An event is retried under its own request id
//! until the store answers: an approval for as long as it takes (a provider keeps retrying until
//! the merchant acknowledges it), a decline a few times. Every attempt goes into the history.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::task::JoinHandle;
use node::{now_ms, Router};
use raft_store::{fnv1a64, Command, OrderId, OrderStatus, OrderView, RequestId, UserId};
use rand::Rng;
use seams::{Cluster, Submit};

use crate::history::{History, Op, OpKind, OpResult};

/// The provider's number in the history's `client` field.
pub const PROVIDER_CLIENT: usize = 1_000;
/// A prompt result arrives within this long of the checkout.
const PROMPT_MS_MAX: i64 = 1_500;
/// A late result arrives within this long of the checkout.
const LATE_MS_MAX: i64 = 20_000;
/// What is not sent around the deadline (in runs that stay short of it, or for orders outside the
/// window below) is sent at most this late: often after the buyers stop, while the faults heal.
const VERY_LATE_MS: std::ops::Range<i64> = LATE_MS_MAX..30_000;
/// Results sent around an order's deadline arrive this long after it (before it, when negative).
const PAST_DEADLINE_MS: std::ops::Range<i64> = -2_000..8_000;
/// Only orders whose deadline falls within this long of the first order's are paid around their
/// deadline: the run's stretch past the payment timeout, with its faults, stays this short.
const PAST_DEADLINE_WINDOW_MS: i64 = 12_000;
/// Attempts of one event at most. An approval is retried until the store answers: at the longest
/// backoff this outlasts any run.
const APPROVAL_ATTEMPTS_MAX: u32 = 400;
const DECLINE_ATTEMPTS_MAX: u32 = 3;
const BACKOFF_MS_MIN: u64 = 200;
const BACKOFF_MS_MAX: u64 = 3_000;

/// When an event is sent, relative to its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timing {
    Prompt,
    Late,
    PastDeadline,
}

/// One result the provider sends for an order.
#[derive(Clone, Debug)]
struct Event {
    order: OrderView,
    n: u32,
    approved: bool,
    reference: String,
    at_ms: i64,
    timing: Timing,
}

impl Event {
    /// The event's id, as the request id the store deduplicates its retries by.
    fn request_id(&self) -> RequestId {
        let mut id = [0xa7u8; 16];
        id[..8].copy_from_slice(&fnv1a64(format!("{}/{}", self.order.order_id, self.n).as_bytes()).to_be_bytes());
        RequestId(id)
    }
}

/// What the provider planned in a run, for its report.
#[derive(Debug, Default)]
struct Tally {
    orders: usize,
    never: usize,
    duplicated: usize,
    mixed: usize,
    events: usize,
    late: usize,
    past_deadline: usize,
    attempts: usize,
}

#[derive(Default)]
struct State {
    orders: BTreeSet<OrderId>,
    /// The first order's payment deadline: orders due soon after it may be paid around theirs.
    first_deadline_ms: Option<i64>,
    /// The tasks sending the events.
    tasks: Vec<JoinHandle<()>>,
    /// When the first event around a deadline is sent, and when the last is sent or the last
    /// deadline of an order paid around its deadline passes.
    around_from_ms: Option<i64>,
    around_until_ms: i64,
    /// Orders the store answered confirmed to the provider, in that order.
    confirmed: Vec<OrderView>,
    tally: Tally,
}

pub struct Provider {
    router: Arc<Router>,
    history: Arc<History>,
    /// Whether this run goes on past the payment deadlines.
    past_deadline: bool,
    state: Mutex<State>,
}

impl Provider {
    pub fn new(router: Arc<Router>, history: Arc<History>, past_deadline: bool) -> Arc<Provider> {
        Arc::new(Provider { router, history, past_deadline, state: Mutex::default() })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buyer checked out `order` (awaiting payment): plans and starts its results.
    pub fn checked_out(self: &Arc<Self>, order: &OrderView) {
        if order.status != OrderStatus::PendingPayment {
            return;
        }
        let mut state = self.state();
        if !state.orders.insert(order.order_id.clone()) {
            return;
        }
        let first_deadline_ms = *state.first_deadline_ms.get_or_insert(order.payment_deadline_ms);
        let around_deadline =
            self.past_deadline && order.payment_deadline_ms <= first_deadline_ms + PAST_DEADLINE_WINDOW_MS;
        let events = plan(order, around_deadline, &mut state.tally);
        for event in events {
            state.tally.events += 1;
            match event.timing {
                Timing::Late => state.tally.late += 1,
                Timing::PastDeadline => state.tally.past_deadline += 1,
                Timing::Prompt => {}
            }
            if event.timing == Timing::PastDeadline {
                state.around_from_ms = Some(state.around_from_ms.map_or(event.at_ms, |f| f.min(event.at_ms)));
                state.around_until_ms = state.around_until_ms.max(event.at_ms);
            }
            let task = madsim::task::spawn(self.clone().deliver(event));
            state.tasks.push(task);
        }
        if around_deadline {
            state.around_until_ms = state.around_until_ms.max(order.payment_deadline_ms);
        }
    }

    /// Sends one event at its time, and again until the store answers (a decline a few times).
    async fn deliver(self: Arc<Self>, event: Event) {
        let wait_ms = (event.at_ms - now_ms()).max(0) as u64;
        madsim::time::sleep(Duration::from_millis(wait_ms)).await;
        let command = Command::PaymentResult {
            order_id: event.order.order_id.clone(),
            approved: event.approved,
            reference: event.reference.clone(),
        };
        let request_id = event.request_id();
        let fingerprint = fnv1a64(event.reference.as_bytes());
        let attempts_max = if event.approved { APPROVAL_ATTEMPTS_MAX } else { DECLINE_ATTEMPTS_MAX };
        let mut backoff_ms = BACKOFF_MS_MIN;
        for attempt in 0..attempts_max {
            let invoked_ms = now_ms();
            let submit = Submit { command: command.clone(), request_id, fingerprint, keyed: true };
            let result = match self.router.submit(submit).await {
                Ok(outcome) => OpResult::from(outcome),
                Err(e) => OpResult::Unknown(e.to_string()),
            };
            let kind = OpKind::Payment {
                order: event.order.order_id.clone(),
                hold: event.order.hold_id.clone(),
                event: event.n,
                approved: event.approved,
                reference: event.reference.clone(),
                attempt,
            };
            let answered = !matches!(result, OpResult::Unknown(_));
            if let OpResult::Order(o) = &result {
                self.note_answer(o);
            }
            self.state().tally.attempts += 1;
            let request = Some((request_id, fingerprint, command.clone()));
            let op = Op { client: PROVIDER_CLIENT, kind, request, invoked_ms, returned_ms: now_ms(), result };
            self.history.record(op);
            if answered {
                return;
            }
            madsim::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(BACKOFF_MS_MAX);
        }
    }

    fn note_answer(&self, order: &OrderView) {
        if order.status != OrderStatus::Confirmed {
            return;
        }
        let mut state = self.state();
        if state.confirmed.iter().all(|o| o.order_id != order.order_id) {
            state.confirmed.push(order.clone());
        }
    }

    /// The span (true time) over which results are sent around deadlines, and those deadlines
    /// pass; `None` when none are.
    pub fn deadline_span(&self) -> Option<(i64, i64)> {
        let state = self.state();
        state.around_from_ms.map(|from| (from, state.around_until_ms))
    }

    /// Waits (at most `wait`) until every event is through.
    pub async fn settle(&self, wait: Duration) -> bool {
        let tasks = std::mem::take(&mut self.state().tasks);
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        madsim::time::timeout(wait, all).await.is_ok()
    }

    /// Orders the store answered confirmed, from the `from`-th on.
    pub fn confirmed_since(&self, from: usize) -> Vec<OrderView> {
        self.state().confirmed.get(from..).map(<[OrderView]>::to_vec).unwrap_or_default()
    }

    /// The orders of `user` the store answered confirmed.
    pub fn confirmed_of(&self, user: &UserId) -> Vec<OrderId> {
        self.state().confirmed.iter().filter(|o| o.user_id == *user).map(|o| o.order_id.clone()).collect()
    }

    pub fn summary(&self) -> String {
        let t = &self.state().tally;
        format!(
            "payments: {} orders ({} never paid, {} paid twice or more, {} declined then approved or the reverse); \
             {} results ({} late, {} around the deadline), {} attempts",
            t.orders, t.never, t.duplicated, t.mixed, t.events, t.late, t.past_deadline, t.attempts
        )
    }
}

/// The results the provider sends for `order`, each with its send time.
fn plan(order: &OrderView, around_deadline: bool, tally: &mut Tally) -> Vec<Event> {
    let mut rng = madsim::rand::thread_rng();
    tally.orders += 1;
    let approve = rng.gen_bool(0.8);
    // (approved, how many deliveries)
    let results: Vec<(bool, u32)> = match rng.gen_range(0..100) {
        0..=14 => {
            tally.never += 1;
            Vec::new()
        }
        15..=54 => vec![(approve, 1)],
        55..=79 => {
            tally.duplicated += 1;
            vec![(approve, rng.gen_range(2..=3))]
        }
        _ => {
            tally.mixed += 1;
            vec![(false, 1), (true, rng.gen_range(1..=2))]
        }
    };
    let seq = order.order_id.seq;
    let mut events = Vec::new();
    for (card, (approved, deliveries)) in results.into_iter().enumerate() {
        let reference = if approved { format!("ch-{seq}") } else { format!("dc-{seq}-{card}") };
        for _ in 0..deliveries {
            let (timing, at_ms) = send_time(order, around_deadline);
            let n = events.len() as u32;
            events.push(Event { order: order.clone(), n, approved, reference: reference.clone(), at_ms, timing });
        }
    }
    events
}

/// When one event is sent (true time; the deadline is the leader's, within the clock skew of it).
/// Around the deadline means [`raft_store::PAYMENT_TIMEOUT_MS`] after the checkout.
fn send_time(order: &OrderView, around_deadline: bool) -> (Timing, i64) {
    let mut rng = madsim::rand::thread_rng();
    let now = now_ms();
    // Orders paid around their deadline get half their results there.
    let (prompt, late) = if around_deadline { (30, 50) } else { (40, 75) };
    match rng.gen_range(0..100) {
        p if p < prompt => (Timing::Prompt, now + rng.gen_range(0..PROMPT_MS_MAX)),
        p if p < late => (Timing::Late, now + rng.gen_range(PROMPT_MS_MAX..LATE_MS_MAX)),
        _ if around_deadline => (Timing::PastDeadline, order.payment_deadline_ms + rng.gen_range(PAST_DEADLINE_MS)),
        _ => (Timing::Late, now + rng.gen_range(VERY_LATE_MS)),
    }
}
