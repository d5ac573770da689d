//! The rules of request values that `/openapi.json` declares, each written once and used twice:
//! as the schema in the document (`schema_with` on the DTOs' fields) and as the check the
//! handlers run before anything else. A request that breaks one answers 400 `bad_request`, so a
//! 400 always means "the document said no". What a schema cannot say — rules between fields, an
//! event's prices against its venue's sections, the clock — the store's model checks afterwards,
//! and a request that breaks only those answers 422 (`ApiError::Unprocessable`).
//!
//! Patterns are written for both ECMA-262 (the document's dialect) and Rust's `regex` (the
//! tests'): plain classes and `\uXXXX` escapes only. The tests run every pattern and its check
//! over the same strings and require them to agree.

use raft_store::{
    is_valid_part_id, DESCRIPTION_LEN_MAX, GENERAL_CAPACITY_MAX, HOLD_QUANTITY_MAX, HOLD_SEATS_MAX, LABEL_LEN_MAX,
    NAME_LEN_MAX, PERFORMERS_PER_EVENT_MAX, PER_USER_LIMIT_MAX, PRICE_ADJUST_PERCENT_MAX, PRICE_ADJUST_PERCENT_MIN,
    PRICE_AMOUNT_MAX, PRICE_STEPS_MAX, PRICE_WINDOW_MINUTES_MAX, ROWS_PER_SECTION_MAX, SEATS_PER_ROW_MAX,
    SECTIONS_PER_VENUE_MAX, SECTION_ID_LEN_MAX, USER_ID_LEN_MAX, WEBHOOK_URL_LEN_MAX,
};
use serde_json::json;
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, Object, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{Array, RefOr, Schema};

use crate::error::ApiError;
use crate::identity::IDEMPOTENCY_KEY_LEN_MAX;

/// Characters Rust's `char::is_control` names (Unicode `Cc`), as a class body.
pub(crate) const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// The same without tab, line feed and carriage return, which multi-line text may hold.
const CONTROL_BUT_LINES: &str = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f";
/// Characters that are neither control characters nor Rust's `char::is_whitespace` (Unicode
/// `White_Space`): what makes a text not blank after `trim()`. A class body to negate.
const BLANK_OR_CONTROL: &str = r"\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Longest RFC 3339 time accepted, in characters (`dto::parse_time` checks it); one with
/// nanoseconds and an offset is 35.
pub(crate) const TIME_TEXT_LEN_MAX: usize = 64;
/// Longest user id a dev token is made for: printable ASCII, so characters are bytes.
const DEV_USER_ID_LEN_MAX: usize = USER_ID_LEN_MAX;

fn string(nullable: bool) -> ObjectBuilder {
    let kind: SchemaType =
        if nullable { [Type::String, Type::Null].into_iter().collect() } else { SchemaType::new(Type::String) };
    ObjectBuilder::new().schema_type(kind)
}

fn integer(nullable: bool, min: i64, max: i64) -> Object {
    let kind: SchemaType =
        if nullable { [Type::Integer, Type::Null].into_iter().collect() } else { SchemaType::new(Type::Integer) };
    ObjectBuilder::new().schema_type(kind).minimum(Some(min)).maximum(Some(max)).build()
}

/// Free text: not blank and without control characters (multi-line text may be empty and may
/// hold tabs and line breaks), at most `max_chars` characters — `raft_store`'s `check_text`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Text {
    max_chars: usize,
    multiline: bool,
}

pub(crate) const NAME: Text = Text { max_chars: NAME_LEN_MAX, multiline: false };
pub(crate) const LABEL: Text = Text { max_chars: LABEL_LEN_MAX, multiline: false };
pub(crate) const DESCRIPTION: Text = Text { max_chars: DESCRIPTION_LEN_MAX, multiline: true };

impl Text {
    pub(crate) fn pattern(self) -> String {
        if self.multiline {
            format!("^([^{CONTROL_BUT_LINES}]*[^{BLANK_OR_CONTROL}][^{CONTROL_BUT_LINES}]*)?$")
        } else {
            format!("^[^{CONTROL}]*[^{BLANK_OR_CONTROL}][^{CONTROL}]*$")
        }
    }

