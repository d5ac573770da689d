//! Planted bugs, for showing that the simulation's checks can fail. Compiled only into the
//! simulation (`--cfg madsim`); each switch is per thread, because each simulated run owns one.
//!
//! Every switch names the bug it plants at the one place it acts:
//! - `AckBeforeFlush`: the log store tells Raft an append is durable before its flush.
//! - `AckDespiteFailedFlush`: the log store tells Raft an append is durable when its flush failed.
//! - `TrustUncheckedRecord`: the codec decodes a record without checking its checksums.
//! - `DiscardCorruptTail`: the log store's start-up drops a damaged last record as if a crash had
//!   torn it, when it was complete (and acknowledged) and rotted since.
//! - `SkipAvailabilityCheck`: a hold takes its seats without checking they are free.
//! - `ApplyRetriesTwice`: the idempotency table is ignored, so a retry applies again.
//! - `TrustStaleLeader`: a linearizable read is served from local state without confirming
//!   leadership.
//! - `LeaseNeverExpires`: a leader's read lease, once granted in a term, holds for the whole term.
//! - `CheckInTwice`: a ticket's check-in admits it although it was admitted already.

use std::cell::Cell;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    AckBeforeFlush = 1,
    SkipAvailabilityCheck = 2,
    ApplyRetriesTwice = 4,
    TrustStaleLeader = 8,
    LeaseNeverExpires = 16,
    AckDespiteFailedFlush = 32,
    TrustUncheckedRecord = 64,
    DiscardCorruptTail = 128,
    CheckInTwice = 256,
}

thread_local! {
    static PLANTED: Cell<u32> = const { Cell::new(0) };
}

/// Plants (or removes) a bug for the rest of this thread's run.
pub fn plant(bug: Bug, on: bool) {
    PLANTED.with(|p| p.set(if on { p.get() | bug as u32 } else { p.get() & !(bug as u32) }));
}

pub fn clear() {
    PLANTED.with(|p| p.set(0));
}

pub fn is_planted(bug: Bug) -> bool {
    PLANTED.with(|p| p.get() & bug as u32 != 0)
}
