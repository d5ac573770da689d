//! The public JSON shapes of API.md and their translation to and from the store's vocabulary.
//!
//! Only this module knows both sides: inside, times are Unix milliseconds and statuses are enums;
//! outside, times are RFC 3339 in UTC and statuses are snake_case strings.

mod booking;
mod catalog;
mod payments;
mod pricing;
pub(crate) mod rules;
mod tickets;
mod webhooks;

use raft_store::{Currency, Money};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::ApiError;

pub(crate) use crate::words::{now_ms, time_json};
pub(crate) use booking::*;
pub(crate) use catalog::*;
pub(crate) use payments::*;
pub(crate) use pricing::*;
pub(crate) use tickets::*;
pub(crate) use webhooks::*;

use rules::TIME_TEXT_LEN_MAX;

/// An RFC 3339 time (any offset) as Unix milliseconds; `field` names it in the error.
pub(crate) fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::BadRequest(format!("`{field}` must be an RFC 3339 time such as 2030-06-01T20:00:00Z"));
    if text.len() > TIME_TEXT_LEN_MAX {
        return Err(bad());
    }
    let time = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?;
    i64::try_from(time.unix_timestamp_nanos().div_euclid(1_000_000)).map_err(|_| bad())
}

/// Integers in request bodies. JSON does not tell `2` from `2.0`, and neither does a schema's
/// `integer`: any integral number is read as the integer it is; a fraction, or a value the
/// field cannot hold, is refused (400).
pub(crate) mod integer {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};
    use serde_json::Number;

    fn integral<E: Error, T: TryFrom<i64>>(n: &Number) -> Result<T, E> {
        let whole = n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            // `i64::MAX as f64` rounds up to 2^63, which `as i64` would saturate: keep below it.
            (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
        });
        whole.and_then(|v| T::try_from(v).ok()).ok_or_else(|| E::custom(format!("{n} is not an integer in range")))
    }

    pub(crate) fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        integral(&Number::deserialize(d)?)
    }

    pub(crate) fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        integral(&Number::deserialize(d)?)
    }

    /// `null` or absent (with `#[serde(default)]`): `None`.
    pub(crate) fn option_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        Option::<Number>::deserialize(d)?.as_ref().map(integral).transpose()
    }

    /// Absent (with `#[serde(default)]`): `None`; `null`: `Some(None)`.
    pub(crate) fn present_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
        option_u32(d).map(Some)
    }
}

/// Money: `{"amount": <integer minor units>, "currency": "USD"}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct MoneyJson {
    /// Minor units (cents for USD).
    #[serde(deserialize_with = "integer::i64")]
    pub amount: i64,
    /// ISO 4217 code: three upper-case letters.
    #[schema(example = "USD")]
    pub currency: String,
}

impl From<Money> for MoneyJson {
    fn from(m: Money) -> Self {
        MoneyJson { amount: m.amount, currency: m.currency.as_str().to_owned() }
    }
}

impl MoneyJson {
    pub(crate) fn to_money(&self, field: &str) -> Result<Money, ApiError> {
        let currency = Currency::parse(&self.currency)
            .ok_or_else(|| ApiError::BadRequest(format!("`{field}.currency` must be an ISO 4217 code such as USD")))?;
        Ok(Money::new(self.amount, currency))
    }
}

/// One page of a list: `next_cursor` is null on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Page<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339_in_utc() {
        let ms = parse_time("t", "2030-06-01T22:00:00.250+02:00").unwrap();
        assert_eq!(time_json(ms), "2030-06-01T20:00:00.25Z");
        assert_eq!(parse_time("t", &time_json(ms)).unwrap(), ms);
        assert_eq!(time_json(0), "1970-01-01T00:00:00Z");
        assert!(parse_time("t", "tomorrow").is_err());
        assert!(parse_time("t", &"9".repeat(1000)).is_err());
        assert!(time_json(i64::MAX).starts_with("9999-12-31"));
    }
}
