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
}

impl ApiConfig {
    /// The defaults, with the given signing secret and dev tokens off.
    pub fn new(jwt_secret: impl Into<String>) -> ApiConfig {
        ApiConfig {
            jwt_secret: jwt_secret.into(),
            dev_tokens: false,
            hold_ttl: HOLD_TTL_DEFAULT,
            body_limit_bytes: BODY_LIMIT_BYTES_DEFAULT,
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
        Ok(())
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
            .finish()
    }
}
