//! The replicated state machine of one Raft group: a pure function of (state, command, log time).
//!
//! Architecture invariant: nothing under this module reads a clock, draws a random number, or does
//! I/O. Every decision comes from the state and the log entry, so every replica that applies the
//! same log reaches the same state.

mod ctx;
mod dedup;
mod meta;
mod pricing;
mod queue;
mod shard;
mod webhooks;

use serde::{Deserialize, Serialize};

use crate::cold::{ColdError, ColdRead, ColdWrites};
use crate::command::{Answer, Command, Outcome, Proposal, Query, Refusal, Request};
use crate::ids::GroupId;
use crate::layout::Layout;

use ctx::Ctx;
pub use meta::MetaState;
use pricing::Pricing;
pub use shard::{InvariantViolation, ShardState};
use webhooks::Webhooks;

/// The format a snapshot's machine is written in: 3 added `Machine::pricing` and
/// `Machine::webhooks`.
const MACHINE_FORMAT: u8 = 3;

/// What applying one log entry yields: one outcome per proposal, and the records it wrote to the
/// group's cold store.
#[derive(Debug, Default)]
pub struct EntryApplied {
    pub outcomes: Vec<Outcome>,
    pub writes: ColdWrites,
    /// Holds and orders the entry's expiry pass ended.
    pub expired: (u32, u32),
}

/// How many records a group keeps in memory, by kind: what the size of its hot state follows
/// (DESIGN.md, I9). All zero for the meta group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineRecords {
    /// Holds still holding their seats.
    pub holds_active: u64,
    /// Ended holds still in memory: only those a state from before ended holds went to the cold
    /// store keeps, until their retention passes (`ShardState::dropping`).
    pub holds_ended: u64,
    /// Orders in memory (until their event is archived).
    pub orders: u64,
    /// Change records kept for the change feed (at most `CHANGES_RETAINED_MAX`, none older than
    /// `CHANGES_RETAIN_MS` once a newer one is recorded).
    pub changes: u64,
}

/// What a group replicates beyond the bookkeeping every group shares: the meta group's catalog
/// and layout, or one shard's events, holds and orders.
///
/// Not boxed though a shard's state is larger (persistent collections keep their root and size
/// inline): there is one per group, and a box would add an allocation to every snapshot's copy.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum MetaOrShard {
    Meta(MetaState),
    Shard(ShardState),
}

/// The state of one group, with the bookkeeping every group shares: effective time and the last
/// applied index. Snapshots serialize this whole value; the group's cold records (remembered
/// outcomes, the archive) live beside it in the cold store, which apply reads and writes through
/// `ColdRead` and `ColdWrites`.
///
/// Encoded only by [`Machine::encode`], which marks the frame as format 3 (it has no `Serialize`,
/// so no other path can write one under another version).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Machine {
    group: GroupId,
    shard_count: u32,
    /// Never decreases, so time does not run backwards across leader changes.
    last_time_ms: i64,
    last_index: u64,
    state: MetaOrShard,
    /// A shard's dynamic pricing (empty in the meta group). Added in format 3.
    pricing: Pricing,
    /// The meta group's outgoing webhook endpoints (empty in the shards). Added in format 3.
    webhooks: Webhooks,
}

/// What [`Machine::encode`] writes: the machine's fields, in order.
#[derive(Serialize)]
struct MachineRef<'a> {
    group: GroupId,
    shard_count: u32,
    last_time_ms: i64,
    last_index: u64,
    state: &'a MetaOrShard,
    pricing: &'a Pricing,
    webhooks: &'a Webhooks,
}

/// A snapshot as format 2 wrote it: without pricing and webhooks.
#[derive(Deserialize)]
struct MachineV2 {
    group: GroupId,
    shard_count: u32,
    last_time_ms: i64,
    last_index: u64,
    state: MetaOrShard,
}

impl From<MachineV2> for Machine {
    fn from(m: MachineV2) -> Machine {
        let MachineV2 { group, shard_count, last_time_ms, last_index, state } = m;
        Machine {
            group,
            shard_count,
            last_time_ms,
            last_index,
            state,
            pricing: Pricing::default(),
            webhooks: Webhooks::default(),
        }
    }
}

