//! The catalog records (venues, events) as they are proposed and stored, the views that reads and
//! outcomes return, and the validation both the api and apply run on them.
//!
//! Times are Unix milliseconds (`*_ms`), money is integer minor units. These types know nothing of
//! JSON or HTTP: the api maps them to the public shapes.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{EventId, HoldId, OrderId, TicketId, UserId, VenueId};
use crate::limits::*;

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn parse(s: &str) -> Option<Currency> {
        let b = s.as_bytes();
        (b.len() == 3 && b.iter().all(u8::is_ascii_uppercase)).then(|| Currency([b[0], b[1], b[2]]))
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from three ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Minor units (cents for USD).
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Money {
        Money { amount, currency }
    }

    pub fn zero(currency: Currency) -> Money {
        Money { amount: 0, currency }
    }

    /// `self × n`; amounts are bounded so this cannot overflow for bounded `n`.
    pub fn times(self, n: u32) -> Money {
        Money { amount: self.amount * i64::from(n), currency: self.currency }
    }

    pub fn plus(self, other: Money) -> Money {
        debug_assert_eq!(self.currency, other.currency, "one event has one currency");
        Money { amount: self.amount + other.amount, currency: self.currency }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Venue {
    pub venue_id: VenueId,
    pub name: String,
    pub city: String,
    pub country: String,
    pub location: GeoPoint,
    pub sections: Vec<Section>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Letters, digits and `_`: it is the first part of a seat id.
    pub id: String,
    pub name: String,
    pub kind: SectionKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SectionKind {
    /// Rows of seats numbered from 1; seat id `SECTION-ROW-NUMBER`.
    Seated { rows: Vec<Row> },
    /// Sold by quantity up to a capacity.
    General { capacity: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub seats: u32,
}

impl Section {
    pub fn capacity(&self) -> u32 {
        match &self.kind {
            SectionKind::Seated { rows } => rows.iter().map(|r| r.seats).sum(),
            SectionKind::General { capacity } => *capacity,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SectionPrice {
    pub section: String,
    pub price: Money,
}

/// An event as an admin creates it. The venue is copied in whole, so a shard's apply never needs
/// another group's data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventSpec {
    pub event_id: EventId,
    pub name: String,
    pub description: String,
    pub category: String,
    pub performers: Vec<String>,
    pub venue: Venue,
    pub starts_at_ms: i64,
    pub on_sale_at_ms: i64,
    pub prices: Vec<SectionPrice>,
    pub per_user_limit: Option<u32>,
    pub high_traffic: bool,
}

/// One step of a dynamic price: from `at_least` on (a percentage of the section taken, or sales
/// within the window), the base price moves by `adjust_percent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceStep {
    pub at_least: u32,
    pub adjust_percent: i32,
}

/// How one section of an event is priced by demand. The price is the base moved by the highest
/// demand step the section's taken share (held or sold, in percent of its capacity) reaches and
/// the highest sales step its sales in the last `window_minutes` reach, held within
/// `floor..=ceiling`. Decided in apply from replicated state; a hold locks the price it was made
/// at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRule {
    pub section: String,
    pub base: Money,
    pub floor: Money,
    pub ceiling: Money,
    /// By percentage taken (1 to 100), strictly increasing.
    pub demand_steps: Vec<PriceStep>,
    /// The window of recent sales the sales steps count (1 to a day; 0 without sales steps).
    pub window_minutes: u32,
    /// By sales within the window (at least 1), strictly increasing.
    pub sales_steps: Vec<PriceStep>,
}

fn check_steps(kind: &str, steps: &[PriceStep], at_least_max: u32) -> Result<(), String> {
    if steps.len() > PRICE_STEPS_MAX {
        return Err(format!("a rule has at most {PRICE_STEPS_MAX} {kind} steps"));
    }
    let mut previous = 0;
    for step in steps {
        if step.at_least <= previous || step.at_least > at_least_max {
            return Err(format!("{kind} steps' `at_least` increase strictly, from 1 to {at_least_max}"));
        }
        previous = step.at_least;
        if !(PRICE_ADJUST_PERCENT_MIN..=PRICE_ADJUST_PERCENT_MAX).contains(&step.adjust_percent) {
            return Err(format!(
                "`adjust_percent` is between {PRICE_ADJUST_PERCENT_MIN} and {PRICE_ADJUST_PERCENT_MAX}"
            ));
        }
    }
    Ok(())
}

/// The adjustment of the highest step `value` reaches; 0 below the first.
fn step_adjust(steps: &[PriceStep], value: u32) -> i32 {
    steps.iter().rev().find(|s| value >= s.at_least).map_or(0, |s| s.adjust_percent)
}

impl PriceRule {
    /// Checks the rules of one event against its spec: known sections, each once, in the event's
    /// currency, with bounds and steps in range.
    pub fn validate_all(rules: &[PriceRule], spec: &EventSpec) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        let currency = spec.prices.first().map(|p| p.price.currency);
        for rule in rules {
            if spec.venue.section(&rule.section).is_none() {
                return Err(format!("a pricing rule for unknown section `{}`", rule.section));
            }
            if !seen.insert(rule.section.as_str()) {
                return Err(format!("section `{}` has two pricing rules", rule.section));
            }
            for (name, money) in [("base", rule.base), ("floor", rule.floor), ("ceiling", rule.ceiling)] {
                if money.amount < 0 || money.amount > PRICE_AMOUNT_MAX {
                    return Err(format!("`{name}` is between 0 and {PRICE_AMOUNT_MAX} minor units"));
                }
                if Some(money.currency) != currency {
                    return Err(format!("`{name}` is in the event's currency"));
                }
            }
            if rule.floor.amount > rule.ceiling.amount {
                return Err("`floor` is at most `ceiling`".into());
            }
            check_steps("demand", &rule.demand_steps, 100)?;
            check_steps("sales", &rule.sales_steps, u32::MAX)?;
            let window_ok = match rule.sales_steps.is_empty() {
                true => rule.window_minutes <= PRICE_WINDOW_MINUTES_MAX,
                false => (1..=PRICE_WINDOW_MINUTES_MAX).contains(&rule.window_minutes),
            };
            if !window_ok {
                return Err(format!("`window_minutes` is between 1 and {PRICE_WINDOW_MINUTES_MAX} with sales steps"));
            }
        }
        Ok(())
    }

    /// The price with `taken` of `capacity` held or sold and `recent_sales` in the window.
    pub fn price(&self, capacity: u32, taken: u32, recent_sales: u32) -> Money {
        let taken_percent = match capacity {
            0 => 100,
            c => (u64::from(taken) * 100 / u64::from(c)) as u32,
        };
        let adjust = step_adjust(&self.demand_steps, taken_percent) + step_adjust(&self.sales_steps, recent_sales);
        let moved = i128::from(self.base.amount) * i128::from(100 + adjust) / 100;
        let amount = moved.clamp(i128::from(self.floor.amount), i128::from(self.ceiling.amount)) as i64;
        Money::new(amount, self.base.currency)
    }
}

/// An event's pricing rules and the prices they give now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PricingView {
    pub event_id: EventId,
    pub rules: Vec<PriceRule>,
    pub prices: Vec<SectionPrice>,
}

/// The fields an admin may change on an existing event; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub performers: Option<Vec<String>>,
    pub starts_at_ms: Option<i64>,
    pub on_sale_at_ms: Option<i64>,
    pub prices: Option<Vec<SectionPrice>>,
    /// `Some(None)` removes the limit.
    pub per_user_limit: Option<Option<u32>>,
    pub high_traffic: Option<bool>,
}

impl EventPatch {
    pub fn apply_to(&self, spec: &EventSpec) -> EventSpec {
        let mut next = spec.clone();
        if let Some(v) = &self.name {
            next.name = v.clone();
        }
        if let Some(v) = &self.description {
            next.description = v.clone();
        }
        if let Some(v) = &self.category {
            next.category = v.clone();
        }
        if let Some(v) = &self.performers {
            next.performers = v.clone();
        }
        if let Some(v) = self.starts_at_ms {
            next.starts_at_ms = v;
        }
        if let Some(v) = self.on_sale_at_ms {
            next.on_sale_at_ms = v;
        }
        if let Some(v) = &self.prices {
            next.prices = v.clone();
        }
        if let Some(v) = self.per_user_limit {
            next.per_user_limit = v;
        }
        if let Some(v) = self.high_traffic {
            next.high_traffic = v;
        }
        next
    }
}

// ---------------------------------------------------------------------------------------------
// Validation. Messages are written for the client developer who sent the request.

fn check_text(field: &str, value: &str, max_chars: usize, multiline: bool) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("`{field}` must not be empty"));
    }
    if value.chars().count() > max_chars {
        return Err(format!("`{field}` is longer than {max_chars} characters"));
    }
    let bad = |c: char| c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r'));
    if value.chars().any(bad) {
        return Err(format!("`{field}` contains control characters"));
    }
    Ok(())
}

