//! Every bound the state machine enforces, in one place. Units go last in names.

/// Longest name (venue, event, section, performer), in characters.
pub const NAME_LEN_MAX: usize = 200;
/// Longest event description, in characters.
pub const DESCRIPTION_LEN_MAX: usize = 5_000;
/// Longest city, country or category, in characters.
pub const LABEL_LEN_MAX: usize = 100;
/// Longest section or row id, in bytes (letters, digits and `_`).
pub const SECTION_ID_LEN_MAX: usize = 32;
pub const SECTIONS_PER_VENUE_MAX: usize = 100;
pub const ROWS_PER_SECTION_MAX: usize = 500;
pub const SEATS_PER_ROW_MAX: u32 = 1_000;
/// Seats of all seated sections of one venue together.
pub const SEATS_PER_VENUE_MAX: u32 = 200_000;
pub const GENERAL_CAPACITY_MAX: u32 = 1_000_000;
pub const PERFORMERS_PER_EVENT_MAX: usize = 20;
/// Largest price of one admission, in minor units.
pub const PRICE_AMOUNT_MAX: i64 = 100_000_000;

/// Seats in one hold of a seated section.
pub const HOLD_SEATS_MAX: usize = 20;
/// Admissions in one hold of a general-admission section.
pub const HOLD_QUANTITY_MAX: u32 = 20;
pub const PER_USER_LIMIT_MAX: u32 = 100;
pub const HOLD_TTL_MS_MIN: i64 = 100;
pub const HOLD_TTL_MS_MAX: i64 = 24 * 3_600_000;
/// How long an order may wait for its payment result before its seats go back on sale.
pub const PAYMENT_TIMEOUT_MS: i64 = 10 * 60_000;
/// How long an ended hold (released, expired, checked out) is kept after it ended; then it reads as
/// unknown. It leaves memory in the apply that ends it, for the group's cold store (a record that
/// expires this long after the hold ended), so memory no longer follows the hold rate: only active
/// holds stay in RAM. An hour, because:
/// - a client that polls its hold, or repeats a release or a checkout without its idempotency key,
///   sees the hold's final status (a repeated checkout: its order) rather than "not found" for as
///   long as a buyer plausibly stays on a checkout page (a repeat with its key gets its first
///   answer for [`DEDUP_RETAIN_MS`] anyway, from the idempotency table, which does not need the
///   hold);
/// - a checked-out hold outlives its order's payment window ([`PAYMENT_TIMEOUT_MS`]), as an older
///   state needs: there, ended holds stayed in memory, and the seats of an order awaiting payment
///   are held in its hold's name (now the order is found by its hold through an index instead);
/// - what the cold store keeps is bounded by the holds a shard ends in an hour, not by every hold
///   of a season (DESIGN.md, I9); a longer window buys nothing a client needs.
pub const HOLD_RETENTION_MS: i64 = 60 * 60_000;
/// Ended holds past their retention that one command may drop from memory before it is applied:
/// a step of a backlog, never all of it. Only a state written before ended holds went to the cold
/// store keeps ended holds in memory, and it drains. More than one, because each hold is made by
/// one command: while commands arrive, drops outpace the holds that can end.
pub const HOLD_DROPS_PER_COMMAND_MAX: usize = 8;
/// Ended holds that one `Expire` may drop from memory: the leader proposes it while drops are due,
/// so a quiet shard drains a backlog too (two a second: thousands of holds a second, ~1 ms of apply
/// each).
pub const HOLD_DROPS_PER_EXPIRE_MAX: usize = 1_024;
const _: () = assert!(HOLD_RETENTION_MS > PAYMENT_TIMEOUT_MS, "a pending order needs its hold");
const _: () = assert!(HOLD_DROPS_PER_COMMAND_MAX > 1 && HOLD_DROPS_PER_EXPIRE_MAX >= HOLD_DROPS_PER_COMMAND_MAX);

/// Remembered request outcomes per group: the idempotency window is whichever bound comes first.
/// How long the outcome of a request with an `Idempotency-Key` is remembered, whatever the write
/// rate: API.md promises the first answer to a retry for 24 hours. Kept on disk (the cold store),
/// about 150 bytes per key for a hold (see ARCHITECTURE.md), so memory does not bound it.
pub const DEDUP_RETAIN_MS: i64 = 24 * 3_600_000;
/// How long the outcome of a request whose id a router made (no `Idempotency-Key`) is remembered:
/// a router retries within its call deadline (tens of seconds), so minutes cover every retry.
pub const RETRY_RETAIN_MS: i64 = 5 * 60_000;
/// Orders one `Archive` command moves to the archive at most: an event of a million orders moves
/// in steps that each keep apply short.
pub const ARCHIVE_ORDERS_PER_COMMAND_MAX: usize = 2_000;
/// Change records kept per shard for the change feed; a consumer behind this re-reads a snapshot.
/// About 200 bytes each in memory (docs/performance.md): 20 MB a shard when full, 20 s of a
/// shard's busiest flash sale.
pub const CHANGES_RETAINED_MAX: usize = 100_000;
/// Change records older than this (by log time) leave the feed as new ones are recorded, so a
/// shard written at a steady rate keeps a steady share of [`CHANGES_RETAINED_MAX`] rather than
/// filling it over hours: what the feed's readers need is seconds (the api's seat streams and
/// caches, the indexer) to minutes (a restarted webhook dispatcher picking up where it was).
pub const CHANGES_RETAIN_MS: i64 = 5 * 60_000;
/// Records past [`CHANGES_RETAIN_MS`] that recording one change may drop: a shard quiet after a
/// burst sheds the burst's records over its next writes, each apply staying short.
pub const CHANGES_AGED_DROPS_MAX: usize = 1_024;
/// Items one list query returns at most.
pub const LIST_LIMIT_MAX: usize = 100;

/// How long an access pass from the waiting room stays valid after its holder is admitted.
pub const PASS_TTL_MS: i64 = 5 * 60_000;
/// The admission controller counts admitted passes not yet redeemed over this window: a buyer who
/// has not held within it no longer holds admission back (the pass itself stays valid).
pub const ADMISSION_WINDOW_MS: i64 = 30_000;
/// Queue sequence numbers in one leased block at most.
pub const QUEUE_BLOCK_MAX: u64 = 10_000;
/// Joins one `JoinQueue` command carries at most: an api instance sends more as several.
pub const QUEUE_JOINS_PER_COMMAND_MAX: usize = 1_000;
/// Watermark advances remembered per event (for admission times).
pub const QUEUE_ADVANCES_RETAINED_MAX: usize = 20_000;
/// Transfers of one ticket: each leaves a record in the shard's cold store for good.
pub const TRANSFERS_PER_TICKET_MAX: u32 = 20;
/// Steps of each kind in one section's pricing rule.
pub const PRICE_STEPS_MAX: usize = 10;
/// How far one step moves a price, in percent of the base: down to a tenth, up to six times.
pub const PRICE_ADJUST_PERCENT_MIN: i32 = -90;
pub const PRICE_ADJUST_PERCENT_MAX: i32 = 500;
/// The longest window of recent sales a pricing rule looks at: a day.
pub const PRICE_WINDOW_MINUTES_MAX: u32 = 1_440;

/// Outgoing webhook endpoints a cluster keeps at most.
pub const WEBHOOKS_MAX: usize = 100;
/// Longest webhook endpoint URL, in bytes (visible ASCII only, so also characters).
pub const WEBHOOK_URL_LEN_MAX: usize = 2_048;
/// Longest webhook signing secret, in bytes.
pub const WEBHOOK_SECRET_LEN_MAX: usize = 128;
