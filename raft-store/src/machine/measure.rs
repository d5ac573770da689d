//! A measurement, not a test of behaviour: what a snapshot's copy of a large shard costs apply
//! (the copy itself, and the first hold after it, which copies the paths it touches). Ignored by
//! default; run alone, in release, to print the figures:
//!
//! `cargo test -p raft-store --release --lib -- --ignored --nocapture large_shard`
//!
//! The shard: one event of 200,000 seats, 100,000 orders (180,000 seats sold, their holds past
//! retention and dropped), 9,000 active holds of 2 seats, the change feed at its cap.
//!
//! Memory per hold and order is measured roughly below (`memory_per_*`): exact live bytes need a
//! counting global allocator, which `unsafe_code = "forbid"` rules out in the workspace, so each
//! of those tests builds many records and reads how much the resident set (VmRSS) grew. Run each
//! alone, so that its process starts fresh (the resident set does not shrink when apply frees
//! records, and memory freed by one test would be reused by the next):
//!
//! `cargo test -p raft-store --release --lib -- --ignored --nocapture --exact machine::measure::memory_per_active_hold`
//! (and `memory_per_ended_hold`, `memory_per_order`)

use std::time::{Duration, Instant};

use super::Machine;
use crate::command::{Command, Outcome, Proposal, Request, Selection};
use crate::ids::{shard_of, EventId, GroupId, UserId, VenueId};
use crate::limits::{HOLD_RETENTION_MS, HOLD_TTL_MS_MAX};
use crate::model::{Currency, EventSpec, GeoPoint, HoldView, Money, Row, Section, SectionKind, SectionPrice, Venue};

const ROWS: u32 = 200;
const SEATS_PER_ROW: u32 = 1_000;
const ORDERS: u32 = 100_000;
const ACTIVE_HOLDS: u32 = 9_000;
const SHARDS: u32 = 1;
const T0: i64 = 1_000_000_000;
const SAMPLES: usize = 15;

struct Shard {
    m: Machine,
    index: u64,
    now_ms: i64,
    event: EventId,
}

impl Shard {
    fn run(&mut self, command: Command) -> Outcome {
        self.index += 1;
        self.now_ms += 1;
        let proposal = Proposal::internal(command);
        self.m
            .apply(self.index, &Request::single(self.now_ms, proposal), &crate::cold::NoCold)
            .expect("no cold store")
            .outcomes
            .remove(0)
    }

    fn hold(&mut self, who: &str, seats: &[u32], ttl_ms: i64) -> HoldView {
        let ids = seats.iter().map(|k| format!("S-R{}-{}", k / SEATS_PER_ROW, k % SEATS_PER_ROW + 1)).collect();
        let user = UserId::parse(who).expect("a user id");
        let command = Command::Hold {
            event_id: self.event.clone(),
            user,
            selection: Selection::Seats(ids),
            ttl_ms,
            access: None,
            held_seats_max: None,
        };
        match self.run(command) {
            Outcome::Hold(view) => view,
            other => panic!("hold refused: {other:?}"),
        }
    }

    /// Moves past the retention window and lets the leader's `Expire` drop what is due.
    fn pass_retention(&mut self) {
        self.now_ms += HOLD_RETENTION_MS + 60_000;
        while self.m.has_due_deadlines(self.now_ms) {
            self.run(Command::Expire);
        }
    }
}

fn event_spec(event: &EventId) -> EventSpec {
    let rows = (0..ROWS).map(|r| Row { id: format!("R{r}"), seats: SEATS_PER_ROW }).collect();
    let section = Section { id: "S".into(), name: "Stands".into(), kind: SectionKind::Seated { rows } };
    EventSpec {
        event_id: event.clone(),
        name: "Final".into(),
        description: "The season's last match".into(),
        category: "sport".into(),
        performers: vec!["Home".into(), "Away".into()],
        venue: Venue {
            venue_id: VenueId::from_u64(1),
            name: "Stadium".into(),
            city: "Lisbon".into(),
            country: "PT".into(),
            location: GeoPoint { lat: 38.7, lon: -9.1 },
            sections: vec![section],
        },
        starts_at_ms: T0 + 30 * 86_400_000,
        on_sale_at_ms: T0,
        prices: vec![SectionPrice { section: "S".into(), price: Money::new(5_000, Currency::USD) }],
        per_user_limit: None,
        high_traffic: false,
    }
}