/// Section and row ids: 1–32 letters, digits or `_`.
pub fn is_valid_part_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= SECTION_ID_LEN_MAX && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Venue {
    pub fn validate(&self) -> Result<(), String> {
        check_text("name", &self.name, NAME_LEN_MAX, false)?;
        check_text("city", &self.city, LABEL_LEN_MAX, false)?;
        check_text("country", &self.country, LABEL_LEN_MAX, false)?;
        let GeoPoint { lat, lon } = self.location;
        if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
            return Err("`location.lat` must be between -90 and 90".into());
        }
        if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
            return Err("`location.lon` must be between -180 and 180".into());
        }
        if self.sections.is_empty() || self.sections.len() > SECTIONS_PER_VENUE_MAX {
            return Err(format!("a venue has 1 to {SECTIONS_PER_VENUE_MAX} sections"));
        }
        let mut ids = BTreeSet::new();
        let mut seats_total: u32 = 0;
        for section in &self.sections {
            if !is_valid_part_id(&section.id) {
                return Err(format!(
                    "section id `{}` must be 1 to {SECTION_ID_LEN_MAX} letters, digits or `_`",
                    section.id
                ));
            }
            if !ids.insert(section.id.as_str()) {
                return Err(format!("section id `{}` appears twice", section.id));
            }
            check_text("sections[].name", &section.name, NAME_LEN_MAX, false)?;
            match &section.kind {
                SectionKind::Seated { rows } => {
                    if rows.is_empty() || rows.len() > ROWS_PER_SECTION_MAX {
                        return Err(format!("seated section `{}` has 1 to {ROWS_PER_SECTION_MAX} rows", section.id));
                    }
                    let mut row_ids = BTreeSet::new();
                    for row in rows {
                        if !is_valid_part_id(&row.id) {
                            return Err(format!(
                                "row id `{}` must be 1 to {SECTION_ID_LEN_MAX} letters, digits or `_`",
                                row.id
                            ));
                        }
                        if !row_ids.insert(row.id.as_str()) {
                            return Err(format!("row `{}` appears twice in section `{}`", row.id, section.id));
                        }
                        if row.seats == 0 || row.seats > SEATS_PER_ROW_MAX {
                            return Err(format!("a row has 1 to {SEATS_PER_ROW_MAX} seats"));
                        }
                        seats_total = seats_total.saturating_add(row.seats);
                    }
                }
                SectionKind::General { capacity } => {
                    if *capacity == 0 || *capacity > GENERAL_CAPACITY_MAX {
                        return Err(format!(
                            "general section `{}` has a capacity of 1 to {GENERAL_CAPACITY_MAX}",
                            section.id
                        ));
                    }
                }
            }
        }
        if seats_total > SEATS_PER_VENUE_MAX {
            return Err(format!("a venue has at most {SEATS_PER_VENUE_MAX} numbered seats"));
        }
        Ok(())
    }

    pub fn section(&self, id: &str) -> Option<(usize, &Section)> {
        self.sections.iter().enumerate().find(|(_, s)| s.id == id)
    }
}

