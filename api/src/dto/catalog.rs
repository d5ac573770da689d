//! Venues, events, event summaries and seat maps.

use raft_store::{
    EventId, EventPatch, EventSpec, EventStatus, EventSummary, EventView, GeneralView, GeoPoint, Row, SeatMap,
    SeatStatus, SeatView, Section, SectionKind, SectionKindTag, SectionPrice, SectionView, Venue, VenueId,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::{parse_time, time_json, MoneyJson};
use crate::error::ApiError;

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct LocationJson {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RowJson {
    /// Letters, digits and `_`.
    pub id: String,
    /// Seats of the row, numbered from 1.
    pub seats: u32,
}

/// A section: rows of numbered seats, or general admission sold by quantity.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum SectionJson {
    Seated { id: String, name: String, rows: Vec<RowJson> },
    General { id: String, name: String, capacity: u32 },
}

/// Body of `POST /v1/venues`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub(crate) struct VenueBody {
    pub name: String,
    pub city: String,
    pub country: String,
    pub location: LocationJson,
    pub sections: Vec<SectionJson>,
}

impl VenueBody {
    pub(crate) fn into_venue(self, venue_id: VenueId) -> Venue {
        let sections = self
            .sections
            .into_iter()
            .map(|s| match s {
                SectionJson::Seated { id, name, rows } => Section {
                    id,
                    name,
                    kind: SectionKind::Seated {
                        rows: rows.into_iter().map(|r| Row { id: r.id, seats: r.seats }).collect(),
                    },
                },
                SectionJson::General { id, name, capacity } => {
                    Section { id, name, kind: SectionKind::General { capacity } }
                }
            })
            .collect();
        Venue {
            venue_id,
            name: self.name,
            city: self.city,
            country: self.country,
            location: GeoPoint { lat: self.location.lat, lon: self.location.lon },
            sections,
        }
    }
}

/// A venue: the body's fields plus `venue_id`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct VenueJson {
    pub venue_id: String,
    pub name: String,
    pub city: String,
    pub country: String,
    pub location: LocationJson,
    pub sections: Vec<SectionJson>,
}

