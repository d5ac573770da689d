//! One event's inventory: seat ids, what a selection takes, its price, and the four moves of a
//! seat or a general-admission quantity (free → held → sold, held → free, sold → free). Plain
//! functions on the records of [`super::state`]; they know nothing of holds' or orders' rules.

use std::collections::BTreeSet;

use imbl::Vector;

use super::state::{EventState, SeatRef, SectionInv, Slot, Taken, TicketRec};
use crate::command::{ChangeKind, Refusal, Selection};
use crate::ids::UserId;
use crate::limits::{HOLD_QUANTITY_MAX, HOLD_SEATS_MAX};
use crate::model::{EventSpec, Money, SeatStatus, SectionKind, TicketStatus};

/// A new event's inventory: every seat free, nothing held or sold.
pub(super) fn section_inventory(spec: &EventSpec) -> Vector<SectionInv> {
    spec.venue
        .sections
        .iter()
        .map(|s| SectionInv {
            rows: match &s.kind {
                SectionKind::Seated { rows } => rows
                    .iter()
                    .map(|r| std::iter::repeat_n(Slot::Free, r.seats as usize).collect::<Vector<_>>())
                    .collect(),
                SectionKind::General { .. } => Vector::new(),
            },
            capacity: s.capacity(),
            held: 0,
            sold: 0,
        })
        .collect()
}

pub(super) fn seat_id(spec: &EventSpec, seat: SeatRef) -> String {
    let section = &spec.venue.sections[seat.section as usize];
    let SectionKind::Seated { rows } = &section.kind else { unreachable!("a seat is in a seated section") };
    format!("{}-{}-{}", section.id, rows[seat.row as usize].id, seat.number)
}

fn parse_seat(spec: &EventSpec, id: &str) -> Option<SeatRef> {
    let mut parts = id.splitn(3, '-');
    let (section_id, row_id, number) = (parts.next()?, parts.next()?, parts.next()?);
    let (section, found) = spec.venue.section(section_id)?;
    let SectionKind::Seated { rows } = &found.kind else { return None };
    let row = rows.iter().position(|r| r.id == row_id)?;
    if number.is_empty() || number.len() > 4 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u16 = number.parse().ok()?;
    if number == 0 || u32::from(number) > rows[row].seats {
        return None;
    }
    Some(SeatRef { section: section as u16, row: row as u16, number })
}

pub(super) fn resolve_selection(spec: &EventSpec, selection: &Selection) -> Result<Taken, Refusal> {
    match selection {
        Selection::Seats(ids) => {
            if ids.is_empty() || ids.len() > HOLD_SEATS_MAX {
                return Err(Refusal::Invalid { detail: format!("a hold has 1 to {HOLD_SEATS_MAX} seats") });
            }
            let mut seen = BTreeSet::new();
            let mut seats = Vec::with_capacity(ids.len());
            for id in ids {
                let seat = parse_seat(spec, id).ok_or_else(|| Refusal::not_found(format!("seat {id}")))?;
                if !seen.insert(seat) {
                    return Err(Refusal::Invalid { detail: format!("seat {id} is listed twice") });
                }
                seats.push(seat);
            }
            Ok(Taken::Seats(seats))
        }
        Selection::General { section, quantity } => {
            let (index, found) =
                spec.venue.section(section).ok_or_else(|| Refusal::not_found(format!("section {section}")))?;
            if !matches!(found.kind, SectionKind::General { .. }) {
                return Err(Refusal::Invalid { detail: format!("section {section} is seated: hold seats by id") });
            }
            if *quantity == 0 || *quantity > HOLD_QUANTITY_MAX {
                return Err(Refusal::Invalid { detail: format!("quantity is 1 to {HOLD_QUANTITY_MAX}") });
            }
            Ok(Taken::General { section: index as u16, quantity: *quantity })
        }
    }
}

pub(super) fn price_of(spec: &EventSpec, taken: &Taken) -> Money {
    let currency = spec.currency();
    let section_price = |i: u16| spec.price_of(&spec.venue.sections[i as usize].id).unwrap_or(Money::zero(currency));
    match taken {
        Taken::Seats(seats) => seats.iter().fold(Money::zero(currency), |sum, s| sum.plus(section_price(s.section))),
        Taken::General { section, quantity } => section_price(*section).times(*quantity),
    }
}

pub(super) fn section_indexes(taken: &Taken) -> BTreeSet<usize> {
    match taken {
        Taken::Seats(seats) => seats.iter().map(|s| s.section as usize).collect(),
        Taken::General { section, .. } => [*section as usize].into(),
    }
}

pub(super) fn count_in_section(taken: &Taken, section: usize) -> u32 {
    match taken {
        Taken::Seats(seats) => seats.iter().filter(|s| s.section as usize == section).count() as u32,
        Taken::General { section: s, quantity } => {
            if *s as usize == section {
                *quantity
            } else {
                0
            }
        }
    }
}

// The four moves of the inventory: free → held → sold, held → free, sold → free. Each asserts the
// state it starts from, so a bookkeeping bug stops the node instead of selling a seat twice.