    fn schema(self, nullable: bool) -> Object {
        string(nullable)
            .min_length(Some(usize::from(!self.multiline)))
            .max_length(Some(self.max_chars))
            .pattern(Some(self.pattern()))
            .build()
    }

    pub(crate) fn check(self, field: &str, value: &str) -> Result<(), ApiError> {
        let bad = |why: String| Err(ApiError::BadRequest(format!("`{field}` {why}")));
        if value.chars().count() > self.max_chars {
            return bad(format!("is longer than {} characters", self.max_chars));
        }
        if self.multiline && value.is_empty() {
            return Ok(());
        }
        if value.trim().is_empty() {
            return bad("must not be blank".into());
        }
        let allowed = |c: char| !c.is_control() || (self.multiline && matches!(c, '\t' | '\n' | '\r'));
        if !value.chars().all(allowed) {
            return bad("contains control characters".into());
        }
        Ok(())
    }
}

/// A token of fixed grammar: a pattern for the document, the same rule as a function here.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub pattern: fn() -> String,
    pub accepts: fn(&str) -> bool,
    /// What the value is, for the 400's detail: "`field` must be …".
    pub what: &'static str,
    /// Shown as the schema's example; none where clients should not copy one (a key).
    pub example: Option<&'static str>,
}

impl Shape {
    pub(crate) fn pattern(self) -> String {
        (self.pattern)()
    }

    pub(crate) fn accepts(self, value: &str) -> bool {
        (self.accepts)(value)
    }

    pub(crate) fn schema(self, nullable: bool) -> Object {
        string(nullable).pattern(Some(self.pattern())).examples(self.example.map(|e| json!(e))).build()
    }

    pub(crate) fn check(self, field: &str, value: &str) -> Result<(), ApiError> {
        if self.accepts(value) {
            Ok(())
        } else {
            Err(ApiError::BadRequest(format!("`{field}` must be {}", self.what)))
        }
    }
}

fn part_id_pattern() -> String {
    format!("[A-Za-z0-9_]{{1,{SECTION_ID_LEN_MAX}}}")
}

/// Digits of the largest seat number (`SEATS_PER_ROW_MAX`).
fn seat_number_digits_max() -> usize {
    SEATS_PER_ROW_MAX.to_string().len()
}

/// Section and row ids: chosen by the venue's author.
pub(crate) const PART_ID: Shape = Shape {
    pattern: || format!("^{}$", part_id_pattern()),
    accepts: is_valid_part_id,
    what: "1 to 32 letters, digits or `_`",
    example: Some("FLOOR"),
};

/// Seat ids: `SECTION-ROW-NUMBER`. Whether the seat exists is the event's to say (404).
pub(crate) const SEAT_ID: Shape = Shape {
    pattern: || {
        let part = part_id_pattern();
        format!("^{part}-{part}-[0-9]{{1,{}}}$", seat_number_digits_max())
    },
    accepts: is_seat_id,
    what: "a seat id SECTION-ROW-NUMBER, such as FLOOR-A-7",
    example: Some("FLOOR-A-7"),
};

