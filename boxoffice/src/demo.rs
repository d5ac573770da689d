//! Demo data for `boxoffice dev`: venues with seated and general-admission sections, events in
//! several categories and cities, one of them high-traffic (waiting room on).
//!
//! Seeded through the same [`Cluster`] path as the api, with fixed ids and request ids, so seeding
//! again after a crash half-way changes nothing that was already there.

use raft_store::{
    fnv1a64, Answer, Command, Currency, EventId, EventSpec, GeoPoint, GroupId, Money, Outcome, Query, Refusal,
    RequestId, Row, Section, SectionKind, SectionPrice, Venue, VenueId,
};
use seams::{Cluster, ClusterError, Consistency, Submit};

const DAY_MS: i64 = 86_400_000;

fn demo_id(name: &str) -> u64 {
    fnv1a64(format!("boxoffice-demo/{name}").as_bytes())
}

fn request_id(name: &str) -> RequestId {
    let a = fnv1a64(format!("boxoffice-demo-request/{name}").as_bytes()).to_be_bytes();
    let b = demo_id(name).to_be_bytes();
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&a);
    id[8..].copy_from_slice(&b);
    RequestId(id)
}

fn rows(ids: &str, seats: u32) -> Vec<Row> {
    ids.chars().map(|c| Row { id: c.to_string(), seats }).collect()
}

fn seated(id: &str, name: &str, row_ids: &str, seats: u32) -> Section {
    Section { id: id.into(), name: name.into(), kind: SectionKind::Seated { rows: rows(row_ids, seats) } }
}

fn general(id: &str, name: &str, capacity: u32) -> Section {
    Section { id: id.into(), name: name.into(), kind: SectionKind::General { capacity } }
}

fn venues() -> Vec<Venue> {
    vec![
        Venue {
            venue_id: VenueId::from_u64(demo_id("riverside-arena")),
            name: "Riverside Arena".into(),
            city: "Lisbon".into(),
            country: "PT".into(),
            location: GeoPoint { lat: 38.7681, lon: -9.0947 },
            sections: vec![
                seated("FLOOR", "Floor", "ABCDEFGHIJ", 20),
                seated("BALCONY", "Balcony", "ABCDEF", 30),
                general("PIT", "Standing pit", 800),
            ],
        },
        Venue {
            venue_id: VenueId::from_u64(demo_id("parque-da-cidade")),
            name: "Parque da Cidade".into(),
            city: "Porto".into(),
            country: "PT".into(),
            location: GeoPoint { lat: 41.1693, lon: -8.6768 },
            sections: vec![general("LAWN", "Lawn", 5_000), seated("VIP", "VIP terrace", "AB", 12)],
        },
        Venue {
            venue_id: VenueId::from_u64(demo_id("teatro-nacional")),
            name: "Teatro Nacional".into(),
            city: "Madrid".into(),
            country: "ES".into(),
            location: GeoPoint { lat: 40.4146, lon: -3.7004 },
            sections: vec![
                seated("ORCH", "Orchestra", "ABCDEFGHIJKLMNOP", 24),
                seated("MEZZ", "Mezzanine", "ABCDEF", 18),
            ],
        },
    ]
}

struct DemoEvent {
    key: &'static str,
    name: &'static str,
    description: &'static str,
    category: &'static str,
    performers: &'static [&'static str],
    venue: usize,
    starts_in_days: i64,
    on_sale_in_days: i64,
    prices: &'static [(&'static str, i64)],
    per_user_limit: Option<u32>,
    high_traffic: bool,
}