/// One order in five is of one seat, the others of two: 1.8 seats an order.
fn next_seats(i: u32, next: &mut u32) -> Vec<u32> {
    let n = if i % 5 == 4 { 1 } else { 2 };
    let seats = (*next..*next + n).collect();
    *next += n;
    seats
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let median = samples[samples.len() / 2];
    println!("{name}: min {:?}, median {median:?}, max {:?}", samples[0], samples[samples.len() - 1]);
}

#[test]
#[ignore = "a measurement: run alone, in release, with --nocapture"]
fn large_shard_clone_and_the_first_hold_after_it() {
    let event = EventId::from_u64(42);
    let group = GroupId::shard(shard_of(&event, SHARDS));
    let mut s = Shard { m: Machine::new(group, SHARDS), index: 0, now_ms: T0 - 60_000, event: event.clone() };
    assert!(matches!(s.run(Command::CreateEvent(event_spec(&event))), Outcome::Event(_)));
    s.now_ms = T0;
    // Fill the change feed to its cap, as on a busy shard: then a write after a snapshot both
    // appends to the feed and drops its oldest record, and copies the chunks at both ends.
    let mut cycling = 0;
    for i in 0..ORDERS / 2 {
        let mut next = 190_000 + cycling % 8_000;
        cycling += 2;
        let who = format!("p{i}");
        let hold = s.hold(&who, &next_seats(i, &mut next), 600_000);
        let user = UserId::parse(&who).expect("a user id");
        assert!(matches!(s.run(Command::ReleaseHold { hold_id: hold.hold_id, user }), Outcome::Hold(_)));
    }
    s.pass_retention();
    let mut next = 0;
    for i in 0..ORDERS {
        let who = format!("u{i}");
        let user = UserId::parse(&who).expect("a user id");
        let hold = s.hold(&who, &next_seats(i, &mut next), 600_000);
        let Outcome::Order(order) = s.run(Command::Checkout { hold_id: hold.hold_id, user }) else { panic!() };
        let paid = Command::PaymentResult { order_id: order.order_id, approved: true, reference: format!("pay-{i}") };
        assert!(matches!(s.run(paid), Outcome::Order(_)));
    }
    s.pass_retention();
    for i in 0..ACTIVE_HOLDS {
        s.hold(&format!("h{i}"), &[next + 2 * i, next + 2 * i + 1], HOLD_TTL_MS_MAX);
    }
    s.m.check_invariants().expect("the invariants hold");
    println!("state: 200,000 seats, {ORDERS} orders (180,000 seats sold), {ACTIVE_HOLDS} active holds of 2 seats");
    let mut free = next + 2 * ACTIVE_HOLDS;
    let (mut clones, mut first_holds, mut second_holds) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let snapshot = s.m.clone();
        clones.push(started.elapsed());
        for samples in [&mut first_holds, &mut second_holds] {
            let started = Instant::now();
            s.hold(&format!("x{free}"), &[free], 600_000);
            samples.push(started.elapsed());
            free += 1;
        }
        drop(snapshot);
    }
    summary("Machine::clone()", clones);
    summary("first hold after a clone", first_holds);
    summary("second hold after a clone", second_holds);
    let started = Instant::now();
    let bytes = s.m.encode().expect("encodes");
    println!("encode: {:?}, {} bytes", started.elapsed(), bytes.len());
}

/// Records each memory measurement builds: enough that the resident set's growth dwarfs the
/// allocator's slack. Each is a hold of two seats, so the event's 200,000 seats hold them all.
const MEASURED_RECORDS: u32 = 100_000;