fn is_seat_id(id: &str) -> bool {
    let mut parts = id.splitn(3, '-');
    let (Some(section), Some(row), Some(number)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    is_valid_part_id(section)
        && is_valid_part_id(row)
        && (1..=seat_number_digits_max()).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// ISO 4217: three upper-case letters (`raft_store::Currency::parse`).
pub(crate) const CURRENCY: Shape = Shape {
    pattern: || "^[A-Z]{3}$".into(),
    accepts: |c| raft_store::Currency::parse(c).is_some(),
    what: "an ISO 4217 code such as USD",
    example: Some("USD"),
};

/// A venue id as the server makes them; anything else names no venue.
pub(crate) const VENUE_ID: Shape = Shape {
    pattern: || "^ve[0-9a-f]{16}$".into(),
    accepts: |id| raft_store::VenueId::parse(id).is_some(),
    what: "a venue id",
    example: Some("ve0123456789abcdef"),
};

pub(crate) const EVENT_ID: Shape = Shape {
    pattern: || "^ev[0-9a-f]{16}$".into(),
    accepts: |id| raft_store::EventId::parse(id).is_some(),
    what: "an event id",
    example: Some("ev0123456789abcdef"),
};

/// Hold and order ids carry their event and a sequence number that fits 64 bits.
pub(crate) const HOLD_ID: Shape = Shape {
    pattern: || "^ho-ev[0-9a-f]{16}-[0-9]{1,19}$".into(),
    accepts: |id| raft_store::HoldId::parse(id).is_some() && id.len() <= "ho-".len() + 18 + 1 + 19,
    what: "a hold id",
    example: Some("ho-ev0123456789abcdef-1"),
};

pub(crate) const ORDER_ID: Shape = Shape {
    pattern: || "^or-ev[0-9a-f]{16}-[0-9]{1,19}$".into(),
    accepts: |id| raft_store::OrderId::parse(id).is_some() && id.len() <= "or-".len() + 18 + 1 + 19,
    what: "an order id",
    example: Some("or-ev0123456789abcdef-1"),
};

/// A ticket's number within its order fits in 9 digits (far more than an order holds).
pub(crate) const TICKET_ID: Shape = Shape {
    pattern: || "^tk-ev[0-9a-f]{16}-[0-9]{1,19}-[0-9]{1,9}$".into(),
    accepts: |id| raft_store::TicketId::parse(id).is_some() && id.rsplit_once('-').is_some_and(|(_, n)| n.len() <= 9),
    what: "a ticket id",
    example: Some("tk-ev0123456789abcdef-1-0"),
};

/// A ticket code as the ticket's holder is given it (`ticket_code`): its form; whether it is
/// signed is for the check-in to find.
pub(crate) const TICKET_CODE: Shape = Shape {
    pattern: || format!("^BX1\\.[A-Za-z0-9_-]{{1,{TICKET_CODE_LEN_MAX}}}\\.[A-Za-z0-9_-]{{86}}$"),
    accepts: |code| {
        let parts: Vec<&str> = code.split('.').collect();
        let b64 = |p: &str| p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        code.len() <= crate::ticket_code::CODE_BYTES_MAX
            && parts.len() == 3
            && parts[0] == "BX1"
            && (1..=TICKET_CODE_LEN_MAX).contains(&parts[1].len())
            && b64(parts[1])
            && parts[2].len() == 86
            && b64(parts[2])
    },
    what: "a ticket code (`BX1.<payload>.<signature>`)",
    example: None,
};

/// The payload part of the longest code: the whole less `BX1.`, the `.` and the signature.
const TICKET_CODE_LEN_MAX: usize = crate::ticket_code::CODE_BYTES_MAX - 4 - 1 - 86;

/// `Idempotency-Key`: visible ASCII (`identity::IdempotencyKey::parse`).
pub(crate) const IDEMPOTENCY_KEY: Shape = Shape {
    pattern: || format!("^[!-~]{{1,{IDEMPOTENCY_KEY_LEN_MAX}}}$"),
    accepts: |key| crate::identity::IdempotencyKey::parse(key.as_bytes()).is_ok(),
    what: "1 to 255 visible ASCII characters",
    example: None,
};

/// The user a dev token is made for: printable ASCII (a token's `sub` in general may be any
/// 1 to 128 bytes without control characters; this endpoint takes the part a schema can say).
pub(crate) const DEV_USER_ID: Shape = Shape {
    pattern: || format!("^[ -~]{{1,{DEV_USER_ID_LEN_MAX}}}$"),
    accepts: |id| (1..=DEV_USER_ID_LEN_MAX).contains(&id.len()) && id.bytes().all(|b| (b' '..=b'~').contains(&b)),
    what: "1 to 128 printable ASCII characters",
    example: Some("u1"),
};

/// A webhook endpoint's URL as far as a pattern says it: `https://` or `http://`, something after
/// it, visible ASCII, at most `WEBHOOK_URL_LEN_MAX` characters. The host, the port and `http://`
/// only to loopback are the store's rules (`raft_store::check_webhook_url`): 422.
pub(crate) const WEBHOOK_URL: Shape = Shape {
    pattern: || {
        let max = WEBHOOK_URL_LEN_MAX;
        format!("^(https://[!-~]{{1,{}}}|http://[!-~]{{1,{}}})$", max - "https://".len(), max - "http://".len())
    },
    accepts: |url| {
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        url.len() <= WEBHOOK_URL_LEN_MAX
            && url.bytes().all(|b| b.is_ascii_graphic())
            && rest.is_some_and(|r| !r.is_empty())
    },
    what: "an https:// URL of at most 2048 visible ASCII characters",
    example: Some("https://hooks.example.com/boxoffice"),
};

/// Longest `return_url` of a checkout, in bytes (its characters are ASCII).
pub(crate) const RETURN_URL_LEN_MAX: usize = 2048;

/// Where a provider's hosted payment page sends the buyer back: an absolute `http(s)://` URL
/// whose host is a name (its last label starting with a letter, so it is never read as an IPv4
/// number) or a dotted IPv4 address, with an optional port up to 65535, then an optional path,
/// query or fragment of visible ASCII. A narrow grammar, so that every URL it admits is one a
/// URL parser (and Stripe) takes: no user info, no IPv6 literals, no international names.
pub(crate) const RETURN_URL: Shape = Shape {
    pattern: || {
        let label = "[A-Za-z0-9]+(-[A-Za-z0-9]+)*";
        let name = format!("({label}\\.)*[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*");
        let octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
        let port = "([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
        format!("^https?://({name}|({octet}\\.){{3}}{octet})(:{port})?([/?#][!-~]*)?$")
    },
    accepts: is_return_url,
    what: "an absolute http:// or https:// URL (a host name or IPv4 address, an optional port, then a path, \
           query or fragment of visible ASCII characters)",
    example: Some("https://shop.example.com/#/orders/{ORDER_ID}"),
};

fn is_return_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return false;
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    (is_host_name(host) || is_ipv4(host)) && port.is_none_or(is_port) && tail.bytes().all(|b| b.is_ascii_graphic())
}

/// Letters, digits and single inner hyphens, labels separated by dots; the last label starts
/// with a letter.
fn is_host_name(host: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
            && !l.contains("--")
    };
    host.split('.').all(label_ok)
        && host.rsplit('.').next().is_some_and(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// Four decimal octets, 0 to 255, without leading zeros.
fn is_ipv4(host: &str) -> bool {
    let octet_ok = |o: &str| {
        (1..=3).contains(&o.len())
            && o.bytes().all(|b| b.is_ascii_digit())
            && (o.len() == 1 || !o.starts_with('0'))
            && o.parse::<u16>().is_ok_and(|n| n <= 255)
    };
    host.split('.').count() == 4 && host.split('.').all(octet_ok)
}

/// Up to four digits (leading zeros allowed), or five without a leading zero up to 65535.
fn is_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit())
        && match port.len() {
            1..=4 => true,
            5 => !port.starts_with('0') && port.parse::<u32>().is_ok_and(|n| n <= 65_535),
            _ => false,
        }
}

