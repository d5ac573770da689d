//! The decoders of everything a node reads from disk or a peer, fed hostile bytes: valid
//! encodings mutated (bits flipped, bytes set to boundary values, ranges cut, inserted,
//! duplicated, lengths rewritten) and framed again with correct checksums, since otherwise the
//! checksums would refuse nearly every case before a decoder saw it. A decoder may refuse any
//! input; it must never panic, and a machine it accepts must answer `check_invariants` without
//! panicking.
//!
//! `proptest` draws the cases, on stable Rust: the unit tests below run a few hundred per target
//! in CI, and `boxoffice-bench fuzz --duration` runs them for minutes.

use openraft::{CommittedLeaderId, EntryPayload, LogId, SnapshotMeta, StoredMembership};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::codec::{self, CodecError};
use crate::cold::{ColdRecord, MemCold};
use crate::command::{Actor, Command, Outcome, Proposal, Request};
use crate::ids::{shard_of, EventId, GroupId, HoldId, OrderId, TicketId, UserId, VenueId};
use crate::machine::Machine;
use crate::model::*;
use crate::raft_types::Entry;
use crate::snapshot::SnapshotChunk;

/// What is decoded from stored or received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Raft log entry as the log store keeps it.
    LogEntry,
    /// An entry's payload: a batch of proposals.
    Request,
    /// A cold record (a remembered outcome, an archived order) as stored and streamed.
    ColdRecord,
    /// An outcome as a remembered outcome's body holds it.
    Outcome,
    /// A piece of a snapshot stream from a peer or a backup.
    SnapshotChunk,
    /// A group's machine as a snapshot's hot part holds it.
    Machine,
}

impl Target {
    pub const ALL: [Target; 6] = [
        Target::LogEntry,
        Target::Request,
        Target::ColdRecord,
        Target::Outcome,
        Target::SnapshotChunk,
        Target::Machine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::LogEntry => "log entry",
            Target::Request => "request",
            Target::ColdRecord => "cold record",
            Target::Outcome => "outcome",
            Target::SnapshotChunk => "snapshot chunk",
            Target::Machine => "machine",
        }
    }

    /// Decodes `framed`; `true` if it was accepted. Panics only if the decoder has a bug.
    pub fn decode(self, framed: &[u8]) -> bool {
        match self {
            Target::LogEntry => codec::decode::<Entry>(framed).is_ok(),
            Target::Request => codec::decode::<Request>(framed).is_ok(),
            Target::ColdRecord => codec::decode::<ColdRecord>(framed).is_ok(),
            Target::Outcome => codec::decode::<Outcome>(framed).is_ok(),
            Target::SnapshotChunk => codec::decode::<SnapshotChunk>(framed).is_ok(),
            // A machine that decodes is judged too: its checks must refuse, not panic.
            Target::Machine => Machine::decode(framed).map(|m| m.check_invariants()).is_ok(),
        }
    }

    /// Bodies of valid encodings, the starting points of mutation.
    pub fn seeds(self) -> Vec<Vec<u8>> {
        let encoded: Result<Vec<Vec<u8>>, CodecError> = match self {
            Target::LogEntry => seed_entries().iter().map(codec::encode).collect(),
            Target::Request => seed_requests().iter().map(codec::encode).collect(),
            Target::ColdRecord => seed_cold_records().iter().map(codec::encode).collect(),
            Target::Outcome => seed_outcomes().iter().map(codec::encode).collect(),
            Target::SnapshotChunk => seed_chunks().iter().map(codec::encode).collect(),
            Target::Machine => seed_machines().iter().map(Machine::encode).collect(),
        };
        // The seeds are values this crate builds and encodes: failing to is a bug here.
        let encoded = encoded.unwrap_or_else(|e| panic!("a fuzz seed of {} does not encode: {e}", self.name()));
        encoded.iter().filter_map(|framed| codec::body(framed).ok().map(<[u8]>::to_vec)).collect()
    }
}

/// The body of an encoding (`raft_store::encode`), as a seed for types this crate does not know
/// (the node's wire messages).
pub fn body_of(framed: &[u8]) -> Option<Vec<u8>> {
    codec::body(framed).ok().map(<[u8]>::to_vec)
}

