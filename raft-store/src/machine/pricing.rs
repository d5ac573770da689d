//! Dynamic pricing: each priced event's rules (`PriceRule`) and the recent sales they count.
//!
//! The price is decided here, in apply, from replicated state only: the section's taken share and
//! its sales by minute of the log's time. The machine reprices its events before the proposals of
//! every entry (recent sales leave the window as time passes) and after them (what the entry held
//! and sold); a price that moved replaces the section's price in the event's spec, with a change
//! record, so the event, its seat map, search and the feed all show it, and the next hold is made
//! at it (a hold's total locks the price it was made at).
//!
//! Added in format 3: a snapshot of format 2 has no pricing (see `Machine::decode`).

use std::collections::VecDeque;
use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use super::ctx::Ctx;
use super::shard::ShardState;
use crate::command::{Outcome, Refusal};
use crate::ids::EventId;
use crate::model::{PriceRule, PricingView, SectionPrice};

const MINUTE_MS: i64 = 60_000;

/// The priced events of a shard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pricing {
    #[serde(deserialize_with = "crate::cautious::ord_map")]
    events: OrdMap<EventId, Arc<EventPricing>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct EventPricing {
    rules: Vec<PriceRule>,
    /// One per rule, in the same order.
    sales: Vec<SectionSales>,
}

/// What a rule's section sold recently.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct SectionSales {
    /// The section's sold count when last seen: sales are its increases.
    last_sold: u32,
    /// Sales by minute of log time (minute, count), oldest first, within the rule's window.
    minutes: VecDeque<(i64, u32)>,
}

impl SectionSales {
    fn recent(&self) -> u32 {
        self.minutes.iter().map(|(_, n)| n).fold(0u32, |a, n| a.saturating_add(*n))
    }

    /// Counts what the section sold since last seen, and forgets minutes out of the window.
    fn observe(&mut self, now_ms: i64, sold: u32, window_minutes: u32) {
        if sold > self.last_sold {
            let minute = now_ms.div_euclid(MINUTE_MS);
            match self.minutes.back_mut() {
                Some((m, n)) if *m == minute => *n = n.saturating_add(sold - self.last_sold),
                _ => self.minutes.push_back((minute, sold - self.last_sold)),
            }
        }
        self.last_sold = sold;
        let oldest = now_ms.div_euclid(MINUTE_MS) - i64::from(window_minutes) + 1;
        while self.minutes.front().is_some_and(|(m, _)| *m < oldest) {
            self.minutes.pop_front();
        }
    }
}

impl Pricing {
    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Replaces the event's rules (none: its prices stay and stop moving), then prices it.
    pub(crate) fn set(&mut self, ctx: Ctx, shard: &mut ShardState, event_id: &EventId, rules: &[PriceRule]) -> Outcome {
        let Some(spec) = shard.event_spec(event_id) else {
            return Outcome::Refused(Refusal::not_found(format!("event {event_id}")));
        };
        if let Err(detail) = PriceRule::validate_all(rules, &spec) {
            return Outcome::Refused(Refusal::Invalid { detail });
        }
        if rules.is_empty() {
            self.events.remove(event_id);
        } else {
            let sales = rules
                .iter()
                .map(|r| SectionSales {
                    last_sold: shard.section_counts(event_id, &r.section).map_or(0, |c| c.sold),
                    minutes: VecDeque::new(),
                })
                .collect();
            self.events.insert(event_id.clone(), Arc::new(EventPricing { rules: rules.to_vec(), sales }));
            self.reprice_event(ctx, shard, event_id);
        }
        match self.view(shard, event_id) {
            Some(view) => Outcome::Pricing(view),
            None => Outcome::Refused(Refusal::not_found(format!("event {event_id}"))),
        }
    }

    /// Prices every priced event at `ctx`; an event no longer in memory (archived) is forgotten.
    pub(crate) fn reprice(&mut self, ctx: Ctx, shard: &mut ShardState) {
        let ids: Vec<EventId> = self.events.keys().cloned().collect();
        for event_id in ids {
            if shard.event_spec(&event_id).is_none() {
                self.events.remove(&event_id);
                continue;
            }
            self.reprice_event(ctx, shard, &event_id);
        }
    }

    fn reprice_event(&mut self, ctx: Ctx, shard: &mut ShardState, event_id: &EventId) {
        let Some(pricing) = self.events.get_mut(event_id) else { return };
        let Some(spec) = shard.event_spec(event_id) else { return };
        let mut prices = spec.prices.clone();
        let pricing = Arc::make_mut(pricing);
        for (rule, sales) in pricing.rules.iter().zip(pricing.sales.iter_mut()) {
            let Some(counts) = shard.section_counts(event_id, &rule.section) else { continue };
            sales.observe(ctx.now_ms, counts.sold, rule.window_minutes);
            let price = rule.price(counts.capacity, counts.held + counts.sold, sales.recent());
            if let Some(p) = prices.iter_mut().find(|p| p.section == rule.section) {
                p.price = price;
            }
        }
        if prices != spec.prices {
            shard.set_prices(ctx, event_id, prices);
        }
    }

    pub(crate) fn view(&self, shard: &ShardState, event_id: &EventId) -> Option<PricingView> {
        let spec = shard.event_spec(event_id)?;
        let rules = self.events.get(event_id).map_or_else(Vec::new, |p| p.rules.clone());
        let prices: Vec<SectionPrice> = spec.prices.clone();
        Some(PricingView { event_id: event_id.clone(), rules, prices })
    }
}
