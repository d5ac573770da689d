//! The public JSON shapes of API.md and their translation to and from the store's vocabulary.
//!
//! Only this module knows both sides: inside, times are Unix milliseconds and statuses are enums;
//! outside, times are RFC 3339 in UTC and statuses are snake_case strings.

mod booking;
mod catalog;

use raft_store::{Currency, Money};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::ApiError;

pub(crate) use crate::words::{now_ms, time_json};
pub(crate) use booking::*;
pub(crate) use catalog::*;

/// Longest time string accepted; RFC 3339 with nanoseconds and an offset is 35 characters.
const TIME_TEXT_LEN_MAX: usize = 64;

/// An RFC 3339 time (any offset) as Unix milliseconds; `field` names it in the error.
pub(crate) fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::BadRequest(format!("`{field}` must be an RFC 3339 time such as 2030-06-01T20:00:00Z"));
    if text.len() > TIME_TEXT_LEN_MAX {
        return Err(bad());
    }
    let time = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?;
    i64::try_from(time.unix_timestamp_nanos().div_euclid(1_000_000)).map_err(|_| bad())
}

/// Money: `{"amount": <integer minor units>, "currency": "USD"}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct MoneyJson {
    /// Minor units (cents for USD).
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
