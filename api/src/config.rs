//! The api tier's configuration: one typed struct. The binary fills it from its flags (or the
//! same keys in a TOML file, or the environment) and prints it at start-up; `Debug` masks the
//! signing secret so that print is safe.
//!
//! Each setting's default and range is declared once, here (or, for the hold TTL's range, in the
//! state machine's limits, which apply also enforces): the binary's command line takes its
//! defaults from these constants and checks values with these functions, and
//! [`ApiConfig::validate`] runs the same checks on a struct built in code.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use raft_store::{HOLD_TTL_MS_MAX, HOLD_TTL_MS_MIN};

use crate::payments::StripeConfig;

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

/// A timeout of the public edge (`header_timeout`, `request_timeout`, `idle_timeout`): positive
/// and at most [`EDGE_TIMEOUT_MAX`].
pub fn check_edge_timeout(key: &'static str, timeout: Duration) -> Result<Duration, ConfigError> {
    if timeout.is_zero() || timeout > EDGE_TIMEOUT_MAX {
        let rule = format!("positive and at most {EDGE_TIMEOUT_MAX:?}");
        return Err(ConfigError::new(key, format!("{timeout:?}"), rule));
    }
    Ok(timeout)
}

/// A cap that cannot be turned off (`connections_max`, `streams_max`): at least one.
pub fn check_cap(key: &'static str, cap: usize) -> Result<usize, ConfigError> {
    if cap == 0 {
        return Err(ConfigError::new(key, cap, "must be positive"));
    }
    Ok(cap)
}

/// Largest request body read, in bytes, unless configured otherwise.
pub const BODY_LIMIT_BYTES_DEFAULT: usize = 1024 * 1024;
/// API.md: "Holds last 10 minutes unless the server is configured otherwise."
pub const HOLD_TTL_DEFAULT: Duration = Duration::from_secs(10 * 60);
/// Seats one user may have in active holds of one event at once, unless configured otherwise:
/// a hold takes at most 20 (`HOLD_SEATS_MAX`), so one full hold, but no second one beside it.
pub const HELD_SEATS_PER_USER_MAX_DEFAULT: u32 = 20;
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

/// How long a client may take to send a request's headers: from the connection's start, or from
/// the first byte after an idle keep-alive wait. Every legitimate client sends its headers in
/// one write; ten seconds covers a slow mobile link with retransmissions, and cuts a slowloris
/// client, which trickles headers to hold a connection, after ten seconds rather than never.
pub const HEADER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// How long a whole request (headers and body) may take. Bodies are at most
/// `body_limit_bytes` (1 MiB by default): thirty seconds carries that over a 35 KB/s link, and
/// bounds how long a client trickling a body holds a connection and a handler.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How long a keep-alive connection may wait for its next request. Longer than the idle timeout
/// of common load balancers (60 s), so the proxy, not the api, closes an idle upstream
/// connection and never sends a request into one the api is closing; nginx's default.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(75);
/// The longest edge timeout accepted: past it a timeout no longer protects anything.
pub const EDGE_TIMEOUT_MAX: Duration = Duration::from_secs(3600);
/// Open connections per api instance. An idle HTTP/1 connection costs a socket, a task and an
/// 8 KiB read buffer (about 10–20 KiB): 16,384 of them stay within a few hundred MB and within
/// common file-descriptor limits once the binary raises its soft limit (it also lowers this cap
/// to what the limit allows). Beyond it new connections are closed at once.
pub const CONNECTIONS_MAX_DEFAULT: usize = 16_384;
/// Open connections per client address (an IPv6 client's /64). A browser opens at most six per
/// host, so 1,024 serves an office or NAT of over a hundred and fifty browsers, while one
/// address can take only a sixteenth of [`CONNECTIONS_MAX_DEFAULT`]. Behind a proxy every client
/// has the proxy's address: raise it or set 0 (off) there.
pub const CONNECTIONS_PER_ADDRESS_MAX_DEFAULT: usize = 1_024;
/// Server-sent-event streams (seat maps, waiting rooms) per api instance. Each holds a
/// connection for as long as it lasts: half the connection cap, so streams cannot take every
/// connection from ordinary requests. Beyond it a stream answers 503 `unavailable`.
pub const STREAMS_MAX_DEFAULT: usize = 8_192;
/// Streams per client address: a household or office with many tabs open; beyond it 429.
/// Behind a proxy, raise it or set 0 (off).
pub const STREAMS_PER_ADDRESS_MAX_DEFAULT: u32 = 64;
/// Streams per user (bearer token): a buyer with a few tabs and devices; beyond it 429.
pub const STREAMS_PER_USER_MAX_DEFAULT: u32 = 8;