/// The process's resident set (VmRSS), in bytes; Linux only.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kb * 1024
}

/// A shard with the event on sale and its change feed already at its cap, filled with records
/// like the ones a measurement adds (a hold of two seats and its release, over and over), so that
/// those replace change records of about their size rather than add to the feed. (Before ended
/// holds went to the cold store, the released holds of the filling stay in memory: part of the
/// baseline, not of what is measured.)
fn measured_shard() -> Shard {
    let event = EventId::from_u64(42);
    let group = GroupId::shard(shard_of(&event, SHARDS));
    let mut s = Shard { m: Machine::new(group, SHARDS), index: 0, now_ms: T0 - 60_000, event: event.clone() };
    assert!(matches!(s.run(Command::CreateEvent(event_spec(&event))), Outcome::Event(_)));
    s.now_ms = T0;
    for _ in 0..crate::limits::CHANGES_RETAINED_MAX / 2 + 1 {
        let hold = s.hold("filler", &[0, 1], HOLD_TTL_MS_MAX);
        let user = UserId::parse("filler").expect("a user id");
        assert!(matches!(s.run(Command::ReleaseHold { hold_id: hold.hold_id, user }), Outcome::Hold(_)));
    }
    s
}

/// Prints the resident set's growth per record while `build` adds `MEASURED_RECORDS` records.
fn measure(what: &str, mut s: Shard, build: impl Fn(&mut Shard, u32)) {
    let before = rss_bytes();
    for i in 0..MEASURED_RECORDS {
        build(&mut s, i);
    }
    let after = rss_bytes();
    let records = s.m.records();
    let per = (after.saturating_sub(before)) as f64 / f64::from(MEASURED_RECORDS);
    println!("{what}: ~{per:.0} bytes each ({MEASURED_RECORDS} built; in memory now: {records:?})");
    drop(s);
}

fn seats_of(i: u32) -> [u32; 2] {
    [2 * i, 2 * i + 1]
}

#[test]
#[ignore = "a measurement: run alone (a fresh process), in release, with --nocapture"]
fn memory_per_active_hold() {
    measure("an active hold of 2 seats (its user's counts included)", measured_shard(), |s, i| {
        s.hold(&format!("u{i}"), &seats_of(i), HOLD_TTL_MS_MAX);
    });
}

#[test]
#[ignore = "a measurement: run alone (a fresh process), in release, with --nocapture"]
fn memory_per_ended_hold() {
    // Each hold is released at once: its seats are free for the next, and what the shard keeps
    // of it is what an ended hold costs (its change records replace others at the feed's cap).
    measure("a released hold of 2 seats", measured_shard(), |s, i| {
        let who = format!("u{i}");
        let hold = s.hold(&who, &seats_of(1 + i % 1_000), HOLD_TTL_MS_MAX);
        let user = UserId::parse(&who).expect("a user id");
        assert!(matches!(s.run(Command::ReleaseHold { hold_id: hold.hold_id, user }), Outcome::Hold(_)));
    });
}

#[test]
#[ignore = "a measurement: run alone (a fresh process), in release, with --nocapture"]
fn memory_per_order() {
    // A confirmed order of 2 seats with its tickets, and whatever its checked-out hold leaves.
    measure("a confirmed order of 2 seats (and what its hold leaves)", measured_shard(), |s, i| {
        let who = format!("u{i}");
        let hold = s.hold(&who, &seats_of(i), HOLD_TTL_MS_MAX);
        let user = UserId::parse(&who).expect("a user id");
        let Outcome::Order(order) = s.run(Command::Checkout { hold_id: hold.hold_id, user }) else { panic!() };
        let paid = Command::PaymentResult { order_id: order.order_id, approved: true, reference: format!("pay-{i}") };
        assert!(matches!(s.run(paid), Outcome::Order(_)));
    });
}
