//! The door of the show, simulated: tickets of confirmed orders are scanned there while the
//! faults go on.
//!
//! Each ticket is scanned by several scanners at once, each through a router of its own (so,
//! while leadership moves, through different nodes), all presenting the ticket's current code:
//! at most one of them may be admitted. A scanner that gets no answer scans again under a new
//! request id, as a scanning device does, so a retry is never deduplicated: only the ticket's
//! own record can refuse it. Some tickets are first transferred to another user; their scanners
//! then present both the new code and the replaced one, which must admit nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::task::JoinHandle;
use node::{now_ms, Router};
use raft_store::{Command, RequestId, TicketView, UserId};
use rand::seq::SliceRandom;
use rand::Rng;
use seams::{Cluster, Submit};

use crate::history::{History, Op, OpKind, OpResult};
use crate::provider::Provider;

/// The door's number in the history's `client` field.
pub const DOOR_CLIENT: usize = 1_001;
/// Tickets of one order the door scans at most.
const TICKETS_PER_ORDER_MAX: usize = 2;
/// The chance that a ticket is transferred before it is scanned.
const TRANSFER_CHANCE: f64 = 0.35;
/// Scanners presenting a ticket's current code at once: at least two, so that a second
/// admission is tried every time.
const SCANNERS_CURRENT: std::ops::RangeInclusive<usize> = 2..=3;
/// Attempts of one scanner at most (each under a new request id), and of one transfer (under
/// one request id).
const SCAN_ATTEMPTS_MAX: u32 = 4;
const TRANSFER_ATTEMPTS_MAX: u32 = 4;
/// A scanner waits this long (ms) after an attempt without an answer.
const RETRY_PAUSE_MS: std::ops::Range<u64> = 100..1_000;
/// How long after its order is confirmed a ticket comes to the door (ms).
const ARRIVAL_MS: std::ops::Range<u64> = 0..3_000;
/// How often the door looks for newly confirmed orders (ms).
const POLL_MS: std::ops::Range<u64> = 200..800;

/// A ticket's code: its version and its holder.
type Code = (u32, UserId);

#[derive(Debug, Default)]
struct Tally {
    tickets: usize,
    transfers: usize,
    scans: usize,
    admitted: usize,
}

pub struct Door {
    /// One router per scanner position (routers are shared with the buyers' api instances).
    routers: Vec<Arc<Router>>,
    history: Arc<History>,
    provider: Arc<Provider>,
    stop: AtomicBool,
    tally: Mutex<Tally>,
}

fn random_request_id() -> RequestId {
    let mut id = [0u8; 16];
    madsim::rand::thread_rng().fill(&mut id[..]);
    RequestId(id)
}

impl Door {
    pub fn new(routers: Vec<Arc<Router>>, history: Arc<History>, provider: Arc<Provider>) -> Arc<Door> {
        assert!(!routers.is_empty(), "the door needs a router");
        Arc::new(Door { routers, history, provider, stop: AtomicBool::new(false), tally: Mutex::default() })
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Scans the tickets of every order confirmed until [`Door::stop`], then waits for the last
    /// scans (each scanner's attempts are bounded).
    pub async fn run(self: Arc<Self>) {
        let mut seen = 0;
        let mut tickets: Vec<JoinHandle<()>> = Vec::new();
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            let confirmed = self.provider.confirmed_since(seen);
            seen += confirmed.len();
            for order in confirmed {
                for ticket in order.tickets.iter().take(TICKETS_PER_ORDER_MAX) {
                    tickets.push(madsim::task::spawn(self.clone().admit(ticket.clone(), order.user_id.clone())));
                }
            }
            if stopping {
                break;
            }
            let pause = madsim::rand::thread_rng().gen_range(POLL_MS);
            madsim::time::sleep(Duration::from_millis(pause)).await;
        }
        for t in tickets {
            let _ = t.await;
        }
    }