/// `return_url` of a checkout: at most [`RETURN_URL_LEN_MAX`] bytes, of [`RETURN_URL`]'s shape.
pub(crate) fn check_return_url(url: &str) -> Result<(), ApiError> {
    if url.len() > RETURN_URL_LEN_MAX {
        return Err(ApiError::BadRequest(format!("`return_url` is longer than {RETURN_URL_LEN_MAX} bytes")));
    }
    RETURN_URL.check("return_url", url)
}

pub(crate) const WEBHOOK_ID: Shape = Shape {
    pattern: || "^wh[0-9a-f]{16}$".into(),
    accepts: |id| raft_store::WebhookId::parse(id).is_some(),
    what: "a webhook id",
    example: Some("wh0123456789abcdef"),
};

/// An integer range, inclusive.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Range {
    pub min: i64,
    pub max: i64,
}

pub(crate) const SEATS_PER_ROW: Range = Range { min: 1, max: SEATS_PER_ROW_MAX as i64 };
pub(crate) const CAPACITY: Range = Range { min: 1, max: GENERAL_CAPACITY_MAX as i64 };
pub(crate) const PRICE_AMOUNT: Range = Range { min: 0, max: PRICE_AMOUNT_MAX };
pub(crate) const PER_USER_LIMIT: Range = Range { min: 1, max: PER_USER_LIMIT_MAX as i64 };
pub(crate) const HOLD_QUANTITY: Range = Range { min: 1, max: HOLD_QUANTITY_MAX as i64 };
pub(crate) const ADJUST_PERCENT: Range =
    Range { min: PRICE_ADJUST_PERCENT_MIN as i64, max: PRICE_ADJUST_PERCENT_MAX as i64 };