impl From<&Venue> for VenueJson {
    fn from(v: &Venue) -> Self {
        let sections = v
            .sections
            .iter()
            .map(|s| match &s.kind {
                SectionKind::Seated { rows } => SectionJson::Seated {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    rows: rows.iter().map(|r| RowJson { id: r.id.clone(), seats: r.seats }).collect(),
                },
                SectionKind::General { capacity } => {
                    SectionJson::General { id: s.id.clone(), name: s.name.clone(), capacity: *capacity }
                }
            })
            .collect();
        VenueJson {
            venue_id: v.venue_id.to_string(),
            name: v.name.clone(),
            city: v.city.clone(),
            country: v.country.clone(),
            location: LocationJson { lat: v.location.lat, lon: v.location.lon },
            sections,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PerformerJson {
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PriceJson {
    pub section: String,
    pub price: MoneyJson,
}

fn performers_in(performers: Vec<PerformerJson>) -> Vec<String> {
    performers.into_iter().map(|p| p.name).collect()
}

fn performers_out(performers: &[String]) -> Vec<PerformerJson> {
    performers.iter().map(|name| PerformerJson { name: name.clone() }).collect()
}

fn prices_in(prices: &[PriceJson]) -> Result<Vec<SectionPrice>, ApiError> {
    prices
        .iter()
        .map(|p| Ok(SectionPrice { section: p.section.clone(), price: p.price.to_money("prices[].price")? }))
        .collect()
}

/// Body of `POST /v1/events`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub(crate) struct EventBody {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    #[serde(default)]
    pub performers: Vec<PerformerJson>,
    pub venue_id: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// RFC 3339; default now.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub on_sale_at: Option<String>,
    /// One price for every section of the venue.
    pub prices: Vec<PriceJson>,
    #[serde(default)]
    pub per_user_limit: Option<u32>,
    #[serde(default)]
    pub high_traffic: bool,
}

impl EventBody {
    /// The event as proposed: the venue copied in, `on_sale_at` defaulting to `now_ms`.
    pub(crate) fn into_spec(self, event_id: EventId, venue: Venue, now_ms: i64) -> Result<EventSpec, ApiError> {
        let starts_at_ms = parse_time("starts_at", &self.starts_at)?;
        let on_sale_at_ms = match &self.on_sale_at {
            Some(text) => parse_time("on_sale_at", text)?,
            None => now_ms,
        };
        Ok(EventSpec {
            event_id,
            name: self.name,
            description: self.description,
            category: self.category,
            performers: performers_in(self.performers),
            venue,
            starts_at_ms,
            on_sale_at_ms,
            prices: prices_in(&self.prices)?,
            per_user_limit: self.per_user_limit,
            high_traffic: self.high_traffic,
        })
    }
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `PATCH /v1/events/{event_id}`: absent fields stay as they are.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub(crate) struct EventPatchBody {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub performers: Option<Vec<PerformerJson>>,
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    #[schema(format = DateTime)]
    pub on_sale_at: Option<String>,
    pub prices: Option<Vec<PriceJson>>,
    /// `null` removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub per_user_limit: Option<Option<u32>>,
    pub high_traffic: Option<bool>,
}

impl EventPatchBody {
    pub(crate) fn into_patch(self) -> Result<EventPatch, ApiError> {
        Ok(EventPatch {
            name: self.name,
            description: self.description,
            category: self.category,
            performers: self.performers.map(performers_in),
            starts_at_ms: self.starts_at.as_deref().map(|t| parse_time("starts_at", t)).transpose()?,
            on_sale_at_ms: self.on_sale_at.as_deref().map(|t| parse_time("on_sale_at", t)).transpose()?,
            prices: self.prices.as_deref().map(prices_in).transpose()?,
            per_user_limit: self.per_user_limit,
            high_traffic: self.high_traffic,
        })
    }
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EventStatusJson {
    /// Before `on_sale_at`.
    Scheduled,
    OnSale,
    SoldOut,
    /// At or after `starts_at`.
    Ended,
}

impl From<EventStatus> for EventStatusJson {
    fn from(s: EventStatus) -> Self {
        match s {
            EventStatus::Scheduled => EventStatusJson::Scheduled,
            EventStatus::OnSale => EventStatusJson::OnSale,
            EventStatus::SoldOut => EventStatusJson::SoldOut,
            EventStatus::Ended => EventStatusJson::Ended,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SectionKindJson {
    Seated,
    General,
}

/// The event's venue as the event carries it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct EventVenueJson {
    pub venue_id: String,
    pub name: String,
    pub city: String,
    pub country: String,
    pub location: LocationJson,
}

/// A section of an event: its price and live counts.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct SectionCountsJson {
    pub section: String,
    pub name: String,
    pub kind: SectionKindJson,
    pub price: MoneyJson,
    pub capacity: u32,
    pub available: u32,
    pub held: u32,
    pub sold: u32,
}

impl From<&SectionView> for SectionCountsJson {
    fn from(s: &SectionView) -> Self {
        SectionCountsJson {
            section: s.section.clone(),
            name: s.name.clone(),
            kind: match s.kind {
                SectionKindTag::Seated => SectionKindJson::Seated,
                SectionKindTag::General => SectionKindJson::General,
            },
            price: s.price.into(),
            capacity: s.capacity,
            available: s.available,
            held: s.held,
            sold: s.sold,
        }
    }
}

/// An event: the body's fields plus `event_id`, `venue` and per-section counts.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct EventJson {
    pub event_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub performers: Vec<PerformerJson>,
    pub venue_id: String,
    pub venue: EventVenueJson,
    #[schema(format = DateTime)]
    pub starts_at: String,
    #[schema(format = DateTime)]
    pub on_sale_at: String,
    pub prices: Vec<PriceJson>,
    pub per_user_limit: Option<u32>,
    pub high_traffic: bool,
    pub status: EventStatusJson,
    pub sections: Vec<SectionCountsJson>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&EventView> for EventJson {
    fn from(e: &EventView) -> Self {
        let spec = &e.spec;
        let venue = &spec.venue;
        EventJson {
            event_id: spec.event_id.to_string(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            category: spec.category.clone(),
            performers: performers_out(&spec.performers),
            venue_id: venue.venue_id.to_string(),
            venue: EventVenueJson {
                venue_id: venue.venue_id.to_string(),
                name: venue.name.clone(),
                city: venue.city.clone(),
                country: venue.country.clone(),
                location: LocationJson { lat: venue.location.lat, lon: venue.location.lon },
            },
            starts_at: time_json(spec.starts_at_ms),
            on_sale_at: time_json(spec.on_sale_at_ms),
            prices: spec
                .prices
                .iter()
                .map(|p| PriceJson { section: p.section.clone(), price: p.price.into() })
                .collect(),
            per_user_limit: spec.per_user_limit,
            high_traffic: spec.high_traffic,
            status: e.status.into(),
            sections: e.sections.iter().map(SectionCountsJson::from).collect(),
            created_at: time_json(e.created_at_ms),
            updated_at: time_json(e.updated_at_ms),
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct SummaryVenueJson {
    pub name: String,
    pub city: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct PriceRangeJson {
    pub min: MoneyJson,
    pub max: MoneyJson,
}

/// An event in a list.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct EventSummaryJson {
    pub event_id: String,
    pub name: String,
    pub category: String,
    #[schema(format = DateTime)]
    pub starts_at: String,
    pub venue: SummaryVenueJson,
    pub performers: Vec<PerformerJson>,
    pub price_range: PriceRangeJson,
    /// Admissions available over all sections.
    pub available: u32,
    pub status: EventStatusJson,
}

impl From<&EventSummary> for EventSummaryJson {
    fn from(s: &EventSummary) -> Self {
        EventSummaryJson {
            event_id: s.event_id.to_string(),
            name: s.name.clone(),
            category: s.category.clone(),
            starts_at: time_json(s.starts_at_ms),
            venue: SummaryVenueJson { name: s.venue_name.clone(), city: s.venue_city.clone() },
            performers: performers_out(&s.performers),
            price_range: PriceRangeJson { min: s.price_min.into(), max: s.price_max.into() },
            available: s.available,
            status: s.status.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SeatStatusJson {
    Available,
    Held,
    Sold,
}

impl From<SeatStatus> for SeatStatusJson {
    fn from(s: SeatStatus) -> Self {
        match s {
            SeatStatus::Available => SeatStatusJson::Available,
            SeatStatus::Held => SeatStatusJson::Held,
            SeatStatus::Sold => SeatStatusJson::Sold,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct SeatJson {
    /// `SECTION-ROW-NUMBER`.
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: u32,
    pub status: SeatStatusJson,
    pub price: MoneyJson,
}

impl From<&SeatView> for SeatJson {
    fn from(s: &SeatView) -> Self {
        SeatJson {
            id: s.id.clone(),
            section: s.section.clone(),
            row: s.row.clone(),
            number: s.number,
            status: s.status.into(),
            price: s.price.into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct GeneralJson {
    pub section: String,
    pub capacity: u32,
    pub available: u32,
    pub price: MoneyJson,
}

impl From<&GeneralView> for GeneralJson {
    fn from(g: &GeneralView) -> Self {
        GeneralJson { section: g.section.clone(), capacity: g.capacity, available: g.available, price: g.price.into() }
    }
}

/// The seat map of an event; the seat stream's `snapshot` events carry the same document.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct SeatMapJson {
    pub event_id: String,
    pub seats: Vec<SeatJson>,
    pub general: Vec<GeneralJson>,
    // The read position comes last: the map's tag covers every byte before it
    // (`routes::seats::render_seat_map`).
    /// When the map was read.
    #[schema(format = DateTime)]
    pub as_of: String,
    /// The shard's log index the map reflects; the seat stream continues after it.
    pub as_of_index: u64,
}

impl From<&SeatMap> for SeatMapJson {
    fn from(m: &SeatMap) -> Self {
        SeatMapJson {
            event_id: m.event_id.to_string(),
            seats: m.seats.iter().map(SeatJson::from).collect(),
            general: m.general.iter().map(GeneralJson::from).collect(),
            as_of: time_json(m.as_of_ms),
            as_of_index: m.as_of_index,
        }
    }
}
