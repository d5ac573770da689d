//! Unit tests of the booking rules: one test per rule and per edge case, plus a seeded random run
//! that recounts the whole inventory after every command.

use rand::{Rng, SeedableRng};

use super::*;
use crate::command::{Actor, Answer, ChangeKind, ChangesPage, Selection};
use crate::ids::{shard_of, EventId, HoldId, OrderId, RequestId, UserId, VenueId};
use crate::limits::{
    HOLD_DROPS_PER_COMMAND_MAX, HOLD_DROPS_PER_EXPIRE_MAX, HOLD_RETENTION_MS, HOLD_SEATS_MAX, PAYMENT_TIMEOUT_MS,
};
use crate::model::*;

const SHARDS: u32 = 4;
const TTL_MS: i64 = 600_000;
const T0: i64 = 1_000_000;

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::USD)
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn venue() -> Venue {
    Venue {
        venue_id: VenueId::from_u64(1),
        name: "Arena".into(),
        city: "Lisbon".into(),
        country: "PT".into(),
        location: GeoPoint { lat: 38.7, lon: -9.1 },
        sections: vec![
            Section {
                id: "FLOOR".into(),
                name: "Floor".into(),
                kind: SectionKind::Seated {
                    rows: vec![Row { id: "A".into(), seats: 10 }, Row { id: "B".into(), seats: 10 }],
                },
            },
            Section { id: "LAWN".into(), name: "Lawn".into(), kind: SectionKind::General { capacity: 5 } },
        ],
    }
}

/// A shard machine with one event on sale from `T0` until `T0 + 1 day`.
struct Harness {
    m: Machine,
    /// The shard's cold store: remembered outcomes, the archive.
    cold: crate::cold::MemCold,
    index: u64,
    event: EventId,
    /// Recount the whole inventory after every command (quadratic: off for long runs).
    checking: bool,
    limit: Option<u32>,
    /// The held-seat cap `hold_seats` and `hold_general` carry.
    held_cap: Option<u32>,
}

impl Harness {
    fn new() -> Harness {
        Self::with_limit(None)
    }

    fn with_limit(per_user_limit: Option<u32>) -> Harness {
        let event = EventId::from_u64(42);
        let group = GroupId::shard(shard_of(&event, SHARDS));
        let mut h = Harness {
            m: Machine::new(group, SHARDS),
            cold: crate::cold::MemCold::default(),
            index: 0,
            event: event.clone(),
            checking: true,
            limit: per_user_limit,
            held_cap: None,
        };
        let spec = EventSpec {
            event_id: event,
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
            per_user_limit,
            high_traffic: false,
        };
        let out = h.run(T0 - 1_000, Command::CreateEvent(spec));
        assert!(matches!(out, Outcome::Event(_)), "{out:?}");
        h
    }

    fn run(&mut self, time_ms: i64, command: Command) -> Outcome {
        self.run_with(time_ms, None, 0, command)
    }

    /// Applies `command` as the next entry. Before, asks the machine which refusal it would
    /// predict without applying: a prediction must be exactly apply's answer, and with no
    /// per-user limit (the one rule left to apply), every refused hold must have been predicted.
    fn run_with(&mut self, time_ms: i64, request_id: Option<RequestId>, fingerprint: u64, command: Command) -> Outcome {
        self.index += 1;
        let proposal = Proposal { request_id, fingerprint, keyed: request_id.is_some(), command };
        let predicted = self.refusal(&proposal, time_ms, time_ms);
        let seen = request_id.is_some_and(|id| {
            let next = ctx::Ctx { index: self.index, now_ms: time_ms.max(self.m.last_time_ms()) };
            dedup::lookup(&self.cold, &crate::cold::ColdWrites::default(), next, &id).expect("readable").is_some()
        });
        let is_hold = matches!(proposal.command, Command::Hold { .. });
        let out = self.apply_entry(&Request::single(time_ms, proposal)).remove(0);
        if let Some(refusal) = predicted {
            assert_eq!(out, Outcome::Refused(refusal), "the predicted refusal differs from apply's answer");
        } else if let (true, false, None, Outcome::Refused(r)) = (is_hold, seen, self.limit, &out) {
            // Only a command sent to the wrong group is left to apply.
            assert_eq!(*r, Refusal::WrongGroup, "apply refused a hold that was predicted to succeed");
        }
        if self.checking {
            self.m.check_invariants().unwrap_or_else(|e| panic!("invariant broken after {out:?}: {e}"));
        }
        out
    }

    /// Applies `request` as the next entry (the caller numbered it) and stores its cold writes.
    fn apply_at(&mut self, index: u64, request: &Request) -> Vec<Outcome> {
        self.apply_counting(index, request).0
    }

    /// As [`Harness::apply_at`], with the holds and orders the entry's expiry pass ended.
    fn apply_counting(&mut self, index: u64, request: &Request) -> (Vec<Outcome>, (u32, u32)) {
        let applied = self.m.apply(index, request, &self.cold).expect("the cold store reads");
        self.cold.write(applied.writes);
        (applied.outcomes, applied.expired)
    }

