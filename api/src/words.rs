//! How the store's values read in the API's words: times as RFC 3339 in UTC, statuses as the
//! snake_case strings of API.md. Shared by the JSON shapes (`dto`) and the problem documents
//! (`error`).

use raft_store::{HoldStatus, OrderStatus};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `0000-01-01T00:00:00Z` and `9999-12-31T23:59:59.999Z`: the range RFC 3339 can write, in ms.
const TIME_MS_MIN: i64 = -62_167_219_200_000;
const TIME_MS_MAX: i64 = 253_402_300_799_999;
/// Unix milliseconds as RFC 3339 in UTC.
pub(crate) fn time_json(ms: i64) -> String {
    let nanos = i128::from(ms.clamp(TIME_MS_MIN, TIME_MS_MAX)) * 1_000_000;
    // In range by the clamp above, so neither step can fail; the fallback only keeps this total.
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

pub(crate) fn now_ms() -> i64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

pub(crate) fn hold_status_str(s: HoldStatus) -> &'static str {
    match s {
        HoldStatus::Active => "active",
        HoldStatus::Released => "released",
        HoldStatus::Expired => "expired",
        HoldStatus::CheckedOut => "checked_out",
    }
}

pub(crate) fn order_status_str(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::PendingPayment => "pending_payment",
        OrderStatus::Confirmed => "confirmed",
        OrderStatus::PaymentFailed => "payment_failed",
        OrderStatus::Cancelled => "cancelled",
    }
}