impl Machine {
    pub fn new(group: GroupId, shard_count: u32) -> Machine {
        assert!(shard_count > 0);
        let state = if group.is_meta() {
            MetaOrShard::Meta(MetaState::default())
        } else {
            MetaOrShard::Shard(ShardState::default())
        };
        Machine {
            group,
            shard_count,
            last_time_ms: 0,
            last_index: 0,
            state,
            pricing: Pricing::default(),
            webhooks: Webhooks::default(),
        }
    }

    /// Encodes the machine as a snapshot's state: a frame of format 3, the first with pricing
    /// and webhooks.
    pub fn encode(&self) -> Result<Vec<u8>, crate::codec::CodecError> {
        let Machine { group, shard_count, last_time_ms, last_index, state, pricing, webhooks } = self;
        let view = MachineRef {
            group: *group,
            shard_count: *shard_count,
            last_time_ms: *last_time_ms,
            last_index: *last_index,
            state,
            pricing,
            webhooks,
        };
        crate::codec::encode_as(MACHINE_FORMAT, &view)
    }

    /// Decodes a snapshot of this format or of format 2 (which had no pricing and no webhooks).
    pub fn decode(bytes: &[u8]) -> Result<Machine, crate::codec::CodecError> {
        crate::codec::decode_since::<Machine, MachineV2>(MACHINE_FORMAT, bytes)
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// Moves the state onto a new cluster's log (a restore from a backup, see `restore.rs`): it
    /// stands at `index`, the change feed restarts there (a reader from before it hears
    /// `Compacted` and re-reads the shard), and the meta group takes the new cluster's `layout`.
    /// Everything else — time, catalog, events, holds, orders, id sequences — is kept.
    pub fn rebase(&mut self, index: u64, layout: Option<Layout>) {
        self.last_index = index;
        match &mut self.state {
            MetaOrShard::Meta(meta) => meta.rebase(layout),
            MetaOrShard::Shard(shard) => shard.rebase_changes(index),
        }
    }

    pub fn last_time_ms(&self) -> i64 {
        self.last_time_ms
    }

    /// Records that a log entry without a command (blank, membership) was applied.
    pub fn note_index(&mut self, index: u64) {
        debug_assert!(index > self.last_index || index == 0, "log indexes only grow");
        self.last_index = self.last_index.max(index);
    }

    /// Applies one log entry at `index`: every proposal in order, at the entry's time. The single
    /// entry point that changes a group's state. `cold` is the group's cold store as the previous
    /// entries left it; what this entry writes to it comes back in `ColdWrites`, for the caller
    /// to store before the next entry. An error means the cold store could not be read.
    pub fn apply(&mut self, index: u64, request: &Request, cold: &dyn ColdRead) -> Result<EntryApplied, ColdError> {
        debug_assert!(index > self.last_index, "entry {index} applied after {}", self.last_index);
        self.note_index(index);
        self.last_time_ms = self.last_time_ms.max(request.time_ms);
        let ctx = Ctx { index, now_ms: self.last_time_ms };

        // Expiry comes first for every entry, retries included: a hold past its time is free the
        // moment any command sees it, and leaves memory for the cold store. Ended holds an older
        // state keeps in memory leave once past their retention, a bounded number per command.
        let mut writes = ColdWrites::default();
        let expired = match &mut self.state {
            MetaOrShard::Shard(shard) => {
                let drops_max = ShardState::drops_allowed(request.proposals.iter().map(|p| &p.command));
                shard.expire_due(ctx, drops_max, &mut writes)?
            }
            MetaOrShard::Meta(_) => (0, 0),
        };
        // Prices move with time (recent sales leave the window) before the entry, and with what
        // the entry held and sold after it.
        self.reprice(ctx);
        let mut outcomes = Vec::with_capacity(request.proposals.len());
        for proposal in &request.proposals {
            outcomes.push(self.apply_proposal(ctx, proposal, expired, cold, &mut writes)?);
        }
        self.reprice(ctx);
        Ok(EntryApplied { outcomes, writes, expired })
    }

    fn apply_proposal(
        &mut self,
        ctx: Ctx,
        proposal: &Proposal,
        expired: (u32, u32),
        cold: &dyn ColdRead,
        writes: &mut ColdWrites,
    ) -> Result<Outcome, ColdError> {
        #[cfg(madsim)]
        let remembered = !crate::planted::is_planted(crate::planted::Bug::ApplyRetriesTwice);
        #[cfg(not(madsim))]
        let remembered = true;
        if let Some(id) = proposal.request_id.filter(|_| remembered) {
            if let Some(seen) = dedup::lookup(cold, writes, ctx, &id)? {
                return Ok(if seen.fingerprint == proposal.fingerprint {
                    seen.outcome
                } else {
                    Outcome::Refused(Refusal::IdempotencyKeyReused)
                });
            }
        }
        let outcome = match proposal.command {
            Command::Expire => Outcome::Expired { holds: expired.0, orders: expired.1 },
            _ => self.apply_command(ctx, &proposal.command, cold, writes)?,
        };
        if let Some(id) = proposal.request_id {
            let seen = dedup::Remembered { fingerprint: proposal.fingerprint, outcome };
            dedup::remember(writes, ctx, &id, proposal.keyed, &seen)?;
            return Ok(seen.outcome);
        }
        Ok(outcome)
    }

    fn apply_command(
        &mut self,
        ctx: Ctx,
        command: &Command,
        cold: &dyn ColdRead,
        writes: &mut ColdWrites,
    ) -> Result<Outcome, ColdError> {
        let owner = match command {
            Command::Expire | Command::Archive { .. } => self.group,
            _ => command.group(self.shard_count),
        };
        if owner != self.group {
            return Ok(Outcome::Refused(Refusal::WrongGroup));
        }
        match (&mut self.state, command) {
            (MetaOrShard::Meta(_), Command::RegisterWebhook { .. } | Command::DeleteWebhook { .. }) => {
                Ok(self.webhooks.apply(ctx, command))
            }
            (MetaOrShard::Meta(meta), _) => Ok(meta.apply(ctx, command)),
            (MetaOrShard::Shard(shard), Command::SetPricing { event_id, rules }) => {
                Ok(self.pricing.set(ctx, shard, event_id, rules))
            }
            (MetaOrShard::Shard(shard), Command::Archive { started_before_ms }) => {
                shard.archive(ctx, *started_before_ms, writes)
            }
            (MetaOrShard::Shard(shard), _) => shard.apply(ctx, command, cold, writes),
        }
    }

    /// The refusal apply would give `proposal` if it were the next command at `now_ms` (the
    /// leader's clock), when that is certain without applying it. Only holds are judged; `None`
    /// for anything else, for a hold that would succeed or that only apply can judge, and for a
    /// request seen before (its outcome is the remembered one). A leader that has confirmed its
    /// leadership and applied everything committed may answer such a refusal without a log entry:
    /// it changes nothing.
    ///
    /// The answer must also be the one a read would give, and reads judge expiry at `passed_ms`
    /// (see [`Machine::query`]): a refusal judged at the leader's clock alone could imply a seat
    /// free (not among the unavailable) whose hold a read, a moment later, still shows. So the
    /// refusal is given only if it is the same at both times; otherwise the hold goes to the log,
    /// whose entry records its time for every later read.
    ///
    /// `cold` is the group's cold store: a request whose outcome is remembered there gets that
    /// outcome from the log, never a fresh refusal.
    pub fn refusal(
        &self,
        proposal: &Proposal,
        now_ms: i64,
        passed_ms: i64,
        cold: &dyn ColdRead,
    ) -> Result<Option<Refusal>, ColdError> {
        let next = Ctx { index: self.last_index + 1, now_ms: now_ms.max(self.last_time_ms) };
        if let Some(id) = &proposal.request_id {
            if dedup::lookup(cold, &ColdWrites::default(), next, id)?.is_some() {
                return Ok(None);
            }
        }
        Ok(self.judge_refusal(proposal, now_ms, passed_ms))
    }

    fn judge_refusal(&self, proposal: &Proposal, now_ms: i64, passed_ms: i64) -> Option<Refusal> {
        let MetaOrShard::Shard(shard) = &self.state else { return None };
        let hold = shard::HoldAsk::of(&proposal.command)?;
        if proposal.command.group(self.shard_count) != self.group {
            return None;
        }
        let at_leader = shard.hold_refusal(now_ms.max(self.last_time_ms), &hold)?;
        let as_read = shard.hold_refusal(passed_ms.max(self.last_time_ms), &hold)?;
        (at_leader == as_read).then_some(at_leader)
    }

    /// Answers a read as of `passed_ms` or the time of the last command applied, whichever is
    /// later. `passed_ms` must be a time that every clock able to stamp a later command has
    /// passed (a reader's clock less the largest offset between clocks; a leader's own clock for
    /// the command it prepares). Holds past their expiry at that time read as expired even before
    /// an `Expire` command compacts them, and then no later command can find them active: a
    /// reader whose clock runs ahead of the leader's would otherwise show a seat free that the
    /// leader still lets its holder check out.
    ///
    /// Records moved to the archive (`cold`) are read from there: an ended event, its orders and
    /// tickets. An error means the cold store could not be read.
    pub fn query(&self, query: &Query, passed_ms: i64, cold: &dyn ColdRead) -> Result<Answer, ColdError> {
        let at_ms = passed_ms.max(self.last_time_ms);
        match &self.state {
            MetaOrShard::Meta(_) if matches!(query, Query::Webhooks) => Ok(Answer::Webhooks(self.webhooks.list())),
            MetaOrShard::Meta(meta) => Ok(meta.query(query)),
            MetaOrShard::Shard(shard) => match query {
                Query::Pricing(event_id) => Ok(Answer::Pricing(self.pricing.view(shard, event_id))),
                _ => shard.query(query, at_ms, self.last_index, cold),
            },
        }
    }

    fn reprice(&mut self, ctx: Ctx) {
        if let MetaOrShard::Shard(shard) = &mut self.state {
            if !self.pricing.is_empty() {
                self.pricing.reprice(ctx, shard);
            }
        }
    }

    /// Whether a periodic `Expire` would change anything at `now_ms`: a hold or payment is due, or
    /// an ended hold's retention has passed.
    pub fn has_due_deadlines(&self, now_ms: i64) -> bool {
        match &self.state {
            MetaOrShard::Meta(_) => false,
            MetaOrShard::Shard(shard) => shard.next_deadline_ms().is_some_and(|due| due <= now_ms),
        }
    }

    /// Whether an `Archive { started_before_ms }` would move anything now.
    pub fn has_archive_work(&self, started_before_ms: i64) -> bool {
        match &self.state {
            MetaOrShard::Meta(_) => false,
            MetaOrShard::Shard(shard) => shard.has_archive_work(started_before_ms),
        }
    }

    /// The records the group keeps in memory, by kind. Cheap (sizes the collections keep), so
    /// gauges may sample it often.
    pub fn records(&self) -> MachineRecords {
        match &self.state {
            MetaOrShard::Meta(_) => MachineRecords::default(),
            MetaOrShard::Shard(shard) => shard.records(),
        }
    }

    /// Checks the invariants that must hold between commands; used by tests and simulations.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        match &self.state {
            MetaOrShard::Meta(_) => Ok(()),
            MetaOrShard::Shard(shard) => shard.check_invariants(self.last_time_ms),
        }
    }
}

/// The position of the first of `items` for which `before` is false, where every item for which
/// it is true comes first: `slice::partition_point` for a persistent vector.
pub(crate) fn partition_point<T>(items: &imbl::Vector<T>, before: impl Fn(&T) -> bool) -> usize {
    use std::cmp::Ordering::{Greater, Less};
    items.binary_search_by(|item| if before(item) { Less } else { Greater }).unwrap_or_else(|i| i)
}

#[cfg(test)]
mod measure;
#[cfg(test)]
mod tests;