    /// Applies `request` at the current index.
    fn apply_entry(&mut self, request: &Request) -> Vec<Outcome> {
        self.apply_at(self.index, request)
    }

    fn refusal(&self, proposal: &Proposal, now_ms: i64, passed_ms: i64) -> Option<Refusal> {
        self.m.refusal(proposal, now_ms, passed_ms, &self.cold).expect("the cold store reads")
    }

    fn q(&self, query: &Query, now_ms: i64) -> Answer {
        self.m.query(query, now_ms, &self.cold).expect("the cold store reads")
    }

    /// A hold for `who` of the harness's event, with the cap the harness carries.
    fn hold_command(&self, who: &str, selection: Selection) -> Command {
        Command::Hold {
            event_id: self.event.clone(),
            user: user(who),
            selection,
            ttl_ms: TTL_MS,
            access: None,
            held_seats_max: self.held_cap,
        }
    }

    fn hold_seats(&mut self, time_ms: i64, who: &str, seats: &[&str]) -> Outcome {
        let selection = Selection::Seats(seats.iter().map(|s| s.to_string()).collect());
        self.run(time_ms, self.hold_command(who, selection))
    }

    fn hold_general(&mut self, time_ms: i64, who: &str, quantity: u32) -> Outcome {
        let selection = Selection::General { section: "LAWN".into(), quantity };
        self.run(time_ms, self.hold_command(who, selection))
    }

    fn checkout(&mut self, time_ms: i64, who: &str, hold: &HoldId) -> Outcome {
        self.run(time_ms, Command::Checkout { hold_id: hold.clone(), user: user(who) })
    }

    fn pay(&mut self, time_ms: i64, order: &OrderId, approved: bool) -> Outcome {
        self.run(time_ms, Command::PaymentResult { order_id: order.clone(), approved, reference: "ref".into() })
    }

    fn cancel(&mut self, time_ms: i64, who: &str, admin: bool, order: &OrderId) -> Outcome {
        self.run(time_ms, Command::CancelOrder { order_id: order.clone(), actor: Actor { user: user(who), admin } })
    }

    /// Holds, checks out and pays: a confirmed order.
    fn buy(&mut self, time_ms: i64, who: &str, seats: &[&str]) -> OrderView {
        let hold = held(self.hold_seats(time_ms, who, seats));
        let order = ordered(self.checkout(time_ms, who, &hold.hold_id));
        ordered(self.pay(time_ms, &order.order_id, true))
    }

    fn seat_status(&self, now_ms: i64, seat: &str) -> SeatStatus {
        let Answer::Seats(Some(map)) = self.q(&Query::Seats(self.event.clone()), now_ms) else { panic!("no seat map") };
        map.seats.iter().find(|s| s.id == seat).expect("seat exists").status
    }

    fn section(&self, now_ms: i64, id: &str) -> SectionView {
        let Answer::Event(Some(view)) = self.q(&Query::Event(self.event.clone()), now_ms) else { panic!("no event") };
        view.sections.into_iter().find(|s| s.section == id).expect("section exists")
    }
}

/// Applies `request` to a machine without a cold store (commands that remember or archive
/// nothing).
fn apply_bare(m: &mut Machine, index: u64, request: &Request) -> Vec<Outcome> {
    let applied = m.apply(index, request, &crate::cold::NoCold).expect("no cold store to fail");
    assert!(applied.writes.is_empty(), "this command wrote to the cold store");
    applied.outcomes
}

fn query_bare(m: &Machine, query: &Query, now_ms: i64) -> Answer {
    m.query(query, now_ms, &crate::cold::NoCold).expect("no cold store to fail")
}

/// A log entry at time 0 with one proposal without a request id.
fn one(command: Command) -> Request {
    Request::single(0, Proposal::internal(command))
}

fn held(out: Outcome) -> HoldView {
    match out {
        Outcome::Hold(h) => h,
        other => panic!("expected a hold, got {other:?}"),
    }
}

fn ordered(out: Outcome) -> OrderView {
    match out {
        Outcome::Order(o) => o,
        other => panic!("expected an order, got {other:?}"),
    }
}

