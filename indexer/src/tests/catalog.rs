//! Writes the follower's tests make through a `TestCluster`: events at a general-admission hall,
//! renames and holds, each applied as the next entry of its shard's log.

use std::sync::atomic::{AtomicU64, Ordering};

use raft_store::{
    shard_of, Answer, Command, EventId, EventPatch, EventSpec, EventView, GeoPoint, GroupId, Outcome, Query, Section,
    SectionKind, SectionPrice, Selection, UserId, Venue, VenueId,
};
use seams::{Cluster, TestCluster};

use crate::document::usd;

const DAY_MS: i64 = 24 * 3_600_000;

/// Ids of the events and venues the tests create, unique in the test binary.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) trait Catalog {
    /// Creates an event at a general-admission hall in `city`, `days` from now.
    fn create_event(&self, name: &str, city: &str, days: i64) -> EventId;
    fn rename(&self, event_id: &EventId, name: &str);
    fn hold(&self, event_id: &EventId, quantity: u32);
    fn event(&self, event_id: &EventId) -> EventView;
}

impl Catalog for TestCluster {
    fn create_event(&self, name: &str, city: &str, days: i64) -> EventId {
        let n = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let event_id = EventId::from_u64(n);
        let venue = Venue {
            venue_id: VenueId::from_u64(n),
            name: format!("{city} Hall"),
            city: city.into(),
            country: "PT".into(),
            location: GeoPoint { lat: 38.7, lon: -9.1 },
            sections: vec![Section {
                id: "GA".into(),
                name: "Floor".into(),
                kind: SectionKind::General { capacity: 100 },
            }],
        };
        let spec = EventSpec {
            event_id: event_id.clone(),
            name: name.into(),
            description: format!("{name} live"),
            category: "music".into(),
            performers: vec!["The Testers".into()],
            venue,
            starts_at_ms: self.now_ms() + days * DAY_MS,
            on_sale_at_ms: 0,
            prices: vec![SectionPrice { section: "GA".into(), price: usd(2_500) }],
            per_user_limit: None,
            high_traffic: false,
        };
        let outcome = self.run(Command::CreateEvent(spec));
        assert!(matches!(outcome, Outcome::Event(_)), "{outcome:?}");
        event_id
    }

    fn rename(&self, event_id: &EventId, name: &str) {
        let patch = EventPatch { name: Some(name.into()), ..EventPatch::default() };
        let outcome = self.run(Command::UpdateEvent { event_id: event_id.clone(), patch });
        assert!(matches!(outcome, Outcome::Event(_)), "{outcome:?}");
    }

    fn hold(&self, event_id: &EventId, quantity: u32) {
        let outcome = self.run(Command::Hold {
            event_id: event_id.clone(),
            user: UserId::parse("alice").unwrap(),
            selection: Selection::General { section: "GA".into(), quantity },
            ttl_ms: DAY_MS,
            access: None,
            held_seats_max: None,
        });
        assert!(matches!(outcome, Outcome::Hold(_)), "{outcome:?}");
    }

    fn event(&self, event_id: &EventId) -> EventView {
        let group = GroupId::shard(shard_of(event_id, self.shard_count()));
        match self.read_now(group, &Query::Event(event_id.clone())) {
            Answer::Event(Some(view)) => *view,
            other => panic!("{other:?}"),
        }
    }
}