/// One change to a body.
#[derive(Clone, Debug)]
pub enum Mutation {
    Flip {
        at: Index,
        bit: u8,
    },
    Set {
        at: Index,
        value: u8,
    },
    /// A little-endian boundary value written over the bytes at `at` (a length, a count, a tag).
    Boundary {
        at: Index,
        value: u64,
        width: u8,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    Remove {
        at: Index,
        len: usize,
    },
    Duplicate {
        from: Index,
        to: Index,
        len: usize,
    },
    Truncate {
        at: Index,
    },
}

impl Mutation {
    fn apply(&self, body: &mut Vec<u8>) {
        if body.is_empty() {
            if let Mutation::Insert { bytes, .. } = self {
                body.extend_from_slice(bytes);
            }
            return;
        }
        let len = body.len();
        match self {
            Mutation::Flip { at, bit } => body[at.index(len)] ^= 1 << (bit % 8),
            Mutation::Set { at, value } => body[at.index(len)] = *value,
            Mutation::Boundary { at, value, width } => {
                let start = at.index(len);
                let bytes = value.to_le_bytes();
                let end = (start + usize::from(*width).clamp(1, 8)).min(len);
                body[start..end].copy_from_slice(&bytes[..end - start]);
            }
            Mutation::Insert { at, bytes } => {
                let start = at.index(len + 1);
                body.splice(start..start, bytes.iter().copied());
            }
            Mutation::Remove { at, len: n } => {
                let start = at.index(len);
                body.drain(start..(start + n).min(len));
            }
            Mutation::Duplicate { from, to, len: n } => {
                let start = from.index(len);
                let piece: Vec<u8> = body[start..(start + n).min(len)].to_vec();
                let at = to.index(len + 1);
                body.splice(at..at, piece);
            }
            Mutation::Truncate { at } => body.truncate(at.index(len)),
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let boundary = prop_oneof![
        Just(0u64),
        Just(1),
        Just(0x7f),
        Just(0x80),
        Just(0xff),
        Just(0xfb),
        Just(0xfc),
        Just(0xfd),
        Just(0xfe),
        Just(u64::from(u16::MAX)),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(1 << 30),
        any::<u64>()
    ];
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        3 => (any::<Index>(), boundary, 1u8..=8).prop_map(|(at, value, width)| Mutation::Boundary { at, value, width }),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<Index>(), 1usize..32).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => (any::<Index>(), any::<Index>(), 1usize..64).prop_map(|(from, to, len)| Mutation::Duplicate { from, to, len }),
        1 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// One case: a seed's body changed by a few mutations (or random bytes), framed intact.
#[derive(Clone, Debug)]
pub struct Case {
    pub seed: Index,
    pub mutations: Vec<Mutation>,
    pub random: Option<Vec<u8>>,
}

impl Case {
    /// The framed bytes this case feeds the decoder, from the target's seed bodies.
    pub fn bytes(&self, seeds: &[Vec<u8>]) -> Vec<u8> {
        let mut body = match (&self.random, seeds.is_empty()) {
            (Some(random), _) => random.clone(),
            (None, true) => Vec::new(),
            (None, false) => seeds[self.seed.index(seeds.len())].clone(),
        };
        for m in &self.mutations {
            m.apply(&mut body);
        }
        codec::frame(&body)
    }
}

/// Cases: mostly mutated seeds, some random bytes.
pub fn case() -> impl Strategy<Value = Case> {
    let mutated = (any::<Index>(), proptest::collection::vec(mutation(), 1..6)).prop_map(|(seed, mutations)| Case {
        seed,
        mutations,
        random: None,
    });
    let random = (any::<Index>(), proptest::collection::vec(any::<u8>(), 0..256)).prop_map(|(seed, bytes)| Case {
        seed,
        mutations: Vec::new(),
        random: Some(bytes),
    });
    prop_oneof![9 => mutated, 1 => random]
}

// ---- seeds -----------------------------------------------------------------------------------

const T0: i64 = 1_750_000_000_000;

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn user(name: &str) -> UserId {
    // A fixed, valid name: failing to parse it is a bug here.
    UserId::parse(name).unwrap_or_else(|| panic!("{name} is not a user id"))
}

fn venue() -> Venue {
    Venue {
        venue_id: VenueId::from_u64(7),
        name: "Arena".into(),
        city: "Lisbon".into(),
        country: "PT".into(),
        location: GeoPoint { lat: 38.7, lon: -9.1 },
        sections: vec![
            Section {
                id: "FLOOR".into(),
                name: "Floor".into(),
                kind: SectionKind::Seated {
                    rows: vec![Row { id: "A".into(), seats: 4 }, Row { id: "B".into(), seats: 4 }],
                },
            },
            Section { id: "LAWN".into(), name: "Lawn".into(), kind: SectionKind::General { capacity: 50 } },
        ],
    }
}

fn event_spec(event_id: EventId) -> EventSpec {
    EventSpec {
        event_id,
        name: "Concert".into(),
        description: "A night".into(),
        category: "music".into(),
        performers: vec!["Band".into()],
        venue: venue(),
        starts_at_ms: T0 + 86_400_000,
        on_sale_at_ms: T0,
        prices: vec![
            SectionPrice { section: "FLOOR".into(), price: usd(5_000) },
            SectionPrice { section: "LAWN".into(), price: usd(2_000) },
        ],
        per_user_limit: Some(6),
        high_traffic: true,
    }
}

fn seed_requests() -> Vec<Request> {
    let event = EventId::from_u64(42);
    let keyed = |n: u8, command| Proposal {
        request_id: Some(crate::ids::RequestId([n; 16])),
        fingerprint: u64::from(n),
        keyed: true,
        command,
    };
    let alice = user("alice");
    vec![
        Request::single(T0, Proposal::internal(Command::CreateVenue(venue()))),
        Request::single(T0, Proposal::internal(Command::CreateEvent(event_spec(event.clone())))),
        Request {
            time_ms: T0 + 5,
            proposals: vec![
                keyed(
                    1,
                    Command::ReleaseHold { hold_id: HoldId { event_id: event.clone(), seq: 3 }, user: alice.clone() },
                ),
                keyed(
                    2,
                    Command::Checkout { hold_id: HoldId { event_id: event.clone(), seq: 4 }, user: alice.clone() },
                ),
                Proposal::internal(Command::PaymentResult {
                    order_id: OrderId { event_id: event.clone(), seq: 9 },
                    approved: true,
                    reference: "pi_123".into(),
                }),
                keyed(
                    3,
                    Command::CancelOrder {
                        order_id: OrderId { event_id: event.clone(), seq: 9 },
                        actor: Actor { user: alice, admin: false },
                    },
                ),
                Proposal::internal(Command::Expire),
                Proposal::internal(Command::Archive { started_before_ms: T0 }),
                Proposal::internal(Command::LeaseQueueBlock {
                    event_id: event.clone(),
                    size: 64,
                    unused: Some((3, 9)),
                }),
                Proposal::internal(Command::AdvanceQueue { event_id: event.clone(), to: 12 }),
            ],
        },
        Request {
            time_ms: T0 + 6,
            proposals: vec![
                Proposal::internal(Command::SetPricing {
                    event_id: event.clone(),
                    rules: vec![PriceRule {
                        section: "FLOOR".into(),
                        base: Money::new(5_000, Currency::USD),
                        floor: Money::new(4_000, Currency::USD),
                        ceiling: Money::new(9_000, Currency::USD),
                        demand_steps: vec![PriceStep { at_least: 50, adjust_percent: 20 }],
                        window_minutes: 10,
                        sales_steps: vec![PriceStep { at_least: 5, adjust_percent: 10 }],
                    }],
                }),
                Proposal::internal(Command::CheckIn {
                    ticket_id: TicketId { order: OrderId { event_id: event.clone(), seq: 9 }, n: 0 },
                    version: 0,
                    holder: user("alice"),
                }),
                Proposal::internal(Command::TransferTicket {
                    ticket_id: TicketId { order: OrderId { event_id: event, seq: 9 }, n: 1 },
                    from: user("alice"),
                    to: user("bob"),
                }),
            ],
        },
        Request::single(
            T0,
            Proposal::internal(Command::InitLayout {
                shard_count: 4,
                replication: 3,
                nodes: vec![(1, "10.0.0.1:7001".into()), (2, "10.0.0.2:7001".into())],
            }),
        ),
        Request {
            time_ms: T0 + 7,
            proposals: vec![
                Proposal::internal(Command::RegisterWebhook {
                    webhook_id: crate::WebhookId::from_u64(5),
                    url: "https://hooks.example.com/boxoffice".into(),
                    events: vec![crate::WebhookEventType::OrderConfirmed, crate::WebhookEventType::TicketCheckedIn],
                    secret: "whsec_seed".into(),
                    created_by: user("admin"),
                }),
                Proposal::internal(Command::DeleteWebhook { webhook_id: crate::WebhookId::from_u64(6) }),
            ],
        },
    ]
}

fn seed_entries() -> Vec<Entry> {
    let log_id = |index| LogId::new(CommittedLeaderId::new(3, 1), index);
    let mut entries: Vec<Entry> = seed_requests()
        .into_iter()
        .enumerate()
        .map(|(n, request)| Entry { log_id: log_id(n as u64 + 1), payload: EntryPayload::Normal(request) })
        .collect();
    entries.push(Entry { log_id: log_id(10), payload: EntryPayload::Blank });
    let members = std::collections::BTreeMap::from([(1, openraft::BasicNode::new("10.0.0.1:7001"))]);
    let membership = openraft::Membership::new(vec![std::collections::BTreeSet::from([1])], members);
    entries.push(Entry { log_id: log_id(11), payload: EntryPayload::Membership(membership) });
    entries
}

/// A shard's machine with an event, and the outcomes and cold writes its commands made.
fn seed_shard() -> (Machine, Vec<Outcome>, MemCold) {
    let event = EventId::from_u64(42);
    let mut machine = Machine::new(GroupId::shard(shard_of(&event, 4)), 4);
    let cold = MemCold::default();
    let mut outcomes = Vec::new();
    for (n, request) in seed_requests().into_iter().skip(1).take(3).enumerate() {
        // Refusals are outcomes too; a cold store in memory never fails to read.
        if let Ok(applied) = machine.apply(n as u64 + 1, &request, &cold) {
            cold.write(applied.writes);
            outcomes.extend(applied.outcomes);
        }
    }
    (machine, outcomes, cold)
}

fn seed_outcomes() -> Vec<Outcome> {
    seed_shard().1
}

fn seed_machines() -> Vec<Machine> {
    // The meta group with its layout and a webhook endpoint (the last two seed requests).
    let mut meta = Machine::new(GroupId::META, 4);
    for (n, request) in seed_requests().iter().rev().take(2).rev().enumerate() {
        let _ = meta.apply(n as u64 + 1, request, &crate::cold::NoCold);
    }
    vec![meta, seed_shard().0]
}

fn seed_cold_records() -> Vec<ColdRecord> {
    let outcomes = seed_outcomes();
    let body = outcomes.first().and_then(|o| codec::encode(o).ok()).unwrap_or_default();
    vec![
        ColdRecord { index: 7, expires_ms: Some(T0 + 86_400_000), body: body.clone() },
        ColdRecord { index: 8, expires_ms: None, body },
    ]
}

fn seed_chunks() -> Vec<SnapshotChunk> {
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 40)),
        last_membership: StoredMembership::default(),
        snapshot_id: "3-1-40-7".into(),
    };
    let hot = seed_shard().0.encode().unwrap_or_default();
    let cold: Vec<(Vec<u8>, Vec<u8>)> = seed_cold_records()
        .iter()
        .enumerate()
        .filter_map(|(n, r)| Some((vec![1, n as u8, 2, 3], codec::encode(r).ok()?)))
        .collect();
    vec![
        SnapshotChunk::Begin { meta, time_ms: T0, hot_bytes: hot.len() as u64 },
        SnapshotChunk::Hot(hot),
        SnapshotChunk::Cold(cold),
        SnapshotChunk::End { cold_records: 2, digest: [7; 32] },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_seeds_that_decode() {
        for target in Target::ALL {
            let seeds = target.seeds();
            assert!(!seeds.is_empty(), "{}", target.name());
            for seed in &seeds {
                assert!(target.decode(&codec::frame(seed)), "a seed of {} does not decode", target.name());
            }
        }
    }

    #[test]
    fn the_shard_seed_holds_an_event() {
        let (machine, outcomes, _) = seed_shard();
        assert_eq!(outcomes.len(), 12, "{outcomes:?}");
        assert!(matches!(outcomes[9], Outcome::Pricing(_)), "{outcomes:?}");
        assert!(machine.check_invariants().is_ok());
    }

    fn all_seeds() -> &'static [(Target, Vec<Vec<u8>>)] {
        static SEEDS: std::sync::OnceLock<Vec<(Target, Vec<Vec<u8>>)>> = std::sync::OnceLock::new();
        SEEDS.get_or_init(|| Target::ALL.iter().map(|t| (*t, t.seeds())).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn decoders_refuse_mutated_records_without_panicking(case in case()) {
            for (target, seeds) in all_seeds() {
                target.decode(&case.bytes(seeds));
            }
        }
    }
}