    /// No more orders will be confirmed: the door scans what it has and ends.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// One ticket at the door: perhaps transferred first, then scanned by several at once.
    async fn admit(self: Arc<Self>, ticket: TicketView, buyer: UserId) {
        let arrival = madsim::rand::thread_rng().gen_range(ARRIVAL_MS);
        madsim::time::sleep(Duration::from_millis(arrival)).await;
        self.tally().tickets += 1;
        let issued: Code = (0, buyer.clone());
        let mut codes = vec![issued];
        if madsim::rand::thread_rng().gen_bool(TRANSFER_CHANCE) {
            let fan = UserId::parse(&format!("fan-{}-{}", ticket.order_id.seq, ticket.ticket_id.n)).expect("valid");
            match self.transfer(&ticket, &buyer, &fan).await {
                Some(OpResult::Ticket(card)) => codes.push((card.version, card.view.user_id)),
                // Refused (the order was cancelled meanwhile): the issued code is the only one.
                Some(_) => {}
                // It may have happened: scan with the code it would have made too.
                None => codes.push((1, fan)),
            }
        }
        // The newest code by several scanners at once, every older one by one more.
        let newest = codes.last().cloned().expect("the issued code at least");
        let count = madsim::rand::thread_rng().gen_range(SCANNERS_CURRENT);
        let mut scans: Vec<Code> = vec![newest; count];
        scans.extend(codes[..codes.len() - 1].iter().cloned());
        scans.shuffle(&mut madsim::rand::thread_rng());
        let first = madsim::rand::thread_rng().gen_range(0..self.routers.len());
        let mut scanners = Vec::new();
        for (k, code) in scans.into_iter().enumerate() {
            let router = self.routers[(first + k) % self.routers.len()].clone();
            scanners.push(madsim::task::spawn(self.clone().scan(router, ticket.clone(), code, k)));
        }
        for s in scanners {
            let _ = s.await;
        }
    }

    /// Transfers the ticket, retrying under one request id; the answer, `None` if none came.
    async fn transfer(&self, ticket: &TicketView, from: &UserId, to: &UserId) -> Option<OpResult> {
        let command =
            Command::TransferTicket { ticket_id: ticket.ticket_id.clone(), from: from.clone(), to: to.clone() };
        let request_id = random_request_id();
        self.tally().transfers += 1;
        for _ in 0..TRANSFER_ATTEMPTS_MAX {
            let router = self.routers.choose(&mut madsim::rand::thread_rng()).expect("routers").clone();
            let kind = OpKind::Transfer { ticket: ticket.ticket_id.clone(), from: from.clone(), to: to.clone() };
            let result = self.send(&router, kind, request_id, command.clone()).await;
            if !matches!(result, OpResult::Unknown(_)) {
                return Some(result);
            }
            let pause = madsim::rand::thread_rng().gen_range(RETRY_PAUSE_MS);
            madsim::time::sleep(Duration::from_millis(pause)).await;
        }
        None
    }

    /// One scanner: presents `code` until the store answers, under a new request id each time.
    async fn scan(self: Arc<Self>, router: Arc<Router>, ticket: TicketView, code: Code, scanner: usize) {
        let (version, holder) = code;
        let command = Command::CheckIn { ticket_id: ticket.ticket_id.clone(), version, holder: holder.clone() };
        for _ in 0..SCAN_ATTEMPTS_MAX {
            let kind = OpKind::CheckIn { ticket: ticket.ticket_id.clone(), version, holder: holder.clone(), scanner };
            self.tally().scans += 1;
            let result = self.send(&router, kind, random_request_id(), command.clone()).await;
            match result {
                OpResult::Unknown(_) => {}
                OpResult::Ticket(_) => {
                    self.tally().admitted += 1;
                    return;
                }
                _ => return,
            }
            let pause = madsim::rand::thread_rng().gen_range(RETRY_PAUSE_MS);
            madsim::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    async fn send(&self, router: &Router, kind: OpKind, request_id: RequestId, command: Command) -> OpResult {
        let invoked_ms = now_ms();
        let fingerprint = raft_store::fnv1a64(format!("{command:?}").as_bytes());
        let submit = Submit { command: command.clone(), request_id, fingerprint, keyed: true };
        let result = match router.submit(submit).await {
            Ok(outcome) => OpResult::from(outcome),
            Err(e) => OpResult::Unknown(e.to_string()),
        };
        let request = Some((request_id, fingerprint, command));
        let op = Op { client: DOOR_CLIENT, kind, request, invoked_ms, returned_ms: now_ms(), result: result.clone() };
        self.history.record(op);
        result
    }

    pub fn summary(&self) -> String {
        let t = self.tally();
        format!(
            "door: {} tickets, {} transfers tried first, {} scan attempts, {} admissions",
            t.tickets, t.transfers, t.scans, t.admitted
        )
    }
}