fn refusal(out: Outcome) -> Refusal {
    match out {
        Outcome::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ---- Rule 1: deterministic apply, time from the log -------------------------------------------

#[test]
fn same_log_gives_same_state_and_same_bytes() {
    let run = || {
        let mut h = Harness::new();
        let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1", "FLOOR-A-2"]));
        h.hold_general(T0 + 5, "u2", 3);
        let order = ordered(h.checkout(T0 + 10, "u1", &hold.hold_id));
        h.pay(T0 + 20, &order.order_id, true);
        h.run(T0 + TTL_MS + 30, Command::Expire);
        h.m
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert_eq!(a.encode().unwrap(), b.encode().unwrap());
}

#[test]
fn time_never_runs_backwards_across_leaders() {
    let mut h = Harness::new();
    let first = held(h.hold_seats(T0 + 10_000, "u1", &["FLOOR-A-1"]));
    // A new leader with a slow clock stamps an earlier time: apply keeps the later one.
    let second = held(h.hold_seats(T0 + 5_000, "u1", &["FLOOR-A-2"]));
    assert_eq!(second.created_at_ms, T0 + 10_000);
    assert_eq!(second.expires_at_ms, first.expires_at_ms);
    assert_eq!(h.m.last_time_ms(), T0 + 10_000);
}

#[test]
fn snapshot_round_trip_preserves_everything() {
    let mut h = Harness::new();
    h.buy(T0, "u1", &["FLOOR-A-1"]);
    h.hold_general(T0, "u2", 2);
    let bytes = h.m.encode().unwrap();
    let restored = Machine::decode(&bytes).unwrap();
    assert_eq!(restored, h.m);
    restored.check_invariants().unwrap();
}

#[test]
fn a_batched_entry_applies_its_proposals_in_order_at_one_time() {
    let mut h = Harness::new();
    let hold = |seats: &[&str], who: &str, id: u8| Proposal {
        request_id: Some(RequestId([id; 16])),
        fingerprint: 1,
        keyed: true,
        command: Command::Hold {
            event_id: h.event.clone(),
            user: user(who),
            selection: Selection::Seats(seats.iter().map(|s| s.to_string()).collect()),
            ttl_ms: TTL_MS,
            access: None,
            held_seats_max: None,
        },
    };
    let batch = Request {
        time_ms: T0,
        proposals: vec![
            hold(&["FLOOR-A-1"], "u1", 1),
            hold(&["FLOOR-A-1", "FLOOR-A-2"], "u2", 2),
            hold(&["FLOOR-A-1"], "u1", 1),
        ],
    };
    h.index += 1;
    let outs = h.apply_entry(&batch);
    assert_eq!(outs.len(), 3);
    let first = held(outs[0].clone());
    assert_eq!(refusal(outs[1].clone()), Refusal::SeatsUnavailable { seats: vec!["FLOOR-A-1".into()] });
    assert_eq!(outs[2], Outcome::Hold(first.clone()), "a retry inside the same entry gets the first outcome");
    assert_eq!(first.created_at_ms, T0);
    h.m.check_invariants().unwrap();
}

// ---- Rule 2: all-or-nothing holds ------------------------------------------------------------

#[test]
fn overlapping_hold_takes_nothing_and_names_the_taken_seats() {
    let mut h = Harness::new();
    held(h.hold_seats(T0, "u1", &["FLOOR-A-2", "FLOOR-A-3"]));
    let r = refusal(h.hold_seats(T0 + 1, "u2", &["FLOOR-A-1", "FLOOR-A-2", "FLOOR-A-3", "FLOOR-A-4"]));
    assert_eq!(r, Refusal::SeatsUnavailable { seats: vec!["FLOOR-A-2".into(), "FLOOR-A-3".into()] });
    // Nothing of the refused hold was taken.
    assert_eq!(h.seat_status(T0 + 1, "FLOOR-A-1"), SeatStatus::Available);
    assert_eq!(h.seat_status(T0 + 1, "FLOOR-A-4"), SeatStatus::Available);
    assert_eq!(h.section(T0 + 1, "FLOOR").held, 2);
}

#[test]
fn a_refusal_is_predicted_without_applying_only_when_it_is_certain() {
    let mut h = Harness::with_limit(Some(3));
    let first = held(h.hold_seats(T0, "u1", &["FLOOR-A-1", "FLOOR-A-2"]));
    held(h.hold_general(T0, "u1", 1));
    held(h.hold_general(T0, "u3", 3));
    let event = h.event.clone();
    let ask = |who: &str, selection: Selection, id: Option<RequestId>| Proposal {
        request_id: id,
        fingerprint: 1,
        keyed: id.is_some(),
        command: Command::Hold {
            event_id: event.clone(),
            user: user(who),
            selection,
            ttl_ms: TTL_MS,
            access: None,
            held_seats_max: None,
        },
    };
    let seats = |ids: &[&str]| Selection::Seats(ids.iter().map(|s| s.to_string()).collect());
    let lawn = |quantity| Selection::General { section: "LAWN".into(), quantity };
    // Taken seats and a short section: certain, and named as apply names them.
    let taken = ask("u2", seats(&["FLOOR-A-2", "FLOOR-A-3"]), None);
    assert_eq!(h.refusal(&taken, T0 + 1, T0 + 1), Some(Refusal::SeatsUnavailable { seats: vec!["FLOOR-A-2".into()] }));
    assert_eq!(
        h.refusal(&ask("u2", lawn(2), None), T0 + 1, T0 + 1),
        Some(Refusal::SoldOut { section: "LAWN".into(), available: 1 })
    );
    // Free seats: only apply decides.
    assert_eq!(h.refusal(&ask("u2", seats(&["FLOOR-A-3"]), None), T0 + 1, T0 + 1), None);
    // Past their expiry the seats count as free, as apply expires them first.
    assert_eq!(h.refusal(&taken, T0 + TTL_MS, T0 + TTL_MS), None);
    // A refusal is given only if a read (judging expiry at an earlier time every clock has
    // passed) would agree: here a read still shows held, the leader's clock not.
    assert_eq!(h.refusal(&taken, T0 + TTL_MS, T0 + TTL_MS - 500), None);
    let after = ask("u2", seats(&["FLOOR-A-2", "FLOOR-B-1"]), None);
    held(h.hold_seats(T0 + 10, "u4", &["FLOOR-B-1"]));
    assert_eq!(
        h.refusal(&after, T0 + TTL_MS, T0 + TTL_MS - 500),
        None,
        "B-1 is taken at both times, A-2 only as a read sees it"
    );
    assert_eq!(
        h.refusal(&after, T0 + TTL_MS - 600, T0 + TTL_MS - 1_100),
        Some(Refusal::SeatsUnavailable { seats: vec!["FLOOR-A-2".into(), "FLOOR-B-1".into()] }),
        "before the expiry both times agree"
    );
    assert_eq!(h.refusal(&ask("u2", lawn(2), None), T0 + TTL_MS, T0 + TTL_MS), None);
    // u1 is at the limit (3 of 3) and asks for taken seats: apply would say `limit_exceeded`,
    // but once u1's holds lapse it would not, so the limit is left to apply.
    assert_eq!(h.refusal(&ask("u1", seats(&["FLOOR-A-1"]), None), T0 + 1, T0 + 1), None);
    // A request the machine has seen gets its remembered outcome from apply, never a prediction.
    let id = RequestId([9; 16]);
    h.run_with(T0 + 2, Some(id), 1, Command::Expire);
    assert_eq!(h.refusal(&ask("u2", seats(&["FLOOR-A-1"]), Some(id)), T0 + 3, T0 + 3), None);
    assert!(h.refusal(&ask("u2", seats(&["FLOOR-A-1"]), Some(RequestId([8; 16]))), T0 + 3, T0 + 3).is_some());
    // Other commands are never predicted.
    let release = Proposal::internal(Command::ReleaseHold { hold_id: first.hold_id, user: user("u2") });
    assert_eq!(h.refusal(&release, T0 + 3, T0 + 3), None);
}

#[test]
fn general_admission_is_sold_by_quantity_up_to_capacity() {
    let mut h = Harness::new();
    let hold = held(h.hold_general(T0, "u1", 3));
    assert_eq!((hold.section.as_deref(), hold.quantity, hold.total), (Some("LAWN"), Some(3), usd(6_000)));
    let r = refusal(h.hold_general(T0, "u2", 3));
    assert_eq!(r, Refusal::SoldOut { section: "LAWN".into(), available: 2 });
    held(h.hold_general(T0, "u2", 2));
    assert_eq!(h.section(T0, "LAWN").available, 0);
}

#[test]
fn holds_are_priced_when_taken() {
    let mut h = Harness::new();
    let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1", "FLOOR-B-1"]));
    assert_eq!(hold.total, usd(10_000));
    let patch = EventPatch {
        prices: Some(vec![
            SectionPrice { section: "FLOOR".into(), price: usd(9_000) },
            SectionPrice { section: "LAWN".into(), price: usd(2_000) },
        ]),
        ..EventPatch::default()
    };
    assert!(matches!(h.run(T0 + 1, Command::UpdateEvent { event_id: h.event.clone(), patch }), Outcome::Event(_)));
    let order = ordered(h.checkout(T0 + 2, "u1", &hold.hold_id));
    assert_eq!(order.total, usd(10_000), "the price at hold time is kept");
}

#[test]
fn unknown_seats_sections_and_bad_selections_are_refused() {
    let mut h = Harness::new();
    for seat in ["FLOOR-C-1", "FLOOR-A-11", "FLOOR-A-0", "NOPE-A-1", "LAWN-A-1", "FLOOR-A", "FLOOR-A-01x"] {
        assert!(matches!(refusal(h.hold_seats(T0, "u1", &[seat])), Refusal::NotFound { .. }), "{seat}");
    }
    assert!(matches!(refusal(h.hold_seats(T0, "u1", &["FLOOR-A-1", "FLOOR-A-1"])), Refusal::Invalid { .. }));
    assert!(matches!(refusal(h.hold_seats(T0, "u1", &[])), Refusal::Invalid { .. }));
    let many: Vec<String> =
        (1..=10).flat_map(|n| [format!("FLOOR-A-{n}"), format!("FLOOR-B-{n}")]).chain(["LAWN-A-1".into()]).collect();
    assert!(many.len() > HOLD_SEATS_MAX);
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(refusal(h.hold_seats(T0, "u1", &many)), Refusal::Invalid { .. }));
    assert!(matches!(refusal(h.hold_general(T0, "u1", 0)), Refusal::Invalid { .. }));
    let seated_by_quantity = Command::Hold {
        event_id: h.event.clone(),
        user: user("u1"),
        selection: Selection::General { section: "FLOOR".into(), quantity: 1 },
        ttl_ms: TTL_MS,
        access: None,
        held_seats_max: None,
    };
    assert!(matches!(refusal(h.run(T0, seated_by_quantity)), Refusal::Invalid { .. }));
    let unknown_event = Command::Hold {
        event_id: EventId::from_u64(43),
        user: user("u1"),
        selection: Selection::Seats(vec!["FLOOR-A-1".into()]),
        ttl_ms: TTL_MS,
        access: None,
        held_seats_max: None,
    };
    // Either not found here or not this shard's: never a hold.
    assert!(matches!(h.run(T0, unknown_event), Outcome::Refused(Refusal::NotFound { .. } | Refusal::WrongGroup)));
    assert_eq!(h.section(T0, "FLOOR").held, 0);
}

// ---- Rule 3: expiry without a cron job -------------------------------------------------------

#[test]
fn hold_is_usable_until_just_before_expiry_and_expired_exactly_at_it() {
    let mut h = Harness::new();
    let a = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let b = held(h.hold_seats(T0, "u1", &["FLOOR-A-2"]));
    assert_eq!(a.expires_at_ms, T0 + TTL_MS);
    assert!(matches!(h.checkout(T0 + TTL_MS - 1, "u1", &a.hold_id), Outcome::Order(_)));
    assert_eq!(refusal(h.checkout(T0 + TTL_MS, "u1", &b.hold_id)), Refusal::HoldExpired);
}

#[test]
fn expired_seats_are_free_to_any_command_and_to_reads_before_compaction() {
    let mut h = Harness::new();
    held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    held(h.hold_general(T0, "u1", 5));
    let later = T0 + TTL_MS;
    // Reads at the expiry time already show the seats free, before any command ran.
    assert_eq!(h.seat_status(later - 1, "FLOOR-A-1"), SeatStatus::Held);
    assert_eq!(h.seat_status(later, "FLOOR-A-1"), SeatStatus::Available);
    assert_eq!(h.section(later, "LAWN").available, 5);
    // A hold by someone else at that time succeeds: the old one expires first.
    held(h.hold_seats(later, "u2", &["FLOOR-A-1"]));
    held(h.hold_general(later, "u2", 5));
}

#[test]
fn a_read_judges_expiry_no_earlier_than_the_last_command_applied() {
    let mut h = Harness::new();
    held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let due = T0 + TTL_MS;
    // A reader whose clock (less the offset) is behind still sees the hold until a command
    // stamped at or after its expiry has been applied; from then on every read shows it expired,
    // whatever time the reader gives.
    assert_eq!(h.seat_status(due - 1, "FLOOR-A-1"), SeatStatus::Held);
    held(h.hold_seats(due, "u2", &["FLOOR-B-1"]));
    assert_eq!(h.seat_status(due - 1, "FLOOR-A-1"), SeatStatus::Available);
    assert_eq!(h.seat_status(0, "FLOOR-A-1"), SeatStatus::Available);
}

#[test]
fn periodic_expire_compacts_due_holds_and_records_the_change() {
    let mut h = Harness::new();
    let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1", "FLOOR-A-2"]));
    held(h.hold_seats(T0 + 1, "u1", &["FLOOR-B-1"]));
    let due = T0 + TTL_MS;
    assert!(!h.m.has_due_deadlines(due - 1));
    assert!(h.m.has_due_deadlines(due));
    assert_eq!(h.run(due, Command::Expire), Outcome::Expired { holds: 1, orders: 0 });
    let Answer::Hold(Some(view)) = h.q(&Query::Hold { hold_id: hold.hold_id, user: user("u1") }, due) else { panic!() };
    assert_eq!(view.status, HoldStatus::Expired);
    // The records from before the hold's lifetime (longer than the feed keeps) have left.
    let after_index = h.index - 1;
    let Answer::Changes(ChangesPage::Records { changes, .. }) = h.q(&Query::Changes { after_index, limit: 100 }, 0)
    else {
        panic!()
    };
    let freed = changes
        .iter()
        .find(|c| matches!(&c.kind, ChangeKind::Seats { status: SeatStatus::Available, .. }))
        .expect("a free record");
    assert_eq!(freed.index, h.index, "recorded at the index of the expire command");
    assert_eq!(h.run(due, Command::Expire), Outcome::Expired { holds: 0, orders: 0 });
    assert_eq!(h.run(due + 1, Command::Expire), Outcome::Expired { holds: 1, orders: 0 });
}

#[test]
fn any_entry_reports_the_holds_its_expiry_pass_ended() {
    let mut h = Harness::new();
    held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    held(h.hold_general(T0, "u1", 2));
    let due = T0 + TTL_MS;
    // A hold, not an `Expire`, is the first entry past the due time: its apply ends both, and
    // says so (the node counts expiries from this, whichever command's entry ended them).
    h.index += 1;
    let request =
        Request::single(due, Proposal::internal(h.hold_command("u2", Selection::Seats(vec!["FLOOR-B-1".into()]))));
    let (outcomes, expired) = h.apply_counting(h.index, &request);
    assert_eq!(expired, (2, 0));
    held(outcomes.into_iter().next().expect("one outcome"));
    assert_eq!(h.run(due, Command::Expire), Outcome::Expired { holds: 0, orders: 0 }, "nothing left to expire");
}

#[test]
fn unpaid_orders_give_their_seats_back_after_the_payment_timeout() {
    let mut h = Harness::new();
    let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let order = ordered(h.checkout(T0, "u1", &hold.hold_id));
    assert_eq!(order.status, OrderStatus::PendingPayment);
    assert_eq!(h.seat_status(T0 + 1, "FLOOR-A-1"), SeatStatus::Held, "held while payment is pending");
    let due = T0 + PAYMENT_TIMEOUT_MS;
    assert_eq!(h.run(due, Command::Expire), Outcome::Expired { holds: 0, orders: 1 });
    assert_eq!(h.seat_status(due, "FLOOR-A-1"), SeatStatus::Available);
    // A late approval leaves the order failed and marks it to be refunded (the api refunds it);
    // a repeat of it, or a late decline, changes nothing more.
    let late = ordered(h.pay(due + 1, &order.order_id, true));
    assert_eq!(
        (late.status, late.refunded, late.payment_reference.as_deref()),
        (OrderStatus::PaymentFailed, true, Some("ref"))
    );
    assert_eq!(h.seat_status(due + 1, "FLOOR-A-1"), SeatStatus::Available);
    assert_eq!(ordered(h.pay(due + 2, &order.order_id, true)), late);
    assert_eq!(ordered(h.pay(due + 3, &order.order_id, false)), late);
}

#[test]
fn a_decline_then_an_approval_refunds_the_approval() {
    let mut h = Harness::new();
    let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let order = ordered(h.checkout(T0, "u1", &hold.hold_id));
    let failed = ordered(h.pay(T0 + 1, &order.order_id, false));
    assert_eq!((failed.status, failed.refunded), (OrderStatus::PaymentFailed, false));
    let late = ordered(h.pay(T0 + 2, &order.order_id, true));
    assert_eq!((late.status, late.refunded), (OrderStatus::PaymentFailed, true));
    // And an approval then a decline keeps the confirmed order.
    let hold = held(h.hold_seats(T0, "u1", &["FLOOR-A-2"]));
    let order = ordered(h.checkout(T0, "u1", &hold.hold_id));
    assert_eq!(ordered(h.pay(T0 + 1, &order.order_id, true)).status, OrderStatus::Confirmed);
    let after = ordered(h.pay(T0 + 2, &order.order_id, false));
    assert_eq!((after.status, after.refunded), (OrderStatus::Confirmed, false));
}

// ---- Rule 5: limits are state ----------------------------------------------------------------

#[test]
fn per_user_limit_counts_holds_and_orders_and_frees_on_release_and_cancel() {
    let mut h = Harness::with_limit(Some(4));
    let order = h.buy(T0, "u1", &["FLOOR-A-1", "FLOOR-A-2"]);
    let hold = held(h.hold_general(T0, "u1", 1));
    let r = refusal(h.hold_seats(T0, "u1", &["FLOOR-B-1", "FLOOR-B-2"]));
    assert_eq!(r, Refusal::LimitExceeded { limit: 4, current: 3, requested: 2 });
    held(h.hold_seats(T0, "u2", &["FLOOR-B-1", "FLOOR-B-2", "FLOOR-B-3", "FLOOR-B-4"]));
    // Releasing the hold and cancelling the order give the allowance back.
    h.run(T0, Command::ReleaseHold { hold_id: hold.hold_id, user: user("u1") });
    held(h.hold_seats(T0, "u1", &["FLOOR-A-5", "FLOOR-A-6"]));
    assert!(matches!(refusal(h.hold_general(T0, "u1", 1)), Refusal::LimitExceeded { .. }));
    ordered(h.cancel(T0, "u1", false, &order.order_id));
    held(h.hold_general(T0, "u1", 2));
}

#[test]
fn expired_holds_do_not_count_against_the_limit() {
    let mut h = Harness::with_limit(Some(2));
    held(h.hold_seats(T0, "u1", &["FLOOR-A-1", "FLOOR-A-2"]));
    assert!(matches!(refusal(h.hold_seats(T0 + 1, "u1", &["FLOOR-A-3"])), Refusal::LimitExceeded { .. }));
    held(h.hold_seats(T0 + TTL_MS, "u1", &["FLOOR-A-3", "FLOOR-A-4"]));
}

#[test]
fn holds_outside_the_sale_window_are_refused() {
    let mut h = Harness::new();
    assert!(matches!(refusal(h.hold_seats(T0 - 1, "u1", &["FLOOR-A-1"])), Refusal::NotOnSale { .. }));
    held(h.hold_seats(T0, "u1", &["FLOOR-A-1"]));
    let start = T0 + 86_400_000;
    assert!(matches!(refusal(h.hold_seats(start, "u1", &["FLOOR-A-2"])), Refusal::NotOnSale { .. }));
}

#[test]
fn high_traffic_holds_need_an_unexpired_pass() {
    let mut h = Harness::new();
    let patch = EventPatch { high_traffic: Some(true), ..EventPatch::default() };
    h.run(T0, Command::UpdateEvent { event_id: h.event.clone(), patch });
    assert_eq!(refusal(h.hold_seats(T0, "u1", &["FLOOR-A-1"])), Refusal::QueueRequired);
    let hold = |h: &Harness, expires_at_ms| Command::Hold {
        event_id: h.event.clone(),
        user: user("u1"),
        selection: Selection::Seats(vec!["FLOOR-A-1".into()]),
        ttl_ms: TTL_MS,
        access: Some(crate::command::AccessPass { pass_id: [1; 16], expires_at_ms }),
        held_seats_max: None,
    };
    assert_eq!(refusal(h.run(T0 + 10, hold(&h, T0 + 10))), Refusal::QueueRequired, "expired pass");
    held(h.run(T0 + 10, hold(&h, T0 + 11)));
}

#[test]
fn a_waiting_room_pass_buys_one_hold_only() {
    let mut h = Harness::new();
    let patch = EventPatch { high_traffic: Some(true), ..EventPatch::default() };
    h.run(T0, Command::UpdateEvent { event_id: h.event.clone(), patch });
    let with_pass = |h: &Harness, seat: &str, pass: u8| Command::Hold {
        event_id: h.event.clone(),
        user: user("u1"),
        selection: Selection::Seats(vec![seat.into()]),
        ttl_ms: TTL_MS,
        access: Some(crate::command::AccessPass { pass_id: [pass; 16], expires_at_ms: T0 + 60_000 }),
        held_seats_max: None,
    };
    // A refused hold does not use the pass up.
    let pass_u2 = Command::Hold {
        event_id: h.event.clone(),
        user: user("u2"),
        selection: Selection::Seats(vec!["FLOOR-A-1".into()]),
        ttl_ms: TTL_MS,
        access: Some(crate::command::AccessPass { pass_id: [9; 16], expires_at_ms: T0 + 60_000 }),
        held_seats_max: None,
    };
    held(h.run(T0, pass_u2));
    assert!(matches!(refusal(h.run(T0, with_pass(&h, "FLOOR-A-1", 7))), Refusal::SeatsUnavailable { .. }));
    held(h.run(T0, with_pass(&h, "FLOOR-A-2", 7)));
    assert_eq!(refusal(h.run(T0, with_pass(&h, "FLOOR-A-3", 7))), Refusal::AccessUsed, "shared or reused");
    held(h.run(T0, with_pass(&h, "FLOOR-A-3", 8)));
}

#[test]
fn queue_blocks_are_leased_and_the_watermark_admits_in_order() {
    let mut h = Harness::new();
    let lease = |h: &Harness, size| Command::LeaseQueueBlock { event_id: h.event.clone(), size, unused: None };
    assert!(matches!(refusal(h.run(T0 - 100, lease(&h, 10))), Refusal::Invalid { .. }), "no waiting room yet");
    let patch = EventPatch { high_traffic: Some(true), on_sale_at_ms: Some(T0 + 1_000), ..EventPatch::default() };
    h.run(T0, Command::UpdateEvent { event_id: h.event.clone(), patch });
    let Outcome::QueueBlock(early) = h.run(T0, lease(&h, 100)) else { panic!() };
    assert_eq!((early.start, early.end, early.early), (0, 100, true));
    let Outcome::QueueBlock(late) = h.run(T0 + 1_000, lease(&h, 100)) else { panic!() };
    assert_eq!((late.start, late.end, late.early), (100, 200, false));
    let Outcome::Queue(view) = h.run(T0 + 2_000, Command::AdvanceQueue { event_id: h.event.clone(), to: 150 }) else {
        panic!()
    };
    assert_eq!((view.queue.watermark, view.queue.early_bound, view.sold_out), (150, Some(100), false));
    let Answer::Admission(at) = h.q(&Query::QueueAdmission { event_id: h.event.clone(), position: 149 }, T0) else {
        panic!()
    };
    assert_eq!(at, Some(T0 + 2_000));
    let Answer::Admission(None) = h.q(&Query::QueueAdmission { event_id: h.event.clone(), position: 150 }, T0) else {
        panic!()
    };
}

#[test]
fn nothing_is_admitted_before_the_sale_opens_and_the_controller_sees_every_open_queue() {
    let mut h = Harness::new();
    let advance = |h: &Harness, to| Command::AdvanceQueue { event_id: h.event.clone(), to };
    assert!(matches!(refusal(h.run(T0, advance(&h, 1))), Refusal::Invalid { .. }), "no waiting room");
    let Answer::Queues(queues) = h.q(&Query::Queues, T0) else { panic!() };
    assert!(queues.is_empty());
    let patch = EventPatch { high_traffic: Some(true), on_sale_at_ms: Some(T0 + 1_000), ..EventPatch::default() };
    h.run(T0, Command::UpdateEvent { event_id: h.event.clone(), patch });
    h.run(T0, Command::LeaseQueueBlock { event_id: h.event.clone(), size: 50, unused: None });
    let Outcome::Queue(view) = h.run(T0 + 10, advance(&h, 50)) else { panic!() };
    assert_eq!((view.queue.watermark, view.queue.early_bound), (0, None), "before the opening");
    // The first advance at the opening closes the early group, even with no lease since.
    let Outcome::Queue(view) = h.run(T0 + 1_000, advance(&h, 20)) else { panic!() };
    assert_eq!((view.queue.watermark, view.queue.early_bound), (20, Some(50)));
    held(h.run(
        T0 + 1_000,
        Command::Hold {
            event_id: h.event.clone(),
            user: user("u1"),
            selection: Selection::Seats(vec!["FLOOR-A-1".into()]),
            ttl_ms: TTL_MS,
            access: Some(crate::command::AccessPass {
                pass_id: [1; 16],
                expires_at_ms: T0 + 1_000 + crate::PASS_TTL_MS,
            }),
            held_seats_max: None,
        },
    ));
    let Answer::Queues(queues) = h.q(&Query::Queues, T0 + 1_001) else { panic!() };
    assert_eq!(queues.len(), 1);
    let q = &queues[0];
    assert_eq!((q.queue.admitted_recently, q.queue.redeemed_recently, q.held), (20, 1, 1));
}

// ---- Randomized: I1 and the counters under any interleaving ----------------------------------

#[test]
fn random_commands_never_oversell_and_keep_counters_exact() {
    // With a per-user limit, and without one (then every refused hold must have been predicted,
    // those past the held-seat cap of the last seeds too).
    let mut over_cap = 0;
    for seed in 0..40u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut h = Harness::with_limit(if seed < 20 { Some(6) } else { None });
        h.held_cap = (seed >= 30).then_some(4);
        let mut holds: Vec<(String, HoldId)> = Vec::new();
        let mut orders: Vec<(String, OrderId)> = Vec::new();
        let mut now = T0;
        for _ in 0..400 {
            now += rng.gen_range(0..120_000);
            let who = format!("u{}", rng.gen_range(0..5));
            match rng.gen_range(0..10) {
                0..=3 => {
                    let out = if rng.gen_bool(0.7) {
                        let n = rng.gen_range(1..=3);
                        let seats: Vec<String> = (0..n)
                            .map(|_| format!("FLOOR-{}-{}", ["A", "B"][rng.gen_range(0..2)], rng.gen_range(1..=10)))
                            .collect();
                        let seats: Vec<&str> = seats.iter().map(String::as_str).collect();
                        h.hold_seats(now, &who, &seats)
                    } else {
                        h.hold_general(now, &who, rng.gen_range(1..=3))
                    };
                    match out {
                        Outcome::Hold(hold) => holds.push((who, hold.hold_id)),
                        Outcome::Refused(Refusal::HeldSeatsExceeded { .. }) => over_cap += 1,
                        _ => {}
                    }
                }
                4 if !holds.is_empty() => {
                    let (who, id) = holds[rng.gen_range(0..holds.len())].clone();
                    h.run(now, Command::ReleaseHold { hold_id: id, user: user(&who) });
                }
                5 | 6 if !holds.is_empty() => {
                    let (who, id) = holds[rng.gen_range(0..holds.len())].clone();
                    if let Outcome::Order(o) = h.checkout(now, &who, &id) {
                        orders.push((who, o.order_id));
                    }
                }
                7 if !orders.is_empty() => {
                    let (_, id) = orders[rng.gen_range(0..orders.len())].clone();
                    h.pay(now, &id, rng.gen_bool(0.8));
                }
                8 if !orders.is_empty() => {
                    let (who, id) = orders[rng.gen_range(0..orders.len())].clone();
                    h.cancel(now, &who, false, &id);
                }
                _ => {
                    h.run(now, Command::Expire);
                }
            }
        }
    }
    assert!(over_cap > 0, "the held-seat cap never refused a hold");
}

mod abuse;
mod lifecycle;
mod pricing;
mod retention;
mod tickets;
mod webhooks;