impl EventSpec {
    /// Checks everything that does not depend on time or on other records.
    pub fn validate(&self) -> Result<(), String> {
        check_text("name", &self.name, NAME_LEN_MAX, false)?;
        if self.description.chars().count() > DESCRIPTION_LEN_MAX {
            return Err(format!("`description` is longer than {DESCRIPTION_LEN_MAX} characters"));
        }
        if !self.description.is_empty() {
            check_text("description", &self.description, DESCRIPTION_LEN_MAX, true)?;
        }
        check_text("category", &self.category, LABEL_LEN_MAX, false)?;
        if self.performers.len() > PERFORMERS_PER_EVENT_MAX {
            return Err(format!("an event has at most {PERFORMERS_PER_EVENT_MAX} performers"));
        }
        for p in &self.performers {
            check_text("performers[].name", p, NAME_LEN_MAX, false)?;
        }
        self.venue.validate()?;
        if self.on_sale_at_ms > self.starts_at_ms {
            return Err("`on_sale_at` must not be after `starts_at`".into());
        }
        if let Some(limit) = self.per_user_limit {
            if limit == 0 || limit > PER_USER_LIMIT_MAX {
                return Err(format!("`per_user_limit` is between 1 and {PER_USER_LIMIT_MAX}"));
            }
        }
        self.validate_prices()
    }

