//! One event as both backends index it: the fields search matches and filters on, what a hit's
//! summary shows, and the shard log index it reflects.

use raft_store::{EventId, EventStatus, EventSummary, EventView, Money};
use serde::{Deserialize, Serialize};

/// An event as indexed. Its serde form is what both backends store (the embedded index as one
/// stored JSON field, Elasticsearch as `_source`), so a hit decodes the same way from either.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub event_id: EventId,
    pub name: String,
    pub description: String,
    pub performers: Vec<String>,
    pub category: String,
    pub venue_name: String,
    pub city: String,
    pub country: String,
    /// JSON has no NaN or infinity: they are written as `null` and read back as NaN, a point
    /// that no distance filter matches.
    #[serde(deserialize_with = "nan_from_null")]
    pub lat: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub lon: f64,
    pub starts_at_ms: i64,
    #[serde(with = "money_json")]
    pub price_min: Money,
    #[serde(with = "money_json")]
    pub price_max: Money,
    /// Admissions on sale when the event was read.
    pub available: u32,
    pub status: EventStatus,
    /// The shard log index this document reflects: a document never replaces one with a higher
    /// version.
    pub version: u64,
    pub shard: u32,
}

impl Document {
    /// The document for an event read at (or after) log index `version` of `shard`.
    pub fn from_view(view: &EventView, version: u64, shard: u32) -> Document {
        let spec = &view.spec;
        let currency = spec.currency();
        // The same price range and availability the store's own event list shows.
        let prices = spec.prices.iter().map(|p| p.price.amount);
        Document {
            event_id: spec.event_id.clone(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            performers: spec.performers.clone(),
            category: spec.category.clone(),
            venue_name: spec.venue.name.clone(),
            city: spec.venue.city.clone(),
            country: spec.venue.country.clone(),
            lat: spec.venue.location.lat,
            lon: spec.venue.location.lon,
            starts_at_ms: spec.starts_at_ms,
            price_min: Money::new(prices.clone().min().unwrap_or(0), currency),
            price_max: Money::new(prices.max().unwrap_or(0), currency),
            available: view.sections.iter().map(|s| s.available).fold(0u32, u32::saturating_add),
            status: view.status,
            version,
            shard,
        }
    }

    pub fn summary(&self) -> EventSummary {
        EventSummary {
            event_id: self.event_id.clone(),
            name: self.name.clone(),
            category: self.category.clone(),
            starts_at_ms: self.starts_at_ms,
            venue_name: self.venue_name.clone(),
            venue_city: self.city.clone(),
            performers: self.performers.clone(),
            price_min: self.price_min,
            price_max: self.price_max,
            available: self.available,
            status: self.status,
        }
    }

    /// The event id as a number that sorts like the id: ids are `ev` and 16 lower-case hex
    /// digits, so comparing the numbers compares the strings (Elasticsearch sorts the strings).
    pub(crate) fn sort_key(event_id: &EventId) -> u64 {
        let hex = event_id.as_str().get(EventId::PREFIX.len()..).unwrap_or("");
        u64::from_str_radix(hex, 16).unwrap_or(u64::MAX)
    }
}

fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// `{"amount": 1500, "currency": "USD"}`, the public shape of money, rather than the bytes of
/// the currency code that `Money`'s derived form would store.
mod money_json {
    use raft_store::{Currency, Money};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct MoneyJson<'a> {
        amount: i64,
        currency: &'a str,
    }

    pub fn serialize<S: Serializer>(money: &Money, s: S) -> Result<S::Ok, S::Error> {
        MoneyJson { amount: money.amount, currency: money.currency.as_str() }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        #[derive(Deserialize)]
        struct Owned {
            amount: i64,
            currency: String,
        }
        let owned = Owned::deserialize(d)?;
        let currency = Currency::parse(&owned.currency)
            .ok_or_else(|| D::Error::custom(format!("`{}` is not a currency code", owned.currency)))?;
        Ok(Money::new(owned.amount, currency))
    }
}

#[cfg(test)]
pub(crate) fn usd(amount: i64) -> Money {
    Money::new(amount, raft_store::Currency::USD)
}