pub(crate) const DEMAND_AT_LEAST: Range = Range { min: 1, max: 100 };
pub(crate) const SALES_AT_LEAST: Range = Range { min: 1, max: u32::MAX as i64 };
pub(crate) const WINDOW_MINUTES: Range = Range { min: 0, max: PRICE_WINDOW_MINUTES_MAX as i64 };

impl Range {
    pub(crate) fn check(self, field: &str, value: i64) -> Result<(), ApiError> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(ApiError::BadRequest(format!("`{field}` is between {} and {}", self.min, self.max)))
        }
    }
}

/// How many items a list may hold, inclusive.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Count {
    pub min: usize,
    pub max: usize,
}

pub(crate) const SECTIONS: Count = Count { min: 1, max: SECTIONS_PER_VENUE_MAX };
pub(crate) const ROWS: Count = Count { min: 1, max: ROWS_PER_SECTION_MAX };
pub(crate) const PERFORMERS: Count = Count { min: 0, max: PERFORMERS_PER_EVENT_MAX };
/// One price per section: a venue's sections bound them.
pub(crate) const PRICES: Count = Count { min: 1, max: SECTIONS_PER_VENUE_MAX };
pub(crate) const HOLD_SEATS: Count = Count { min: 1, max: HOLD_SEATS_MAX };
pub(crate) const PRICE_RULES: Count = Count { min: 0, max: SECTIONS_PER_VENUE_MAX };
pub(crate) const PRICE_STEPS: Count = Count { min: 0, max: PRICE_STEPS_MAX };
/// The event types of a webhook endpoint: each at most once.
pub(crate) const WEBHOOK_EVENTS: Count = Count { min: 1, max: crate::dto::WEBHOOK_EVENT_NAMES.len() };

impl Count {
    pub(crate) fn check(self, field: &str, len: usize) -> Result<(), ApiError> {
        if (self.min..=self.max).contains(&len) {
            Ok(())
        } else {
            Err(ApiError::BadRequest(format!("`{field}` holds {} to {} items", self.min, self.max)))
        }
    }

    fn array(self, nullable: bool, items: impl Into<RefOr<Schema>>) -> Array {
        let items: RefOr<Schema> = items.into();
        let builder = ArrayBuilder::new().items(items).min_items(Some(self.min)).max_items(Some(self.max));
        if nullable {
            builder.schema_type([Type::Array, Type::Null].into_iter().collect::<SchemaType>()).build()
        } else {
            builder.build()
        }
    }
}

/// Latitude and longitude in degrees.
pub(crate) const LATITUDE_MAX: f64 = 90.0;
pub(crate) const LONGITUDE_MAX: f64 = 180.0;

fn degrees(max: f64) -> Object {
    ObjectBuilder::new().schema_type(Type::Number).minimum(Some(-max)).maximum(Some(max)).build()
}

// The `schema_with` functions of the DTOs' fields: one per kind of field, nullable where a
// patch may leave the field out.