/// The public edge's server (see `edge/`): timeouts and connection caps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// Request headers must arrive within this, from the connection's start or the first byte
    /// after an idle wait; otherwise the connection is closed.
    pub header_timeout: Duration,
    /// Headers and body must arrive within this; a late body answers 408 and closes. Responses
    /// (streams included) are not cut by it.
    pub request_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// Open connections in all; beyond it new ones are closed at once.
    pub connections_max: usize,
    /// Open connections per client address (IPv6: per /64); 0 = off.
    pub connections_per_address_max: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_timeout: HEADER_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            connections_per_address_max: CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
        }
    }
}

impl ServeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_edge_timeout("header_timeout", self.header_timeout)?;
        check_edge_timeout("request_timeout", self.request_timeout)?;
        check_edge_timeout("idle_timeout", self.idle_timeout)?;
        check_cap("connections_max", self.connections_max)?;
        Ok(())
    }
}

/// Caps on server-sent-event streams (see `streams.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamsConfig {
    /// Open streams per api instance; beyond it 503 `unavailable`.
    pub max: usize,
    /// Open streams per client address (IPv6: per /64); beyond it 429 `rate_limited`; 0 = off.
    pub per_address_max: u32,
    /// Open streams per user (a valid bearer token's `sub`); beyond it 429; 0 = off.
    pub per_user_max: u32,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            max: STREAMS_MAX_DEFAULT,
            per_address_max: STREAMS_PER_ADDRESS_MAX_DEFAULT,
            per_user_max: STREAMS_PER_USER_MAX_DEFAULT,
        }
    }
}

/// The shortest HS256 key and waiting-room key accepted, in bytes: 256 bits, as RFC 7518 asks of
/// HS256 keys.
pub const SECRET_BYTES_MIN: usize = 32;
/// The longest a bearer token may be valid for, unless configured.
pub const TOKEN_LIFETIME_MAX_DEFAULT: Duration = Duration::from_secs(24 * 3600);

/// A key or secret: at least [`SECRET_BYTES_MIN`] bytes.
pub fn check_secret(key: &'static str, secret: &str) -> Result<(), ConfigError> {
    if secret.len() < SECRET_BYTES_MIN {
        let rule = format!("at least {SECRET_BYTES_MIN} bytes");
        return Err(ConfigError::new(key, format!("<{} bytes>", secret.len()), rule));
    }
    Ok(())
}

/// An OIDC issuer whose tokens the api accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    /// The issuer (`iss`), e.g. `https://login.example.com/realms/boxoffice`; its keys are found
    /// through `{issuer}/.well-known/openid-configuration` unless `jwks_url` is given.
    pub issuer: String,
    /// The audience (`aud`) a token must name.
    pub audience: String,
    pub jwks_url: Option<String>,
    /// The claim holding the role (`user`, `admin`, `scanner`); a token without it is a user's.
    pub role_claim: String,
    /// A PEM file of certificates to trust for the issuer's HTTPS, beside the public roots.
    pub ca_file: Option<std::path::PathBuf>,
}

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
    /// HS256 key that verifies bearer tokens (and signs dev tokens); every api instance shares
    /// it. At least [`SECRET_BYTES_MIN`]. `None` when tokens come only from an OIDC issuer.
    pub jwt_secret: Option<String>,
    /// An OIDC issuer whose published keys verify RS256, ES256 and EdDSA tokens.
    pub oidc: Option<OidcConfig>,
    /// Tokens that are valid for longer than this (from now, or from their `iat`) are refused.
    pub token_lifetime_max: Duration,
    /// The waiting room's own key: its queue and access tokens are signed with keys derived from
    /// it, never from a bearer-token key. At least [`SECRET_BYTES_MIN`]; every instance shares it.
    pub queue_secret: String,
    /// The key ticket codes are signed with: each event's Ed25519 key is derived from it. Every
    /// instance shares it; changing it invalidates every code issued. `None`: derived from
    /// `queue_secret` (a separate derivation, so neither reveals the other), for deployments
    /// that have not set one apart. At least [`SECRET_BYTES_MIN`].
    pub ticket_secret: Option<String>,
    /// Serves `POST /v1/auth/dev-token` (development and tests only; 404 otherwise).
    pub dev_tokens: bool,
    /// How long a hold keeps its seats; the state machine bounds it to
    /// `HOLD_TTL_MS_MIN..=HOLD_TTL_MS_MAX`.
    pub hold_ttl: Duration,
    /// The most seats (and general admissions) one user may have in active holds of one event
    /// at once; 0: no cap. Carried in each hold command and enforced in apply, so every replica
    /// judges it alike; checked-out holds (orders) do not count, the event's `per_user_limit`
    /// does that. Bounds how much of a sale one account can keep off the market by holding and
    /// letting holds expire.
    pub held_seats_per_user_max: u32,
    /// Larger request bodies answer 413 `payload_too_large`.
    pub body_limit_bytes: usize,
    /// The read cache of event details and seat maps.
    pub read_cache: ReadCacheConfig,
    /// Per-user and per-address request rates, and the hold/release churn budget.
    pub limits: LimitsConfig,
    /// The public edge's timeouts and connection caps.
    pub serve: ServeConfig,
    /// Caps on server-sent-event streams.
    pub streams: StreamsConfig,
    /// Serve `/metrics` on this internal address instead of the public one (where it then
    /// answers 404); the binary binds it.
    pub metrics_addr: Option<SocketAddr>,
    /// Stripe's keys: with them the webhook `POST /v1/payments/stripe/webhook` is served, and
    /// the binary adds Stripe to the payment gateways (`Payments::for_config`).
    pub stripe: Option<StripeConfig>,
    /// Take the sandbox's payment methods (`sandbox_ok`, `sandbox_decline`): tickets without
    /// money, for development and tests. Off, orders paid with them are still refunded.
    pub sandbox_payments: bool,
}

