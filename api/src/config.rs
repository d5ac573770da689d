//! The api tier's configuration: one typed struct. The binary fills it from file and environment
//! and prints it at start-up; `Debug` masks the signing secret so that print is safe.

use std::fmt;
use std::time::Duration;

use raft_store::{HOLD_TTL_MS_MAX, HOLD_TTL_MS_MIN};

/// Largest request body read, in bytes, unless configured otherwise.
pub(crate) const BODY_LIMIT_BYTES_DEFAULT: usize = 1024 * 1024;
/// API.md: "Holds last 10 minutes unless the server is configured otherwise."
pub(crate) const HOLD_TTL_DEFAULT: Duration = Duration::from_secs(10 * 60);
/// Lifetime of a token minted by `POST /v1/auth/dev-token`.
pub(crate) const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long one change-feed read of the seat stream waits for a record before it asks again.
pub(crate) const STREAM_POLL_WAIT: Duration = Duration::from_secs(15);
/// Interval of the seat stream's keep-alive comments; below common proxy idle timeouts (60 s).
pub(crate) const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// How long a rendered event or seat map is served from this instance's read cache.
pub(crate) const READ_CACHE_TTL_DEFAULT: Duration = Duration::from_secs(1);
/// Longest read-cache lifetime accepted: the cache trades freshness for load, and past a few
/// seconds a buyer would see seats taken long ago as free.
pub(crate) const READ_CACHE_TTL_MAX: Duration = Duration::from_secs(60);
/// Memory the read cache may use for rendered bodies, in bytes.
pub(crate) const READ_CACHE_BYTES_DEFAULT: u64 = 64 << 20;
/// Requests per second a user may make (sustained), and the burst above it.
pub(crate) const RATE_LIMIT_USER_PER_S_DEFAULT: u32 = 50;
pub(crate) const RATE_LIMIT_USER_BURST_DEFAULT: u32 = 100;
/// Requests per second one client address may make when that limit is on (it is off by default:
/// behind a proxy every client has the proxy's address).
pub(crate) const RATE_LIMIT_IP_BURST_DEFAULT: u32 = 200;
/// Releases a user may make per window before their new holds are refused for a while.
pub(crate) const CHURN_RELEASES_MAX_DEFAULT: u32 = 10;
pub(crate) const CHURN_WINDOW_DEFAULT: Duration = Duration::from_secs(10 * 60);

/// The read cache of event details and seat maps (see `cache.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadCacheConfig {
    /// How long a rendered answer is served before it is read again; zero turns the cache off.
    pub ttl: Duration,
    /// Memory for rendered bodies, in bytes, shared by the event and seat-map caches.
    pub capacity_bytes: u64,
}

impl Default for ReadCacheConfig {
    fn default() -> Self {
        ReadCacheConfig { ttl: READ_CACHE_TTL_DEFAULT, capacity_bytes: READ_CACHE_BYTES_DEFAULT }
    }
}

/// Abuse limits (see `limits.rs`). A rate of zero turns that limit off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Sustained requests per second per user (the bearer token's `sub`); 0 = off.
    pub user_per_s: u32,
    /// Requests a user may make at once above the sustained rate.
    pub user_burst: u32,
    /// Sustained requests per second per client address; 0 = off (the default).
    pub ip_per_s: u32,
    pub ip_burst: u32,
    /// Releases per `churn_window` before the user's new holds answer 429; 0 = off.
    pub churn_releases_max: u32,
    pub churn_window: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            user_per_s: RATE_LIMIT_USER_PER_S_DEFAULT,
            user_burst: RATE_LIMIT_USER_BURST_DEFAULT,
            ip_per_s: 0,
            ip_burst: RATE_LIMIT_IP_BURST_DEFAULT,
            churn_releases_max: CHURN_RELEASES_MAX_DEFAULT,
            churn_window: CHURN_WINDOW_DEFAULT,
        }
    }
}

impl LimitsConfig {
    /// Every limit off: for benches and load tests that must measure the store, not the limits.
    pub fn off() -> LimitsConfig {
        LimitsConfig { user_per_s: 0, ip_per_s: 0, churn_releases_max: 0, ..LimitsConfig::default() }
    }

    fn validate(&self) -> Result<(), String> {
        if self.user_per_s > 0 && self.user_burst == 0 {
            return Err("the per-user burst must be positive when the per-user limit is on".into());
        }
        if self.ip_per_s > 0 && self.ip_burst == 0 {
            return Err("the per-address burst must be positive when the per-address limit is on".into());
        }
        if self.churn_releases_max > 0 && self.churn_window.is_zero() {
            return Err("the churn window must be positive when the churn limit is on".into());
        }
        Ok(())
    }
}

/// The binary builds it with a struct literal, so every field is public; start from
/// [`ApiConfig::new`] (`..ApiConfig::new(secret)`) to stay compatible when fields are added.
#[derive(Clone)]
pub struct ApiConfig {
    /// HS256 key that signs and verifies bearer tokens; every api instance shares it.
    pub jwt_secret: String,
    /// Serves `POST /v1/auth/dev-token` (development and tests only; 404 otherwise).
    pub dev_tokens: bool,
    /// How long a hold keeps its seats; the state machine bounds it to
    /// `HOLD_TTL_MS_MIN..=HOLD_TTL_MS_MAX`.
    pub hold_ttl: Duration,
    /// Larger request bodies answer 413 `payload_too_large`.
    pub body_limit_bytes: usize,
    /// The read cache of event details and seat maps.
    pub read_cache: ReadCacheConfig,
    /// Per-user and per-address request rates, and the hold/release churn budget.
    pub limits: LimitsConfig,
}

impl ApiConfig {
    /// The defaults, with the given signing secret and dev tokens off.
    pub fn new(jwt_secret: impl Into<String>) -> ApiConfig {
        ApiConfig {
            jwt_secret: jwt_secret.into(),
            dev_tokens: false,
            hold_ttl: HOLD_TTL_DEFAULT,
            body_limit_bytes: BODY_LIMIT_BYTES_DEFAULT,
            read_cache: ReadCacheConfig::default(),
            limits: LimitsConfig::default(),
        }
    }

    /// Checks what would otherwise fail on every request; run it at start-up.
    pub fn validate(&self) -> Result<(), String> {
        if self.jwt_secret.is_empty() {
            return Err("jwt_secret must not be empty".into());
        }
        let hold_ttl_ms = self.hold_ttl_ms();
        if !(HOLD_TTL_MS_MIN..=HOLD_TTL_MS_MAX).contains(&hold_ttl_ms) {
            return Err(format!("hold_ttl must be between {HOLD_TTL_MS_MIN} and {HOLD_TTL_MS_MAX} ms"));
        }
        if self.body_limit_bytes == 0 {
            return Err("body_limit_bytes must be positive".into());
        }
        if self.read_cache.ttl > READ_CACHE_TTL_MAX {
            return Err(format!("the read cache ttl is at most {} s", READ_CACHE_TTL_MAX.as_secs()));
        }
        self.limits.validate()
    }

    pub(crate) fn hold_ttl_ms(&self) -> i64 {
        i64::try_from(self.hold_ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("jwt_secret", &"***")
            .field("dev_tokens", &self.dev_tokens)
            .field("hold_ttl", &self.hold_ttl)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("read_cache", &self.read_cache)
            .field("limits", &self.limits)
            .finish()
    }
}