pub(crate) fn name() -> Object {
    NAME.schema(false)
}
pub(crate) fn name_or_null() -> Object {
    NAME.schema(true)
}
pub(crate) fn label() -> Object {
    LABEL.schema(false)
}
pub(crate) fn label_or_null() -> Object {
    LABEL.schema(true)
}
pub(crate) fn description() -> Object {
    DESCRIPTION.schema(false)
}
pub(crate) fn description_or_null() -> Object {
    DESCRIPTION.schema(true)
}
pub(crate) fn part_id() -> Object {
    PART_ID.schema(false)
}
pub(crate) fn venue_id() -> Object {
    VENUE_ID.schema(false)
}
pub(crate) fn currency() -> Object {
    CURRENCY.schema(false)
}
pub(crate) fn dev_user_id() -> Object {
    DEV_USER_ID.schema(false)
}
pub(crate) fn ticket_code() -> Object {
    TICKET_CODE.schema(false)
}
pub(crate) fn latitude() -> Object {
    degrees(LATITUDE_MAX)
}
pub(crate) fn longitude() -> Object {
    degrees(LONGITUDE_MAX)
}
pub(crate) fn seats_per_row() -> Object {
    integer(false, SEATS_PER_ROW.min, SEATS_PER_ROW.max)
}
pub(crate) fn capacity() -> Object {
    integer(false, CAPACITY.min, CAPACITY.max)
}
pub(crate) fn price_amount() -> Object {
    integer(false, PRICE_AMOUNT.min, PRICE_AMOUNT.max)
}
pub(crate) fn adjust_percent() -> Object {
    integer(false, ADJUST_PERCENT.min, ADJUST_PERCENT.max)
}
pub(crate) fn demand_at_least() -> Object {
    integer(false, DEMAND_AT_LEAST.min, DEMAND_AT_LEAST.max)
}
pub(crate) fn sales_at_least() -> Object {
    integer(false, SALES_AT_LEAST.min, SALES_AT_LEAST.max)
}
pub(crate) fn window_minutes() -> Object {
    integer(false, WINDOW_MINUTES.min, WINDOW_MINUTES.max)
}
pub(crate) fn price_rules() -> Array {
    PRICE_RULES.array(false, reference("PriceRuleJson"))
}
pub(crate) fn demand_steps() -> Array {
    PRICE_STEPS.array(false, reference("DemandStepJson"))
}
pub(crate) fn sales_steps() -> Array {
    PRICE_STEPS.array(false, reference("SalesStepJson"))
}
pub(crate) fn per_user_limit_or_null() -> Object {
    integer(true, PER_USER_LIMIT.min, PER_USER_LIMIT.max)
}

/// An RFC 3339 time, as `dto::parse_time` reads it.
pub(crate) fn date_time(nullable: bool) -> Object {
    string(nullable)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .max_length(Some(TIME_TEXT_LEN_MAX))
        .examples([json!("2030-06-01T20:00:00Z")])
        .build()
}
pub(crate) fn time_text() -> Object {
    date_time(false)
}
pub(crate) fn time_text_or_null() -> Object {
    date_time(true)
}

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
}

pub(crate) fn sections() -> Array {
    SECTIONS.array(false, reference("SectionJson"))
}
pub(crate) fn rows() -> Array {
    ROWS.array(false, reference("RowJson"))
}
pub(crate) fn performers() -> Array {
    PERFORMERS.array(false, reference("PerformerJson"))
}
pub(crate) fn performers_or_null() -> Array {
    PERFORMERS.array(true, reference("PerformerJson"))
}
pub(crate) fn prices() -> Array {
    PRICES.array(false, reference("PriceJson"))
}
pub(crate) fn prices_or_null() -> Array {
    PRICES.array(true, reference("PriceJson"))
}

/// `seats` of a hold: distinct seat ids.
pub(crate) fn hold_seats() -> Array {
    let mut seats = HOLD_SEATS.array(false, SEAT_ID.schema(false));
    seats.unique_items = true;
    seats
}

pub(crate) fn webhook_url() -> Object {
    WEBHOOK_URL.schema(false)
}

pub(crate) fn return_url_or_null() -> Object {
    let mut schema = RETURN_URL.schema(true);
    schema.max_length = Some(RETURN_URL_LEN_MAX);
    schema.description = Some(
        "Pay on the provider's hosted page (`stripe`): the buyer is sent to `payment.url` and back here, \
         paid or not, with `{ORDER_ID}` replaced by the order's id. Ignored by the sandbox methods."
            .into(),
    );
    schema
}

/// `events` of a webhook endpoint: distinct event types.
pub(crate) fn webhook_events() -> Array {
    let names = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(crate::dto::WEBHOOK_EVENT_NAMES));
    let mut events = WEBHOOK_EVENTS.array(false, names.build());
    events.unique_items = true;
    events
}

