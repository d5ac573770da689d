//! What the simulated clients did and saw: every operation with its invocation and return times
//! (the client's clock, which no fault skews) and its result. The checks read only this and the
//! cluster's final state.

use std::sync::Mutex;

use raft_store::{
    fnv1a64, HoldId, HoldView, OrderId, OrderView, Outcome, Refusal, RequestId, SeatMap, TicketCard, TicketId, UserId,
};

/// Fields are read through `Debug`: in the trace hash and in failure reports.
#[allow(dead_code)]
#[derive(Clone, Debug)]
pub enum OpKind {
    HoldSeats {
        seats: Vec<String>,
    },
    HoldGeneral {
        quantity: u32,
    },
    Release {
        hold: HoldId,
    },
    /// Checkout: the order then awaits the payments provider's result.
    Checkout {
        hold: HoldId,
    },
    /// The payments provider's result for an order (attempt `attempt` of its event `event`, sent
    /// under the event's own request id).
    Payment {
        order: OrderId,
        hold: HoldId,
        event: u32,
        approved: bool,
        reference: String,
        attempt: u32,
    },
    /// A ticket's holder gives it to another user.
    Transfer {
        ticket: TicketId,
        from: UserId,
        to: UserId,
    },
    /// A scanner at the door presents a ticket's code: its version and holder.
    CheckIn {
        ticket: TicketId,
        version: u32,
        holder: UserId,
        scanner: usize,
    },
    Cancel {
        order: OrderId,
    },
    ReadSeats,
    /// The same request (id and fingerprint) as operation `of`, sent again.
    Retry {
        of: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum OpResult {
    Hold(HoldView),
    Order(OrderView),
    Refused(Refusal),
    Seats(SeatMap),
    Ticket(TicketCard),
    /// No answer: a timeout or an unavailable cluster. The operation may or may not have applied.
    Unknown(String),
    /// An answer of an unexpected shape.
    Other(String),
}

impl From<Outcome> for OpResult {
    fn from(o: Outcome) -> OpResult {
        match o {
            Outcome::Hold(h) => OpResult::Hold(h),
            Outcome::Order(o) => OpResult::Order(o),
            Outcome::Refused(r) => OpResult::Refused(r),
            Outcome::Ticket(t) => OpResult::Ticket(t),
            other => OpResult::Other(format!("{other:?}")),
        }
    }
}

#[allow(dead_code)] // `client` is read through `Debug`.
#[derive(Clone, Debug)]
pub struct Op {
    pub client: usize,
    pub kind: OpKind,
    /// The request as sent, for retries (absent for reads).
    pub request: Option<(RequestId, u64, raft_store::Command)>,
    pub invoked_ms: i64,
    pub returned_ms: i64,
    pub result: OpResult,
}

#[derive(Default)]
pub struct History {
    ops: Mutex<Vec<Op>>,
    /// Woken whenever a client hears a hold or an order acknowledged.
    acknowledged: tokio::sync::Notify,
}

impl History {
    /// Records a completed operation and returns its index.
    pub fn record(&self, op: Op) -> usize {
        let acknowledged = matches!(op.result, OpResult::Hold(_) | OpResult::Order(_));
        let index = {
            let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
            ops.push(op);
            ops.len() - 1
        };
        if acknowledged {
            self.acknowledged.notify_waiters();
        }
        index
    }

    /// Returns when the next hold or order is acknowledged to a client, at that same instant.
    pub async fn next_acknowledgement(&self) {
        self.acknowledged.notified().await;
    }

    pub fn op(&self, index: usize) -> Option<Op> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).get(index).cloned()
    }

    /// What the request of operation `index` answered: what a retry of it must answer too.
    pub fn answer_to_request(&self, index: usize) -> Option<OpResult> {
        self.op(index).map(|op| op.result)
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A fingerprint of the whole history: the same seed must give the same hash.
    pub fn trace_hash(&self) -> u64 {
        let ops = self.ops();
        let text: String = ops.iter().map(|op| format!("{op:?}\n")).collect();
        fnv1a64(text.as_bytes())
    }
}
