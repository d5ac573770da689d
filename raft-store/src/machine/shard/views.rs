//! The views a shard answers with (an event, its seat map, a hold, an order, a waiting room), and
//! which holds have lapsed at the time of a read: past their time, though no command has expired
//! them yet. Reads only; nothing here changes the state.

use std::collections::BTreeMap;

use super::inventory::{count_in_section, seat_id, section_indexes};
use super::state::{Deadline, EventState, HoldRec, ShardState, Slot, Taken};
use crate::command::QueueView;
use crate::ids::{EventId, HoldId, OrderId, TicketId, UserId};
use crate::model::{
    EventSpec, EventStatus, EventSummary, EventView, GeneralView, HoldStatus, HoldView, Money, OrderStatus, OrderView,
    SeatMap, SeatStatus, SeatView, SectionKind, SectionKindTag, SectionView, TicketView,
};

impl ShardState {
    /// Whether the hold `seq` no longer holds its seats at `now_ms`, though no command has
    /// expired it yet: an active hold past its expiry, or an order past its payment deadline. A
    /// seat is held in a hold's name while the hold is active (in memory) or checked out with its
    /// order awaiting payment (`pending_by_hold`; the hold itself has left memory, unless the
    /// state is from before ended holds went to the cold store).
    pub(super) fn lapsed(&self, hold_seq: u64, now_ms: i64) -> bool {
        if let Some(order) = self.pending_by_hold.get(&hold_seq) {
            return self.orders[order].payment_deadline_ms <= now_ms;
        }
        match self.holds.get(&hold_seq) {
            Some(hold) if hold.status == HoldStatus::Active => hold.expires_at_ms <= now_ms,
            // An ended hold without a pending order holds no seat.
            Some(_) => true,
            None => {
                debug_assert!(false, "a seat is held by hold {hold_seq}, which is neither active nor checked out");
                false
            }
        }
    }

    /// The seats `user` has in active holds of the event that have lapsed at `now_ms`: what
    /// apply would expire before judging a hold then.
    pub(super) fn lapsed_held_by(&self, event_id: &EventId, user: &UserId, now_ms: i64) -> u32 {
        self.deadlines
            .range(..(now_ms.saturating_add(1), Deadline::Hold(0)))
            .filter_map(|(_, deadline)| match deadline {
                Deadline::Hold(seq) => self.holds.get(seq),
                Deadline::Payment(_) => None,
            })
            .filter(|hold| &hold.event_id == event_id && &hold.user == user)
            .map(|hold| hold.taken.count())
            .sum()
    }

    /// Per section, the admissions counted as held that have lapsed at `now_ms`.
    pub(super) fn lapsed_by_section(&self, event_id: &EventId, now_ms: i64) -> BTreeMap<usize, u32> {
        let mut lapsed = BTreeMap::new();
        for (_, deadline) in self.deadlines.range(..(now_ms.saturating_add(1), Deadline::Hold(0))) {
            let (of_event, taken) = match deadline {
                Deadline::Hold(seq) => (&self.holds[seq].event_id, &self.holds[seq].taken),
                Deadline::Payment(seq) => (&self.orders[seq].event_id, &self.orders[seq].taken),
            };
            if of_event != event_id {
                continue;
            }
            for section in section_indexes(taken) {
                *lapsed.entry(section).or_insert(0) += count_in_section(taken, section);
            }
        }
        lapsed
    }

    fn section_views(&self, event_id: &EventId, event: &EventState, now_ms: i64) -> Vec<SectionView> {
        let lapsed = self.lapsed_by_section(event_id, now_ms);
        event
            .spec
            .venue
            .sections
            .iter()
            .zip(&event.sections)
            .enumerate()
            .map(|(i, (section, inv))| {
                let held = inv.held - lapsed.get(&i).copied().unwrap_or(0);
                SectionView {
                    section: section.id.clone(),
                    name: section.name.clone(),
                    kind: match section.kind {
                        SectionKind::Seated { .. } => SectionKindTag::Seated,
                        SectionKind::General { .. } => SectionKindTag::General,
                    },
                    price: event.spec.price_of(&section.id).unwrap_or(Money::zero(event.spec.currency())),
                    capacity: inv.capacity,
                    available: inv.capacity - held - inv.sold,
                    held,
                    sold: inv.sold,
                }
            })
            .collect()
    }

    pub(super) fn event_view(&self, event_id: &EventId, now_ms: i64) -> Option<EventView> {
        let event = self.events.get(event_id)?;
        let sections = self.section_views(event_id, event, now_ms);
        let available: u32 = sections.iter().map(|s| s.available).sum();
        Some(EventView {
            spec: EventSpec::clone(&event.spec),
            status: event_status(&event.spec, available, now_ms),
            sections,
            created_at_ms: event.created_at_ms,
            updated_at_ms: event.updated_at_ms,
        })
    }

