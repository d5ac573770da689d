//! Venues, events, event summaries and seat maps.

use raft_store::{
    EventId, EventPatch, EventSpec, EventStatus, EventSummary, EventView, GeneralView, GeoPoint, Row, SeatMap,
    SeatStatus, SeatView, Section, SectionKind, SectionKindTag, SectionPrice, SectionView, Venue, VenueId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rules::{self, CAPACITY, DESCRIPTION, LABEL, NAME, PART_ID, PERFORMERS, PRICES, ROWS, SECTIONS};
use super::{parse_time, time_json, MoneyJson};
use crate::error::ApiError;

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct LocationJson {
    #[schema(schema_with = rules::latitude)]
    pub lat: f64,
    #[schema(schema_with = rules::longitude)]
    pub lon: f64,
}

impl LocationJson {
    fn check(&self) -> Result<(), ApiError> {
        let within = |value: f64, max: f64| value.is_finite() && (-max..=max).contains(&value);
        if !within(self.lat, rules::LATITUDE_MAX) || !within(self.lon, rules::LONGITUDE_MAX) {
            return Err(ApiError::BadRequest("`location` is lat -90 to 90 and lon -180 to 180".into()));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RowJson {
    /// Letters, digits and `_`.
    #[schema(schema_with = rules::part_id)]
    pub id: String,
    /// Seats of the row, numbered from 1.
    #[schema(schema_with = rules::seats_per_row)]
    #[serde(deserialize_with = "super::integer::u32")]
    pub seats: u32,
}

/// A section: rows of numbered seats, or general admission sold by quantity.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum SectionJson {
    Seated {
        #[schema(schema_with = rules::part_id)]
        id: String,
        #[schema(schema_with = rules::name)]
        name: String,
        #[schema(schema_with = rules::rows)]
        rows: Vec<RowJson>,
    },
    General {
        #[schema(schema_with = rules::part_id)]
        id: String,
        #[schema(schema_with = rules::name)]
        name: String,
        #[schema(schema_with = rules::capacity)]
        #[serde(deserialize_with = "super::integer::u32")]
        capacity: u32,
    },
}

impl SectionJson {
    fn check(&self) -> Result<(), ApiError> {
        match self {
            SectionJson::Seated { id, name, rows } => {
                PART_ID.check("sections[].id", id)?;
                NAME.check("sections[].name", name)?;
                ROWS.check("sections[].rows", rows.len())?;
                for row in rows {
                    PART_ID.check("sections[].rows[].id", &row.id)?;
                    rules::SEATS_PER_ROW.check("sections[].rows[].seats", i64::from(row.seats))?;
                }
                Ok(())
            }
            SectionJson::General { id, name, capacity } => {
                PART_ID.check("sections[].id", id)?;
                NAME.check("sections[].name", name)?;
                CAPACITY.check("sections[].capacity", i64::from(*capacity))
            }
        }
    }
}

/// Body of `POST /v1/venues`. Section ids are distinct, and so are the row ids of a section;
/// the seats of all rows together are at most 200,000 (422 otherwise).
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub(crate) struct VenueBody {
    #[schema(schema_with = rules::name)]
    pub name: String,
    #[schema(schema_with = rules::label)]
    pub city: String,
    #[schema(schema_with = rules::label)]
    pub country: String,
    pub location: LocationJson,
    #[schema(schema_with = rules::sections)]
    pub sections: Vec<SectionJson>,
}

impl VenueBody {
    /// The rules the document states (400); the venue's own `validate` checks the rest (422).
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        NAME.check("name", &self.name)?;
        LABEL.check("city", &self.city)?;
        LABEL.check("country", &self.country)?;
        self.location.check()?;
        SECTIONS.check("sections", self.sections.len())?;
        self.sections.iter().try_for_each(SectionJson::check)
    }

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
    #[schema(schema_with = rules::name)]
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PriceJson {
    #[schema(schema_with = rules::part_id)]
    pub section: String,
    /// The price of one admission: 0 to 100,000,000 minor units.
    #[schema(schema_with = price_money)]
    pub price: MoneyJson,
}

/// Money as a price: bounded, unlike a total.
pub(crate) fn price_money() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .property("amount", rules::price_amount())
        .property("currency", rules::currency())
        .required("amount")
        .required("currency")
        .build()
}

fn check_performers(performers: &[PerformerJson]) -> Result<(), ApiError> {
    PERFORMERS.check("performers", performers.len())?;
    performers.iter().try_for_each(|p| NAME.check("performers[].name", &p.name))
}

fn check_prices(prices: &[PriceJson]) -> Result<(), ApiError> {
    PRICES.check("prices", prices.len())?;
    for p in prices {
        PART_ID.check("prices[].section", &p.section)?;
        rules::PRICE_AMOUNT.check("prices[].price.amount", p.price.amount)?;
        rules::CURRENCY.check("prices[].price.currency", &p.price.currency)?;
    }
    Ok(())
}

fn check_time(field: &str, text: &str) -> Result<(), ApiError> {
    parse_time(field, text).map(drop)
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

/// Body of `POST /v1/events`. Beyond what the schema says (400 otherwise): `starts_at` is in
/// the future, `on_sale_at` not after it, and `prices` name every section of the venue once, in
/// one currency (422 otherwise).
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub(crate) struct EventBody {
    #[schema(schema_with = rules::name)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = rules::description)]
    pub description: String,
    #[schema(schema_with = rules::label)]
    pub category: String,
    #[serde(default)]
    #[schema(schema_with = rules::performers)]
    pub performers: Vec<PerformerJson>,
    #[schema(schema_with = rules::venue_id)]
    pub venue_id: String,
    /// RFC 3339.
    #[schema(schema_with = rules::time_text)]
    pub starts_at: String,
    /// RFC 3339; default now.
    #[serde(default)]
    #[schema(schema_with = rules::time_text_or_null)]
    pub on_sale_at: Option<String>,
    /// One price for every section of the venue.
    #[schema(schema_with = rules::prices)]
    pub prices: Vec<PriceJson>,
    #[serde(default, deserialize_with = "super::integer::option_u32")]
    #[schema(schema_with = rules::per_user_limit_or_null)]
    pub per_user_limit: Option<u32>,
    #[serde(default)]
    pub high_traffic: bool,
}

impl EventBody {
    /// The rules the document states (400); the event's `validate` checks the rest (422).
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        NAME.check("name", &self.name)?;
        DESCRIPTION.check("description", &self.description)?;
        LABEL.check("category", &self.category)?;
        check_performers(&self.performers)?;
        check_time("starts_at", &self.starts_at)?;
        self.on_sale_at.as_deref().map(|t| check_time("on_sale_at", t)).transpose()?;
        check_prices(&self.prices)?;
        self.per_user_limit.map(|n| rules::PER_USER_LIMIT.check("per_user_limit", i64::from(n))).transpose()?;
        Ok(())
    }

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

/// Body of `PATCH /v1/events/{event_id}`: absent (or `null`) fields stay as they are, except
/// `per_user_limit`, which `null` removes. The event as patched must meet the rules of
/// `POST /v1/events` (422 otherwise).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub(crate) struct EventPatchBody {
    #[schema(schema_with = rules::name_or_null)]
    pub name: Option<String>,
    #[schema(schema_with = rules::description_or_null)]
    pub description: Option<String>,
    #[schema(schema_with = rules::label_or_null)]
    pub category: Option<String>,
    #[schema(schema_with = rules::performers_or_null)]
    pub performers: Option<Vec<PerformerJson>>,
    #[schema(schema_with = rules::time_text_or_null)]
    pub starts_at: Option<String>,
    #[schema(schema_with = rules::time_text_or_null)]
    pub on_sale_at: Option<String>,
    #[schema(schema_with = rules::prices_or_null)]
    pub prices: Option<Vec<PriceJson>>,
    /// `null` removes the limit.
    #[serde(default, deserialize_with = "super::integer::present_u32")]
    #[schema(schema_with = rules::per_user_limit_or_null)]
    pub per_user_limit: Option<Option<u32>>,
    pub high_traffic: Option<bool>,
}

impl EventPatchBody {
    /// The rules the document states (400); the patched event's `validate` checks the rest.
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        self.name.as_deref().map(|v| NAME.check("name", v)).transpose()?;
        self.description.as_deref().map(|v| DESCRIPTION.check("description", v)).transpose()?;
        self.category.as_deref().map(|v| LABEL.check("category", v)).transpose()?;
        self.performers.as_deref().map(check_performers).transpose()?;
        self.starts_at.as_deref().map(|t| check_time("starts_at", t)).transpose()?;
        self.on_sale_at.as_deref().map(|t| check_time("on_sale_at", t)).transpose()?;
        self.prices.as_deref().map(check_prices).transpose()?;
        if let Some(Some(n)) = self.per_user_limit {
            rules::PER_USER_LIMIT.check("per_user_limit", i64::from(n))?;
        }
        Ok(())
    }

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