impl ApiConfig {
    /// The defaults, with the given HS256 secret (which also keys the waiting room until
    /// `queue_secret` is set apart) and dev tokens off.
    pub fn new(jwt_secret: impl Into<String>) -> ApiConfig {
        let jwt_secret = jwt_secret.into();
        ApiConfig {
            queue_secret: jwt_secret.clone(),
            jwt_secret: Some(jwt_secret),
            ticket_secret: None,
            oidc: None,
            token_lifetime_max: TOKEN_LIFETIME_MAX_DEFAULT,
            dev_tokens: false,
            hold_ttl: HOLD_TTL_DEFAULT,
            held_seats_per_user_max: HELD_SEATS_PER_USER_MAX_DEFAULT,
            body_limit_bytes: BODY_LIMIT_BYTES_DEFAULT,
            read_cache: ReadCacheConfig::default(),
            limits: LimitsConfig::default(),
            serve: ServeConfig::default(),
            streams: StreamsConfig::default(),
            metrics_addr: None,
            stripe: None,
            sandbox_payments: true,
        }
    }

    /// Checks what would otherwise fail on every request; [`crate::ApiState::new`] runs it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.jwt_secret {
            check_secret("jwt_secret", secret)?;
        }
        if self.jwt_secret.is_none() && self.oidc.is_none() {
            return Err(ConfigError::new("jwt_secret", "none", "give a token key or an OIDC issuer (oidc_issuer)"));
        }
        if self.dev_tokens && self.jwt_secret.is_none() {
            return Err(ConfigError::new("dev_tokens", true, "dev tokens are signed with the HS256 key (jwt_secret)"));
        }
        check_secret("queue_secret", &self.queue_secret)?;
        if let Some(secret) = &self.ticket_secret {
            check_secret("ticket_secret", secret)?;
        }
        if self.token_lifetime_max.is_zero() {
            return Err(ConfigError::new("token_lifetime_max", "0s", "must be positive"));
        }
        check_hold_ttl(self.hold_ttl)?;
        check_body_limit_bytes(self.body_limit_bytes)?;
        check_read_cache_ttl(self.read_cache.ttl)?;
        self.serve.validate()?;
        check_cap("streams_max", self.streams.max)?;
        if let Some(stripe) = &self.stripe {
            stripe.validate()?;
        }
        self.limits.validate()
    }

    pub(crate) fn hold_ttl_ms(&self) -> i64 {
        i64::try_from(self.hold_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// The cap a hold carries: `None` when the setting is 0 (off).
    pub(crate) fn held_seats_max(&self) -> Option<u32> {
        (self.held_seats_per_user_max > 0).then_some(self.held_seats_per_user_max)
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("oidc", &self.oidc)
            .field("token_lifetime_max", &self.token_lifetime_max)
            .field("queue_secret", &"***")
            .field("ticket_secret", &self.ticket_secret.as_ref().map(|_| "***"))
            .field("dev_tokens", &self.dev_tokens)
            .field("hold_ttl", &self.hold_ttl)
            .field("held_seats_per_user_max", &self.held_seats_per_user_max)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("read_cache", &self.read_cache)
            .field("limits", &self.limits)
            .field("serve", &self.serve)
            .field("streams", &self.streams)
            .field("metrics_addr", &self.metrics_addr)
            // Its `Debug` masks the keys.
            .field("stripe", &self.stripe)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_setting_is_named_with_its_value() {
        let mut config = ApiConfig::new("a-secret-of-thirty-two-bytes-or-more");
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
        config.limits.user_burst = RATE_LIMIT_USER_BURST_DEFAULT;
        config.serve.header_timeout = Duration::ZERO;
        assert_eq!(config.validate().unwrap_err().key, "header_timeout");
        config.serve.header_timeout = HEADER_TIMEOUT_DEFAULT;
        config.streams.max = 0;
        assert_eq!(config.validate().unwrap_err().key, "streams_max");
    }
}
