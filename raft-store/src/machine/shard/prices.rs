//! What dynamic pricing (`machine/pricing.rs`) reads of a shard and how it sets a price: the
//! section's counts in, the event's section prices out, as a change to the event.

use std::sync::Arc;

use super::state::ShardState;
use crate::command::ChangeKind;
use crate::ids::EventId;
use crate::machine::ctx::Ctx;
use crate::model::{EventSpec, SectionPrice};

/// A section's admissions: all, held now, sold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SectionCounts {
    pub capacity: u32,
    pub held: u32,
    pub sold: u32,
}

impl ShardState {
    /// The event's spec, if the event is in memory.
    pub(crate) fn event_spec(&self, event_id: &EventId) -> Option<Arc<EventSpec>> {
        self.events.get(event_id).map(|e| e.spec.clone())
    }

    pub(crate) fn section_counts(&self, event_id: &EventId, section: &str) -> Option<SectionCounts> {
        let event = self.events.get(event_id)?;
        let (i, _) = event.spec.venue.section(section)?;
        let inv = event.sections.get(i)?;
        Some(SectionCounts { capacity: inv.capacity, held: inv.held, sold: inv.sold })
    }

    /// Sets the event's section prices: holds from now on are made at them, and readers of the
    /// feed re-read the event.
    pub(crate) fn set_prices(&mut self, ctx: Ctx, event_id: &EventId, prices: Vec<SectionPrice>) {
        let Some(event) = self.events.get_mut(event_id) else { return };
        let mut spec = EventSpec::clone(&event.spec);
        spec.prices = prices;
        event.spec = Arc::new(spec);
        event.updated_at_ms = ctx.now_ms;
        self.record(ctx, event_id, ChangeKind::Event);
    }
}