    fn validate_prices(&self) -> Result<(), String> {
        let mut priced = BTreeSet::new();
        let mut currency = None;
        for p in &self.prices {
            if self.venue.section(&p.section).is_none() {
                return Err(format!("price given for unknown section `{}`", p.section));
            }
            if !priced.insert(p.section.as_str()) {
                return Err(format!("section `{}` is priced twice", p.section));
            }
            if p.price.amount < 0 || p.price.amount > PRICE_AMOUNT_MAX {
                return Err(format!("a price is between 0 and {PRICE_AMOUNT_MAX} minor units"));
            }
            if *currency.get_or_insert(p.price.currency) != p.price.currency {
                return Err("all prices of an event use one currency".into());
            }
        }
        if let Some(missing) = self.venue.sections.iter().find(|s| !priced.contains(s.id.as_str())) {
            return Err(format!("section `{}` of the venue has no price", missing.id));
        }
        Ok(())
    }

    pub fn price_of(&self, section: &str) -> Option<Money> {
        self.prices.iter().find(|p| p.section == section).map(|p| p.price)
    }

    pub fn currency(&self) -> Currency {
        self.prices.first().map(|p| p.price.currency).unwrap_or(Currency::USD)
    }
}

// ---------------------------------------------------------------------------------------------
// Views: what reads and outcomes return.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldStatus {
    Active,
    Released,
    Expired,
    CheckedOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    PendingPayment,
    Confirmed,
    PaymentFailed,
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketStatus {
    Valid,
    Cancelled,
    // Appended after format 2's last variant (see `Command`).
    /// Admitted at the door.
    CheckedIn,
}

