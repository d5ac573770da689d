//! The api tier's configuration: one typed struct. The binary fills it from its flags (or the
//! same keys in a TOML file, or the environment) and prints it at start-up; `Debug` masks the
//! signing secret so that print is safe.
//!
//! Each setting's default and range is declared once, here (or, for the hold TTL's range, in the
//! state machine's limits, which apply also enforces): the binary's command line takes its
//! defaults from these constants and checks values with these functions, and
//! [`ApiConfig::validate`] runs the same checks on a struct built in code.

use std::fmt;
use std::time::Duration;

use raft_store::{HOLD_TTL_MS_MAX, HOLD_TTL_MS_MIN};

/// A setting that cannot work, with its key (the TOML key; the flag is the same with dashes) and
/// the value given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` = {value}: {rule}")]
pub struct ConfigError {
    pub key: &'static str,
    pub value: String,
    pub rule: String,
}

impl ConfigError {
    fn new(key: &'static str, value: impl fmt::Display, rule: impl Into<String>) -> ConfigError {
        ConfigError { key, value: value.to_string(), rule: rule.into() }
    }
}

/// How long a hold lasts: what apply accepts (`HOLD_TTL_MS_MIN..=HOLD_TTL_MS_MAX`).
pub fn check_hold_ttl(ttl: Duration) -> Result<Duration, ConfigError> {
    let range = Duration::from_millis(HOLD_TTL_MS_MIN as u64)..=Duration::from_millis(HOLD_TTL_MS_MAX as u64);
    if range.contains(&ttl) {
        return Ok(ttl);
    }
    let rule = format!("between {:?} and {:?}", range.start(), range.end());
    Err(ConfigError::new("hold_ttl", format!("{ttl:?}"), rule))
}

/// The largest request body: at least one byte.
pub fn check_body_limit_bytes(bytes: usize) -> Result<usize, ConfigError> {
    if bytes == 0 {
        return Err(ConfigError::new("body_limit_bytes", bytes, "must be positive"));
    }
    Ok(bytes)
}

/// The read cache's lifetime: at most [`READ_CACHE_TTL_MAX`].
pub fn check_read_cache_ttl(ttl: Duration) -> Result<Duration, ConfigError> {
    if ttl > READ_CACHE_TTL_MAX {
        let rule = format!("at most {:?}", READ_CACHE_TTL_MAX);
        return Err(ConfigError::new("read_cache_ttl", format!("{ttl:?}"), rule));
    }
    Ok(ttl)
}

/// Largest request body read, in bytes, unless configured otherwise.
pub const BODY_LIMIT_BYTES_DEFAULT: usize = 1024 * 1024;
/// API.md: "Holds last 10 minutes unless the server is configured otherwise."
pub const HOLD_TTL_DEFAULT: Duration = Duration::from_secs(10 * 60);
/// Lifetime of a token minted by `POST /v1/auth/dev-token`.
pub(crate) const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long one change-feed read of the seat stream waits for a record before it asks again.
pub(crate) const STREAM_POLL_WAIT: Duration = Duration::from_secs(15);
/// Interval of the seat stream's keep-alive comments; below common proxy idle timeouts (60 s).
pub(crate) const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// How long a rendered event or seat map is served from this instance's read cache.
pub const READ_CACHE_TTL_DEFAULT: Duration = Duration::from_secs(1);
/// Longest read-cache lifetime accepted: the cache trades freshness for load, and past a few
/// seconds a buyer would see seats taken long ago as free.
pub const READ_CACHE_TTL_MAX: Duration = Duration::from_secs(60);
/// Memory the read cache may use for rendered bodies, in bytes.
pub const READ_CACHE_BYTES_DEFAULT: u64 = 64 << 20;
/// Requests per second a user may make (sustained), and the burst above it.
pub const RATE_LIMIT_USER_PER_S_DEFAULT: u32 = 50;
pub const RATE_LIMIT_USER_BURST_DEFAULT: u32 = 100;
/// Requests per second one client address may make when that limit is on (it is off by default:
/// behind a proxy every client has the proxy's address).
pub const RATE_LIMIT_IP_BURST_DEFAULT: u32 = 200;
/// Releases a user may make per window before their new holds are refused for a while.
pub const CHURN_RELEASES_MAX_DEFAULT: u32 = 10;
pub const CHURN_WINDOW_DEFAULT: Duration = Duration::from_secs(10 * 60);

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

    fn validate(&self) -> Result<(), ConfigError> {
        if self.user_per_s > 0 && self.user_burst == 0 {
            return Err(ConfigError::new("rate_limit_user_burst", 0, "must be positive when the per-user limit is on"));
        }
        if self.ip_per_s > 0 && self.ip_burst == 0 {
            return Err(ConfigError::new(
                "rate_limit_ip_burst",
                0,
                "must be positive when the per-address limit is on",
            ));
        }
        if self.churn_releases_max > 0 && self.churn_window.is_zero() {
            return Err(ConfigError::new("churn_window", "0s", "must be positive when the churn limit is on"));
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

    /// Checks what would otherwise fail on every request; [`crate::ApiState::new`] runs it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.is_empty() {
            return Err(ConfigError::new("jwt_secret", "\"\"", "must not be empty"));
        }
        check_hold_ttl(self.hold_ttl)?;
        check_body_limit_bytes(self.body_limit_bytes)?;
        check_read_cache_ttl(self.read_cache.ttl)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_setting_is_named_with_its_value() {
        let mut config = ApiConfig::new("secret");
        assert_eq!(config.validate(), Ok(()));
        config.hold_ttl = Duration::from_secs(25 * 3600);
        let err = config.validate().unwrap_err();
        assert_eq!((err.key, err.value.as_str()), ("hold_ttl", "90000s"));
        assert!(err.to_string().starts_with("`hold_ttl` = 90000s: between"), "{err}");
        config.hold_ttl = HOLD_TTL_DEFAULT;
        config.read_cache.ttl = Duration::from_secs(61);
        assert_eq!(config.validate().unwrap_err().key, "read_cache_ttl");
        config.read_cache.ttl = READ_CACHE_TTL_DEFAULT;
        config.limits.user_burst = 0;
        assert_eq!(config.validate().unwrap_err().key, "rate_limit_user_burst");
    }
}