pub(crate) fn hold_quantity() -> Object {
    integer(false, HOLD_QUANTITY.min, HOLD_QUANTITY.max)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use regex::Regex;

    use super::*;
    use crate::pagination::{Cursor, EventCursor, OrderCursor, SearchCursor, TicketCursor};

    /// Characters at every edge the rules draw: controls kept and refused, each kind of white
    /// space (Rust's and others'), ASCII punctuation the grammars use, letters of other scripts.
    const ALPHABET: &[char] = &[
        '\u{0}', '\t', '\n', '\u{b}', '\r', '\u{1f}', ' ', '!', '-', '.', '0', '1', '7', '9', 'A', 'Z', '_', 'a', 'e',
        'v', 'o', 'r', 'h', 'f', '~', '\u{7f}', '\u{85}', '\u{9f}', '\u{a0}', 'é', '\u{1680}', '\u{2000}', '\u{200b}',
        '\u{2028}', '\u{3000}', '\u{feff}', '語', '😀',
    ];

    fn samples(seed: u64, fixed: &[&str]) -> Vec<String> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
        for _ in 0..4_000 {
            let len = rng.gen_range(0..8);
            out.push((0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())]).collect());
        }
        out
    }

    /// The document's view of a string: its pattern, and its length bounds in characters.
    fn document_accepts(pattern: &str, min: usize, max: usize, value: &str) -> bool {
        let count = value.chars().count();
        Regex::new(pattern).expect("a valid pattern").is_match(value) && (min..=max).contains(&count)
    }

    #[test]
    fn every_text_pattern_agrees_with_its_check() {
        let fixed = [" ", "\t", "a", " a ", "a\tb", "a\nb", "\u{feff}", "\u{200b}", "\u{a0}", "é"];
        for (text, min) in [(NAME, 1), (LABEL, 1), (DESCRIPTION, 0)] {
            let short = Text { max_chars: 5, ..text };
            for value in samples(1, &fixed) {
                assert_eq!(
                    document_accepts(&short.pattern(), min, 5, &value),
                    short.check("f", &value).is_ok(),
                    "{short:?} on {value:?}"
                );
            }
        }
    }

    /// Return URLs at the edges of the grammar: hosts read as names or as IPv4 numbers, ports
    /// at their bound, what comes after the host.
    const RETURN_URLS: &[&str] = &[
        "https://shop.example.com/#/orders/{ORDER_ID}",
        "http://127.0.0.1:43123/#/orders/{ORDER_ID}",
        "http://localhost",
        "http://a:65535?x",
        "http://a:65536",
        "http://a:0080",
        "http://a:08080",
        "http://a:",
        "http://1.2.3.256/",
        "http://1.2.3.04/",
        "http://1.2.3/",
        "http://1.999",
        "http://a.0x1",
        "http://x1.a-b.c",
        "http://a--b.c",
        "http://-a.b",
        "http://a-.b",
        "http://a..b",
        "http://a.b.",
        "http://xn--abc.com",
        "http://u@a/",
        "http://[::1]/",
        "http://a/b c",
        "http://a/é",
        "http://a\\b",
        "https://",
        "ftp://a",
        "HTTP://a",
        "//a/b",
    ];

    /// Whatever the grammar admits, a URL parser takes as an http(s) URL with that host: the
    /// api never hands Stripe a return URL it will call malformed.
    #[test]
    fn every_return_url_the_grammar_admits_parses() {
        let admitted: Vec<&str> = RETURN_URLS.iter().copied().filter(|u| RETURN_URL.accepts(u)).collect();
        assert_eq!(admitted.len(), 6, "{admitted:?}");
        for url in admitted {
            let parsed = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some(), "{url}");
        }
    }

    #[test]
    fn every_shape_pattern_agrees_with_its_check() {
        let url_max = format!("https://{}", "a".repeat(WEBHOOK_URL_LEN_MAX - 8));
        let url_over = format!("http://{}", "a".repeat(WEBHOOK_URL_LEN_MAX - 6));
        let return_max = format!("http://a/{}", "x".repeat(RETURN_URL_LEN_MAX - 9));
        let shapes: [(&str, Shape, &[&str]); 19] = [
            ("return url", RETURN_URL, RETURN_URLS),
            (
                "webhook url",
                WEBHOOK_URL,
                &[
                    "https://h",
                    "http://127.0.0.1:9/x",
                    "https://",
                    "http://",
                    "ftp://h",
                    "HTTPS://h",
                    "https://a b",
                    "https://é",
                    &url_max,
                    &url_over,
                ],
            ),
            ("webhook id", WEBHOOK_ID, &["wh0123456789abcdef", "wh0123456789abcde", "ev0123456789abcdef"]),
            ("part id", PART_ID, &["FLOOR", "A_1", "", "a-b", &"x".repeat(33)]),
            ("seat id", SEAT_ID, &["FLOOR-A-1", "F-A-1000", "F-A-10000", "F-A-", "F--1", "F-A-01"]),
            ("currency", CURRENCY, &["USD", "usd", "US", "EURO"]),
            ("venue id", VENUE_ID, &["ve0123456789abcdef", "ve0123456789ABCDEF", "ev0123456789abcdef"]),
            ("event id", EVENT_ID, &["ev0123456789abcdef", "ev0123456789abcde"]),
            (
                "hold id",
                HOLD_ID,
                &["ho-ev0123456789abcdef-1", "ho-ev0123456789abcdef-", "ho-ev0123456789abcdef-99999999999999999999"],
            ),
            ("order id", ORDER_ID, &["or-ev0123456789abcdef-7", "or-ev0123456789abcdef-1234567890123456789"]),
            ("key", IDEMPOTENCY_KEY, &["k", "a b", &"k".repeat(255), &"k".repeat(256)]),
            ("user", DEV_USER_ID, &["u1", "a b", "", &"u".repeat(128), &"u".repeat(129)]),
            (
                "ticket id",
                TICKET_ID,
                &["tk-ev0123456789abcdef-1-0", "tk-ev0123456789abcdef-1-", "tk-ev0123456789abcdef-1-1234567890"],
            ),
            (
                "ticket code",
                TICKET_CODE,
                &[
                    &format!("BX1.eyJ0IjoiIn0.{}", "A".repeat(86)),
                    &format!("BX1.eyJ0IjoiIn0.{}", "A".repeat(85)),
                    &format!("BX2.eyJ0IjoiIn0.{}", "A".repeat(86)),
                    &format!("BX1..{}", "A".repeat(86)),
                    &format!("BX1.{}.{}", "a".repeat(933), "A".repeat(86)),
                    &format!("BX1.{}.{}", "a".repeat(934), "A".repeat(86)),
                ],
            ),
            (
                "events cursor",
                EventCursor::SHAPE,
                &[
                    "1.ev0123456789abcdef",
                    "-1.ev0123456789abcdef",
                    "1..ev0123456789abcdef",
                    &format!("{}.ev0123456789abcdef", "9".repeat(20)),
                ],
            ),
            ("orders cursor", OrderCursor::SHAPE, &["1.or-ev0123456789abcdef-2", "1.or-ev0123456789abcdef-"]),
            (
                "tickets cursor",
                TicketCursor::SHAPE,
                &["1.or-ev0123456789abcdef-2.3", "1.or-ev0123456789abcdef-2.1234567890"],
            ),
            ("search cursor", SearchCursor::SHAPE, &["0", "10000", "010000", "10001", "9999", "00000000000", "-1"]),
            (
                "search cursor, leading zeros",
                SearchCursor::SHAPE,
                &["0000000000000000000000010000", "00000000000000000000000100000"],
            ),
        ];
        assert!(check_return_url(&return_max).is_ok() && check_return_url(&format!("{return_max}x")).is_err());
        for (name, shape, fixed) in shapes {
            let pattern = Regex::new(&shape.pattern()).expect("a valid pattern");
            for value in samples(2, fixed) {
                assert_eq!(pattern.is_match(&value), shape.accepts(&value), "{name} on {value:?}");
            }
        }
    }

    #[test]
    fn the_dev_token_roles_are_the_tokens_roles() {
        for role in crate::dto::DEV_TOKEN_ROLES {
            assert!(crate::token::Role::parse(role).is_some(), "{role}");
        }
    }
}