/// Derived when read, from the time of the read and the inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventStatus {
    /// Before `on_sale_at`.
    Scheduled,
    OnSale,
    SoldOut,
    /// At or after `starts_at`: sales have ended.
    Ended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SectionKindTag {
    Seated,
    General,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SectionView {
    pub section: String,
    pub name: String,
    pub kind: SectionKindTag,
    pub price: Money,
    pub capacity: u32,
    pub available: u32,
    pub held: u32,
    pub sold: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub spec: EventSpec,
    pub status: EventStatus,
    pub sections: Vec<SectionView>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    pub event_id: EventId,
    pub name: String,
    pub category: String,
    pub starts_at_ms: i64,
    pub venue_name: String,
    pub venue_city: String,
    pub performers: Vec<String>,
    pub price_min: Money,
    pub price_max: Money,
    pub available: u32,
    pub status: EventStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeatView {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: u32,
    pub status: SeatStatus,
    pub price: Money,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneralView {
    pub section: String,
    pub capacity: u32,
    pub available: u32,
    pub price: Money,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeatMap {
    pub event_id: EventId,
    /// The time the map was read at, and the last log index applied to it.
    pub as_of_ms: i64,
    pub as_of_index: u64,
    pub seats: Vec<SeatView>,
    pub general: Vec<GeneralView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HoldView {
    pub hold_id: HoldId,
    pub event_id: EventId,
    pub user_id: UserId,
    pub seats: Vec<String>,
    /// Set for a general-admission hold, with `quantity`.
    pub section: Option<String>,
    pub quantity: Option<u32>,
    pub total: Money,
    pub status: HoldStatus,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// When it stopped being active: released, expired or checked out.
    pub ended_at_ms: Option<i64>,
    pub order_id: Option<OrderId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketView {
    pub ticket_id: TicketId,
    pub order_id: OrderId,
    pub event_id: EventId,
    pub user_id: UserId,
    pub seat: Option<String>,
    pub section: String,
    pub status: TicketStatus,
}

/// A ticket as its holder sees it: the view (`user_id` is the holder now), the version of its
/// code (0 as issued, one more with each transfer) and when it was admitted at the door.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketCard {
    pub view: TicketView,
    pub version: u32,
    pub admitted_at_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: OrderId,
    pub event_id: EventId,
    pub user_id: UserId,
    pub hold_id: HoldId,
    pub status: OrderStatus,
    pub total: Money,
    pub tickets: Vec<TicketView>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// While `PendingPayment`: when the seats go back on sale if no payment result arrives.
    pub payment_deadline_ms: i64,
    pub payment_reference: Option<String>,
    pub refunded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn venue() -> Venue {
        Venue {
            venue_id: VenueId::from_u64(1),
            name: "Hall".into(),
            city: "Lisbon".into(),
            country: "PT".into(),
            location: GeoPoint { lat: 38.7, lon: -9.1 },
            sections: vec![
                Section {
                    id: "FLOOR".into(),
                    name: "Floor".into(),
                    kind: SectionKind::Seated { rows: vec![Row { id: "A".into(), seats: 3 }] },
                },
                Section { id: "LAWN".into(), name: "Lawn".into(), kind: SectionKind::General { capacity: 5 } },
            ],
        }
    }

    #[test]
    fn venue_validation_names_the_problem() {
        assert_eq!(venue().validate(), Ok(()));
        let mut v = venue();
        v.sections[1].id = "FLOOR".into();
        assert!(v.validate().unwrap_err().contains("appears twice"));
        let mut v = venue();
        v.sections[0].id = "FLO-OR".into();
        assert!(v.validate().unwrap_err().contains("letters, digits"));
        let mut v = venue();
        v.location.lat = f64::NAN;
        assert!(v.validate().is_err());
        let mut v = venue();
        v.name = "a\u{0}b".into();
        assert!(v.validate().unwrap_err().contains("control"));
    }

    #[test]
    fn event_needs_a_price_for_every_section_in_one_currency() {
        let usd = |amount| Money::new(amount, Currency::USD);
        let mut spec = EventSpec {
            event_id: EventId::from_u64(1),
            name: "Show".into(),
            description: String::new(),
            category: "music".into(),
            performers: vec![],
            venue: venue(),
            starts_at_ms: 10,
            on_sale_at_ms: 0,
            prices: vec![SectionPrice { section: "FLOOR".into(), price: usd(100) }],
            per_user_limit: None,
            high_traffic: false,
        };
        assert!(spec.validate().unwrap_err().contains("`LAWN`"));
        spec.prices
            .push(SectionPrice { section: "LAWN".into(), price: Money::new(5, Currency::parse("EUR").unwrap()) });
        assert!(spec.validate().unwrap_err().contains("one currency"));
        spec.prices[1].price = usd(5);
        assert_eq!(spec.validate(), Ok(()));
        spec.on_sale_at_ms = 11;
        assert!(spec.validate().is_err());
    }
}