const EVENTS: &[DemoEvent] = &[
    DemoEvent {
        key: "aurora-skies",
        name: "Aurora Skies: Northern Lights Tour",
        description: "The band's first stadium tour, with The Midnight Echo opening. Expect a queue.",
        category: "music",
        performers: &["Aurora Skies", "The Midnight Echo"],
        venue: 0,
        starts_in_days: 30,
        on_sale_in_days: 0,
        prices: &[("FLOOR", 12_500), ("BALCONY", 8_900), ("PIT", 6_500)],
        per_user_limit: Some(4),
        high_traffic: true,
    },
    DemoEvent {
        key: "jazz-in-the-park",
        name: "Jazz in the Park",
        description: "A summer evening of jazz standards on the lawn.",
        category: "music",
        performers: &["Marta Ribeiro Quartet"],
        venue: 1,
        starts_in_days: 14,
        on_sale_in_days: 0,
        prices: &[("LAWN", 2_500), ("VIP", 9_000)],
        per_user_limit: Some(8),
        high_traffic: false,
    },
    DemoEvent {
        key: "hamlet",
        name: "Hamlet",
        description: "Shakespeare's tragedy of the prince of Denmark, in a new staging.",
        category: "theatre",
        performers: &["Compañía Nacional de Teatro"],
        venue: 2,
        starts_in_days: 21,
        on_sale_in_days: 0,
        prices: &[("ORCH", 6_000), ("MEZZ", 3_500)],
        per_user_limit: None,
        high_traffic: false,
    },
    DemoEvent {
        key: "futsal-final",
        name: "Futsal Champions Final",
        description: "The season's two best teams play for the cup.",
        category: "sports",
        performers: &["Lisbon Lions", "Porto Dragons"],
        venue: 0,
        starts_in_days: 10,
        on_sale_in_days: 0,
        prices: &[("FLOOR", 4_000), ("BALCONY", 2_500), ("PIT", 1_500)],
        per_user_limit: Some(6),
        high_traffic: false,
    },
    DemoEvent {
        key: "stand-up-saturday",
        name: "Stand-up Saturday",
        description: "Five comedians, one microphone, no mercy.",
        category: "comedy",
        performers: &["Rita Alves", "Tom Baker"],
        venue: 2,
        starts_in_days: 5,
        on_sale_in_days: 0,
        prices: &[("ORCH", 2_800), ("MEZZ", 1_800)],
        per_user_limit: None,
        high_traffic: false,
    },
    DemoEvent {
        key: "tech-summit",
        name: "Lisbon Tech Summit",
        description: "Two days of talks on distributed systems. Tickets go on sale next week.",
        category: "conference",
        performers: &["Keynote: Ada Lindqvist"],
        venue: 0,
        starts_in_days: 60,
        on_sale_in_days: 7,
        prices: &[("FLOOR", 30_000), ("BALCONY", 20_000), ("PIT", 10_000)],
        per_user_limit: Some(2),
        high_traffic: false,
    },
];

/// Which demo records were created now (the rest already existed).
#[derive(Debug, Default)]
pub struct Seeded {
    pub venues: usize,
    pub events: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("demo record {0} refused: {1:?}")]
    Refused(String, Refusal),
}

async fn create(cluster: &dyn Cluster, key: &str, command: Command) -> Result<bool, SeedError> {
    let submit = Submit { command, request_id: request_id(key), fingerprint: demo_id(key), keyed: true };
    match cluster.submit(submit).await? {
        Outcome::Refused(Refusal::Conflict { .. }) => Ok(false),
        Outcome::Refused(r) => Err(SeedError::Refused(key.into(), r)),
        _ => Ok(true),
    }
}

/// Creates the demo venues and events unless they exist. Event times are relative to `now_ms`.
pub async fn seed(cluster: &dyn Cluster, now_ms: i64) -> Result<Seeded, SeedError> {
    let venues = venues();
    let first = Query::Venue(venues[0].venue_id.clone());
    if let Answer::Venue(Some(_)) = cluster.query(GroupId::META, first, Consistency::Linearizable).await? {
        return Ok(Seeded::default());
    }
    let mut seeded = Seeded::default();
    for venue in &venues {
        let key = format!("venue/{}", venue.venue_id);
        seeded.venues += usize::from(create(cluster, &key, Command::CreateVenue(venue.clone())).await?);
    }
    // Whole hours, so the demo's times read well.
    let base = now_ms - now_ms.rem_euclid(3_600_000) + 3_600_000;
    for e in EVENTS {
        let spec = EventSpec {
            event_id: EventId::from_u64(demo_id(e.key)),
            name: e.name.into(),
            description: e.description.into(),
            category: e.category.into(),
            performers: e.performers.iter().map(|p| p.to_string()).collect(),
            venue: venues[e.venue].clone(),
            starts_at_ms: base + e.starts_in_days * DAY_MS + 20 * 3_600_000,
            on_sale_at_ms: if e.on_sale_in_days == 0 { now_ms - 60_000 } else { base + e.on_sale_in_days * DAY_MS },
            prices: e
                .prices
                .iter()
                .map(|(section, amount)| SectionPrice {
                    section: section.to_string(),
                    price: Money::new(*amount, Currency::USD),
                })
                .collect(),
            per_user_limit: e.per_user_limit,
            high_traffic: e.high_traffic,
        };
        seeded.events += usize::from(create(cluster, &format!("event/{}", e.key), Command::CreateEvent(spec)).await?);
    }
    Ok(seeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_records_are_valid() {
        for v in venues() {
            v.validate().unwrap();
        }
        let venues = venues();
        for e in EVENTS {
            let spec = EventSpec {
                event_id: EventId::from_u64(demo_id(e.key)),
                name: e.name.into(),
                description: e.description.into(),
                category: e.category.into(),
                performers: e.performers.iter().map(|p| p.to_string()).collect(),
                venue: venues[e.venue].clone(),
                starts_at_ms: 10,
                on_sale_at_ms: 0,
                prices: e
                    .prices
                    .iter()
                    .map(|(s, a)| SectionPrice { section: s.to_string(), price: Money::new(*a, Currency::USD) })
                    .collect(),
                per_user_limit: e.per_user_limit,
                high_traffic: e.high_traffic,
            };
            spec.validate().unwrap_or_else(|err| panic!("{}: {err}", e.key));
        }
        assert!(EVENTS.iter().any(|e| e.high_traffic));
    }
}