/// Free → held by the hold `seq`.
pub(super) fn occupy(event: &mut EventState, taken: &Taken, slot: Slot) {
    match taken {
        Taken::Seats(seats) => {
            for s in seats {
                let inv = &mut event.sections[s.section as usize];
                let cell = &mut inv.rows[s.row as usize][s.number as usize - 1];
                #[cfg(madsim)]
                if crate::planted::is_planted(crate::planted::Bug::SkipAvailabilityCheck) && *cell != Slot::Free {
                    // The planted bug sells the seat again; keep going so the checks see it.
                    *cell = slot;
                    continue;
                }
                assert_eq!(*cell, Slot::Free, "a seat is taken only when free");
                *cell = slot;
                inv.held += 1;
            }
        }
        Taken::General { section, quantity } => {
            let inv = &mut event.sections[*section as usize];
            #[cfg(madsim)]
            if crate::planted::is_planted(crate::planted::Bug::SkipAvailabilityCheck) && inv.available() < *quantity {
                inv.held = inv.capacity - inv.sold;
                return;
            }
            assert!(inv.available() >= *quantity, "a quantity is taken only when available");
            inv.held += quantity;
        }
    }
}

/// Held by `slot` → free.
pub(super) fn vacate(event: &mut EventState, taken: &Taken, slot: Slot) {
    match taken {
        Taken::Seats(seats) => {
            for s in seats {
                let inv = &mut event.sections[s.section as usize];
                let cell = &mut inv.rows[s.row as usize][s.number as usize - 1];
                assert_eq!(*cell, slot, "a seat is freed only by its taker");
                *cell = Slot::Free;
                inv.held -= 1;
            }
        }
        Taken::General { section, quantity } => {
            let inv = &mut event.sections[*section as usize];
            assert!(inv.held >= *quantity);
            inv.held -= quantity;
        }
    }
}

/// Held by the hold `hold_seq` → sold to the order `order_seq`.
pub(super) fn sell(event: &mut EventState, taken: &Taken, hold_seq: u64, order_seq: u64) {
    match taken {
        Taken::Seats(seats) => {
            for s in seats {
                let inv = &mut event.sections[s.section as usize];
                let cell = &mut inv.rows[s.row as usize][s.number as usize - 1];
                assert_eq!(*cell, Slot::Held(hold_seq), "a seat is sold only by its hold");
                *cell = Slot::Sold(order_seq);
                inv.held -= 1;
                inv.sold += 1;
            }
        }
        Taken::General { section, quantity } => {
            let inv = &mut event.sections[*section as usize];
            assert!(inv.held >= *quantity);
            inv.held -= quantity;
            inv.sold += quantity;
        }
    }
}

/// Sold to the order `order_seq` → free.
pub(super) fn unsell(event: &mut EventState, taken: &Taken, order_seq: u64) {
    match taken {
        Taken::Seats(seats) => {
            for s in seats {
                let inv = &mut event.sections[s.section as usize];
                let cell = &mut inv.rows[s.row as usize][s.number as usize - 1];
                assert_eq!(*cell, Slot::Sold(order_seq), "a seat is refunded only by its order");
                *cell = Slot::Free;
                inv.sold -= 1;
            }
        }
        Taken::General { section, quantity } => {
            let inv = &mut event.sections[*section as usize];
            assert!(inv.sold >= *quantity);
            inv.sold -= quantity;
        }
    }
}

pub(super) fn uncount_user(event: &mut EventState, user: &UserId, n: u32) {
    let count = event.per_user.get_mut(user).expect("a live hold is counted");
    assert!(*count >= n);
    *count -= n;
    if *count == 0 {
        event.per_user.remove(user);
    }
}

/// The user's seats in active holds drop by `n`: a hold ended or was checked out.
pub(super) fn unhold_user(event: &mut EventState, user: &UserId, n: u32) {
    let count = event.held_by_user.get_mut(user).expect("an active hold is counted");
    assert!(*count >= n);
    *count -= n;
    if *count == 0 {
        event.held_by_user.remove(user);
    }
}

pub(super) fn tickets_for(taken: &Taken) -> Vec<TicketRec> {
    match taken {
        Taken::Seats(seats) => seats
            .iter()
            .enumerate()
            .map(|(i, s)| TicketRec {
                n: i as u32 + 1,
                seat: Some(*s),
                section: s.section,
                status: TicketStatus::Valid,
            })
            .collect(),
        Taken::General { section, quantity } => (1..=*quantity)
            .map(|n| TicketRec { n, seat: None, section: *section, status: TicketStatus::Valid })
            .collect(),
    }
}

/// The change-feed record of a move of `taken`, read after the move.
pub(super) fn taken_change(event: &EventState, taken: &Taken, status: SeatStatus) -> ChangeKind {
    match taken {
        Taken::Seats(seats) => {
            ChangeKind::Seats { seats: seats.iter().map(|s| seat_id(&event.spec, *s)).collect(), status }
        }
        Taken::General { section, .. } => {
            let inv = &event.sections[*section as usize];
            ChangeKind::General {
                section: event.spec.venue.sections[*section as usize].id.clone(),
                available: inv.available(),
                held: inv.held,
                sold: inv.sold,
            }
        }
    }
}