    pub(super) fn seat_map(&self, event_id: &EventId, now_ms: i64, last_index: u64) -> Option<SeatMap> {
        let event = self.events.get(event_id)?;
        let spec = &event.spec;
        let mut seats = Vec::new();
        let mut general = Vec::new();
        let views = self.section_views(event_id, event, now_ms);
        for (i, section) in spec.venue.sections.iter().enumerate() {
            let price = views[i].price;
            match &section.kind {
                SectionKind::Seated { rows } => {
                    for (r, row) in rows.iter().enumerate() {
                        for (n, slot) in event.sections[i].rows[r].iter().enumerate() {
                            let status = match slot {
                                Slot::Free => SeatStatus::Available,
                                Slot::Held(h) if self.lapsed(*h, now_ms) => SeatStatus::Available,
                                Slot::Held(_) => SeatStatus::Held,
                                Slot::Sold(_) => SeatStatus::Sold,
                            };
                            let number = n as u32 + 1;
                            seats.push(SeatView {
                                id: format!("{}-{}-{}", section.id, row.id, number),
                                section: section.id.clone(),
                                row: row.id.clone(),
                                number,
                                status,
                                price,
                            });
                        }
                    }
                }
                SectionKind::General { capacity } => general.push(GeneralView {
                    section: section.id.clone(),
                    capacity: *capacity,
                    available: views[i].available,
                    price,
                }),
            }
        }
        Some(SeatMap { event_id: event_id.clone(), as_of_ms: now_ms, as_of_index: last_index, seats, general })
    }

    pub(super) fn summary(&self, event_id: &EventId, now_ms: i64) -> Option<EventSummary> {
        let view = self.event_view(event_id, now_ms)?;
        let spec = &view.spec;
        let prices = spec.prices.iter().map(|p| p.price.amount);
        let currency = spec.currency();
        Some(EventSummary {
            event_id: event_id.clone(),
            name: spec.name.clone(),
            category: spec.category.clone(),
            starts_at_ms: spec.starts_at_ms,
            venue_name: spec.venue.name.clone(),
            venue_city: spec.venue.city.clone(),
            performers: spec.performers.clone(),
            price_min: Money::new(prices.clone().min().unwrap_or(0), currency),
            price_max: Money::new(prices.max().unwrap_or(0), currency),
            available: view.sections.iter().map(|s| s.available).sum(),
            status: view.status,
        })
    }

    /// The view of `hold` (number `seq`), in memory or read from the cold store; its event is
    /// in memory.
    pub(super) fn hold_view(&self, seq: u64, hold: &HoldRec, now_ms: i64) -> HoldView {
        let spec = &self.events[&hold.event_id].spec;
        let (seats, section, quantity) = match &hold.taken {
            Taken::Seats(seats) => (seats.iter().map(|s| seat_id(spec, *s)).collect(), None, None),
            Taken::General { section, quantity } => {
                (Vec::new(), Some(spec.venue.sections[*section as usize].id.clone()), Some(*quantity))
            }
        };
        let (status, ended_at_ms) = match hold.status {
            HoldStatus::Active if hold.expires_at_ms <= now_ms => (HoldStatus::Expired, Some(hold.expires_at_ms)),
            s => (s, hold.ended_at_ms),
        };
        HoldView {
            hold_id: HoldId { event_id: hold.event_id.clone(), seq },
            event_id: hold.event_id.clone(),
            user_id: hold.user.clone(),
            seats,
            section,
            quantity,
            total: hold.total,
            status,
            created_at_ms: hold.created_at_ms,
            expires_at_ms: hold.expires_at_ms,
            ended_at_ms,
            order_id: hold.order.map(|o| OrderId { event_id: hold.event_id.clone(), seq: o }),
        }
    }

    pub(super) fn order_view(&self, seq: u64, now_ms: i64) -> OrderView {
        let order = &self.orders[&seq];
        let spec = &self.events[&order.event_id].spec;
        let order_id = OrderId { event_id: order.event_id.clone(), seq };
        let status = match order.status {
            OrderStatus::PendingPayment if order.payment_deadline_ms <= now_ms => OrderStatus::PaymentFailed,
            s => s,
        };
        let tickets = order
            .tickets
            .iter()
            .map(|t| TicketView {
                ticket_id: TicketId { order: order_id.clone(), n: t.n },
                order_id: order_id.clone(),
                event_id: order.event_id.clone(),
                user_id: order.user.clone(),
                seat: t.seat.map(|s| seat_id(spec, s)),
                section: spec.venue.sections[t.section as usize].id.clone(),
                status: t.status,
            })
            .collect();
        OrderView {
            order_id: order_id.clone(),
            event_id: order.event_id.clone(),
            user_id: order.user.clone(),
            hold_id: HoldId { event_id: order.event_id.clone(), seq: order.hold },
            status,
            total: order.total,
            tickets,
            created_at_ms: order.created_at_ms,
            updated_at_ms: order.updated_at_ms,
            payment_deadline_ms: order.payment_deadline_ms,
            payment_reference: order.payment_reference.clone(),
            refunded: order.refunded,
        }
    }

    pub(super) fn queue_view(&self, event_id: &EventId, now_ms: i64) -> Option<QueueView> {
        let event = self.events.get(event_id)?;
        let view = self.event_view(event_id, now_ms)?;
        let capacity: u32 = view.sections.iter().map(|s| s.capacity).sum();
        let sold: u32 = view.sections.iter().map(|s| s.sold).sum();
        Some(QueueView {
            event_id: event_id.clone(),
            high_traffic: event.spec.high_traffic,
            on_sale_at_ms: event.spec.on_sale_at_ms,
            starts_at_ms: event.spec.starts_at_ms,
            queue: event.queue.view(now_ms),
            available: view.sections.iter().map(|s| s.available).sum(),
            held: view.sections.iter().map(|s| s.held).sum(),
            sold_out: sold >= capacity,
        })
    }
}

fn event_status(spec: &EventSpec, available: u32, now_ms: i64) -> EventStatus {
    if now_ms >= spec.starts_at_ms {
        EventStatus::Ended
    } else if now_ms < spec.on_sale_at_ms {
        EventStatus::Scheduled
    } else if available == 0 {
        EventStatus::SoldOut
    } else {
        EventStatus::OnSale
    }
}
