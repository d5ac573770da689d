//! Commands on an event itself: creating and updating it, and moving its waiting room (leasing
//! queue numbers, admitting positions). Holds and orders live in their own modules.

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use super::inventory::section_inventory;
use super::state::{refused, EventState, ShardState};
use crate::command::{ChangeKind, Outcome, Refusal};
use crate::ids::EventId;
use crate::machine::ctx::Ctx;
use crate::machine::queue::QueueState;
use crate::model::{EventPatch, EventSpec};

impl ShardState {
    pub(super) fn create_event(&mut self, ctx: Ctx, spec: &EventSpec) -> Outcome {
        if let Err(detail) = spec.validate() {
            return refused(Refusal::Invalid { detail });
        }
        if spec.starts_at_ms <= ctx.now_ms {
            return refused(Refusal::Invalid { detail: "`starts_at` must be in the future".into() });
        }
        if self.events.contains_key(&spec.event_id) {
            return refused(Refusal::Conflict { detail: format!("event {} exists", spec.event_id) });
        }
        let event = EventState {
            spec: Arc::new(spec.clone()),
            created_at_ms: ctx.now_ms,
            updated_at_ms: ctx.now_ms,
            sections: section_inventory(spec),
            per_user: OrdMap::new(),
            held_by_user: OrdMap::new(),
            queue: QueueState::default(),
            orders: OrdSet::new(),
        };
        self.by_start.insert((spec.starts_at_ms, spec.event_id.clone()));
        self.events.insert(spec.event_id.clone(), event);
        self.record(ctx, &spec.event_id, ChangeKind::Event);
        Outcome::Event(Box::new(self.event_view(&spec.event_id, ctx.now_ms).expect("just inserted")))
    }

    pub(super) fn update_event(&mut self, ctx: Ctx, event_id: &EventId, patch: &EventPatch) -> Outcome {
        let Some(event) = self.events.get_mut(event_id) else {
            return refused(Refusal::not_found(format!("event {event_id}")));
        };
        let next = patch.apply_to(&event.spec);
        if let Err(detail) = next.validate() {
            return refused(Refusal::Invalid { detail });
        }
        if patch.starts_at_ms.is_some() && next.starts_at_ms <= ctx.now_ms {
            return refused(Refusal::Invalid { detail: "`starts_at` must be in the future".into() });
        }
        self.by_start.remove(&(event.spec.starts_at_ms, event_id.clone()));
        self.by_start.insert((next.starts_at_ms, event_id.clone()));
        event.spec = Arc::new(next);
        event.updated_at_ms = ctx.now_ms;
        self.record(ctx, event_id, ChangeKind::Event);
        Outcome::Event(Box::new(self.event_view(event_id, ctx.now_ms).expect("exists")))
    }

    pub(super) fn lease_queue_block(
        &mut self,
        ctx: Ctx,
        event_id: &EventId,
        size: u64,
        unused: Option<(u64, u64)>,
    ) -> Outcome {
        let Some(event) = self.events.get_mut(event_id) else {
            return refused(Refusal::not_found(format!("event {event_id}")));
        };
        if !event.spec.high_traffic {
            return refused(Refusal::Invalid { detail: "this event has no waiting room".into() });
        }
        let on_sale = ctx.now_ms >= event.spec.on_sale_at_ms;
        if let Some((start, end)) = unused {
            event.queue.forgo(start, end);
        }
        match event.queue.lease(size, on_sale) {
            Ok(block) => Outcome::QueueBlock(block),
            Err(e) => refused(Refusal::Invalid { detail: e.to_string() }),
        }
    }

    /// Admits queue positions below `to`; nothing is admitted before the sale opens.
    pub(super) fn advance_queue(&mut self, ctx: Ctx, event_id: &EventId, to: u64) -> Outcome {
        let Some(event) = self.events.get_mut(event_id) else {
            return refused(Refusal::not_found(format!("event {event_id}")));
        };
        if !event.spec.high_traffic {
            return refused(Refusal::Invalid { detail: "this event has no waiting room".into() });
        }
        if ctx.now_ms >= event.spec.on_sale_at_ms {
            event.queue.open();
            event.queue.advance(to, ctx.now_ms);
        }
        match self.queue_view(event_id, ctx.now_ms) {
            Some(view) => Outcome::Queue(view),
            None => refused(Refusal::not_found(format!("event {event_id}"))),
        }
    }
}
