//! The long-running commands' settings: one clap struct each, whose fields are the flags, the
//! `--config` file's keys (see `config.rs`) and, where given, an environment variable. Defaults and
//! ranges come from the crates that own the setting (`api`'s config, `node`'s tuning, the state
//! machine's limits), so the command line, the file and the validation agree by construction.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Event shards of a new cluster or dev data directory unless given.
pub const SHARDS_DEFAULT: u32 = 8;
/// The state store's block cache of a `boxoffice node`, in MiB, unless given.
const NODE_CACHE_MB_DEFAULT: u64 = 512;
const DEV_CACHE_MB_DEFAULT: u64 = 256;
/// The largest clock offset a cluster may be configured to tolerate.
const MAX_CLOCK_OFFSET_MAX: Duration = Duration::from_secs(60);
/// The shortest cluster secret accepted, in bytes.
pub const CLUSTER_SECRET_LEN_MIN: usize = 16;

/// A duration such as `10m` or `90s`, shown the same way in `--help`.
pub type Span = humantime::Duration;

fn span(d: Duration) -> Span {
    Span::from(d)
}

fn parse_span(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

fn any_span(text: &str) -> Result<Span, humantime::DurationError> {
    parse_span(text).map(span)
}

fn hold_ttl(text: &str) -> Result<Span, Box<dyn std::error::Error + Send + Sync>> {
    Ok(span(api::check_hold_ttl(parse_span(text)?)?))
}

fn read_cache_ttl(text: &str) -> Result<Span, Box<dyn std::error::Error + Send + Sync>> {
    Ok(span(api::check_read_cache_ttl(parse_span(text)?)?))
}

fn body_limit_bytes(text: &str) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    Ok(api::check_body_limit_bytes(text.parse()?)?)
}

type ParseResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn header_timeout(text: &str) -> ParseResult<Span> {
    Ok(span(api::check_edge_timeout("header_timeout", parse_span(text)?)?))
}

fn request_timeout(text: &str) -> ParseResult<Span> {
    Ok(span(api::check_edge_timeout("request_timeout", parse_span(text)?)?))
}

fn idle_timeout(text: &str) -> ParseResult<Span> {
    Ok(span(api::check_edge_timeout("idle_timeout", parse_span(text)?)?))
}

fn connections_max(text: &str) -> ParseResult<usize> {
    Ok(api::check_cap("connections_max", text.parse()?)?)
}

fn stripe_api_base(text: &str) -> ParseResult<String> {
    api::check_stripe_api_base(text)?;
    Ok(text.to_owned())
}

fn stripe_tolerance(text: &str) -> ParseResult<Span> {
    Ok(span(api::check_stripe_tolerance(parse_span(text)?)?))
}

fn stripe_request_timeout(text: &str) -> ParseResult<Span> {
    Ok(span(api::check_stripe_request_timeout(parse_span(text)?)?))
}

fn streams_max(text: &str) -> ParseResult<usize> {
    Ok(api::check_cap("streams_max", text.parse()?)?)
}

#[derive(Debug, thiserror::Error)]
#[error("at most {max}")]
struct TooLarge {
    max: Span,
}

fn max_clock_offset(text: &str) -> Result<Span, Box<dyn std::error::Error + Send + Sync>> {
    let offset = parse_span(text)?;
    if offset > MAX_CLOCK_OFFSET_MAX {
        return Err(Box::new(TooLarge { max: span(MAX_CLOCK_OFFSET_MAX) }));
    }
    Ok(span(offset))
}

#[derive(Debug, thiserror::Error)]
#[error("a cluster secret is at least {CLUSTER_SECRET_LEN_MIN} bytes, this one {0}")]
pub struct ShortSecret(usize);

pub fn cluster_secret(text: &str) -> Result<String, ShortSecret> {
    if text.len() < CLUSTER_SECRET_LEN_MIN {
        return Err(ShortSecret(text.len()));
    }
    Ok(text.to_owned())
}

pub fn shards() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=i64::from(raft_store::SHARDS_MAX))
}

/// The api tier's settings, shared by `boxoffice dev` and `boxoffice api`.
#[derive(Args, Clone, Debug)]
pub struct EdgeArgs {
    /// How long a hold lasts, e.g. `10m`, `90s`.
    #[arg(long, env = "BOXOFFICE_HOLD_TTL", default_value_t = span(api::HOLD_TTL_DEFAULT), value_parser = hold_ttl)]
    pub hold_ttl: Span,
    /// The most seats (and general admissions) one user may have in active holds of one event
    /// at once, enforced by the state machine; 0 turns the cap off.
    #[arg(long, env = "BOXOFFICE_HELD_SEATS_PER_USER_MAX", default_value_t = api::HELD_SEATS_PER_USER_MAX_DEFAULT)]
    pub held_seats_per_user_max: u32,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "BOXOFFICE_BODY_LIMIT_BYTES", default_value_t = api::BODY_LIMIT_BYTES_DEFAULT, value_parser = body_limit_bytes)]
    pub body_limit_bytes: usize,
    /// How long event details and seat maps are served from the api's memory; `0s` turns the
    /// cache off.
    #[arg(long, env = "BOXOFFICE_READ_CACHE_TTL", default_value_t = span(api::READ_CACHE_TTL_DEFAULT), value_parser = read_cache_ttl)]
    pub read_cache_ttl: Span,
    /// Memory for the read cache, in MiB.
    #[arg(long, env = "BOXOFFICE_READ_CACHE_MB", default_value_t = api::READ_CACHE_BYTES_DEFAULT >> 20)]
    pub read_cache_mb: u64,
    /// Take the sandbox's payment methods (`sandbox_ok` pays at once, `sandbox_decline`
    /// declines): tickets without money, for trials and tests, never for a real sale (`boxoffice
    /// dev` always takes them). Without it, orders paid with them are still refunded.
    #[arg(long, env = "BOXOFFICE_SANDBOX_PAYMENTS")]
    pub sandbox_payments: bool,
    /// Requests per second each user (token) may make, sustained; 0 turns the limit off.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_USER_PER_S", default_value_t = api::RATE_LIMIT_USER_PER_S_DEFAULT)]
    pub rate_limit_user_per_s: u32,
    /// Requests a user may make at once above the sustained rate.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_USER_BURST", default_value_t = api::RATE_LIMIT_USER_BURST_DEFAULT)]
    pub rate_limit_user_burst: u32,
    /// Requests per second each client address may make, sustained; 0 (the default) turns the
    /// limit off. Leave it off behind a proxy: every client then has the proxy's address.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_IP_PER_S", default_value_t = 0)]
    pub rate_limit_ip_per_s: u32,
    /// Requests a client address may make at once above the sustained rate.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_IP_BURST", default_value_t = api::RATE_LIMIT_IP_BURST_DEFAULT)]
    pub rate_limit_ip_burst: u32,
    /// Holds a user may release per `--churn-window` before their new holds answer 429 for a
    /// while; 0 turns the limit off.
    #[arg(long, env = "BOXOFFICE_CHURN_RELEASES_MAX", default_value_t = api::CHURN_RELEASES_MAX_DEFAULT)]
    pub churn_releases_max: u32,
    /// The window of `--churn-releases-max`; the budget refills evenly over it.
    #[arg(long, env = "BOXOFFICE_CHURN_WINDOW", default_value_t = span(api::CHURN_WINDOW_DEFAULT), value_parser = any_span)]
    pub churn_window: Span,
    /// A request's headers must arrive within this (from the connection's start, or the first
    /// byte after an idle wait), or the connection is closed.
    #[arg(long, env = "BOXOFFICE_HEADER_TIMEOUT", default_value_t = span(api::HEADER_TIMEOUT_DEFAULT), value_parser = header_timeout)]
    pub header_timeout: Span,
    /// A request's headers and body must arrive within this; a late body answers 408. Responses,
    /// streams included, are not cut by it.
    #[arg(long, env = "BOXOFFICE_REQUEST_TIMEOUT", default_value_t = span(api::REQUEST_TIMEOUT_DEFAULT), value_parser = request_timeout)]
    pub request_timeout: Span,
    /// A keep-alive connection without a request in progress is closed after this.
    #[arg(long, env = "BOXOFFICE_IDLE_TIMEOUT", default_value_t = span(api::IDLE_TIMEOUT_DEFAULT), value_parser = idle_timeout)]
    pub idle_timeout: Span,
    /// Open connections in all; beyond it new connections are closed at once. Lowered at
    /// start-up to what the process's file-descriptor limit allows.
    #[arg(long, env = "BOXOFFICE_CONNECTIONS_MAX", default_value_t = api::CONNECTIONS_MAX_DEFAULT, value_parser = connections_max)]
    pub connections_max: usize,
    /// Open connections per client address (IPv6: per /64); 0 turns the cap off. Behind a
    /// proxy every client has the proxy's address: raise it or turn it off there.
    #[arg(long, env = "BOXOFFICE_CONNECTIONS_PER_ADDRESS_MAX", default_value_t = api::CONNECTIONS_PER_ADDRESS_MAX_DEFAULT)]
    pub connections_per_address_max: usize,
    /// Open event streams (seat maps, waiting rooms) per instance; beyond it they answer 503.
    #[arg(long, env = "BOXOFFICE_STREAMS_MAX", default_value_t = api::STREAMS_MAX_DEFAULT, value_parser = streams_max)]
    pub streams_max: usize,
    /// Open event streams per client address; beyond it they answer 429; 0 turns the cap off.
    #[arg(long, env = "BOXOFFICE_STREAMS_PER_ADDRESS_MAX", default_value_t = api::STREAMS_PER_ADDRESS_MAX_DEFAULT)]
    pub streams_per_address_max: u32,
    /// Open event streams per user (bearer token); beyond it they answer 429; 0 turns the cap
    /// off.
    #[arg(long, env = "BOXOFFICE_STREAMS_PER_USER_MAX", default_value_t = api::STREAMS_PER_USER_MAX_DEFAULT)]
    pub streams_per_user_max: u32,
    /// Serve `/metrics` on this address (an internal one, for scrapers) instead of the public
    /// address, where it then answers 404.
    #[arg(long, env = "BOXOFFICE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub stripe: StripeArgs,
}

/// Stripe (`dev` and `api`): checkouts with `"payment_method": "stripe"` are taken when a secret
/// key is given, and Stripe's events are received at `POST /v1/payments/stripe/webhook`.
#[derive(Args, Clone)]
pub struct StripeArgs {
    /// Stripe's API; a stand-in's URL in tests.
    #[arg(long, env = "BOXOFFICE_STRIPE_API_BASE", default_value = api::STRIPE_API_BASE_DEFAULT, value_parser = stripe_api_base)]
    pub stripe_api_base: String,
    /// Stripe's secret API key (`sk_…`, or a restricted `rk_…` that may write PaymentIntents
    /// and refunds); Stripe payments are on when it is given.
    #[arg(long, env = "BOXOFFICE_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// A file holding `--stripe-secret-key`, readable by its owner (and group) only.
    #[arg(long, env = "BOXOFFICE_STRIPE_SECRET_KEY_FILE", conflicts_with = "stripe_secret_key")]
    pub stripe_secret_key_file: Option<PathBuf>,
    /// The webhook endpoint's signing secret (`whsec_…`); while it is rotated, the old and the
    /// new, comma-separated: an event signed with either is accepted.
    #[arg(long, env = "BOXOFFICE_STRIPE_WEBHOOK_SECRET", hide_env_values = true, value_delimiter = ',')]
    pub stripe_webhook_secret: Vec<String>,
    /// A file holding `--stripe-webhook-secret` (one or more, comma- or line-separated),
    /// readable by its owner (and group) only.
    #[arg(long, env = "BOXOFFICE_STRIPE_WEBHOOK_SECRET_FILE", conflicts_with = "stripe_webhook_secret")]
    pub stripe_webhook_secret_file: Option<PathBuf>,
    /// How far a webhook's signed timestamp may be from this server's clock; older (or later)
    /// events are refused, so a captured one cannot be replayed.
    #[arg(long, env = "BOXOFFICE_STRIPE_TOLERANCE", default_value_t = span(api::STRIPE_TOLERANCE_DEFAULT), value_parser = stripe_tolerance)]
    pub stripe_tolerance: Span,
    /// How long one request to Stripe may take; a checkout that times out may be retried.
    #[arg(long, env = "BOXOFFICE_STRIPE_REQUEST_TIMEOUT", default_value_t = span(api::STRIPE_REQUEST_TIMEOUT_DEFAULT), value_parser = stripe_request_timeout)]
    pub stripe_request_timeout: Span,
}

/// The keys are never shown, only whether they are given.
impl std::fmt::Debug for StripeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeArgs")
            .field("stripe_api_base", &self.stripe_api_base)
            .field("stripe_secret_key", &self.stripe_secret_key.as_ref().map(|_| "***"))
            .field("stripe_secret_key_file", &self.stripe_secret_key_file)
            .field("stripe_webhook_secret", &format_args!("[*** × {}]", self.stripe_webhook_secret.len()))
            .field("stripe_webhook_secret_file", &self.stripe_webhook_secret_file)
            .field("stripe_tolerance", &self.stripe_tolerance)
            .field("stripe_request_timeout", &self.stripe_request_timeout)
            .finish()
    }
}

impl StripeArgs {
    /// Stripe's settings, with the keys read from their files where given so; `None` without a
    /// secret key. A key without a webhook secret (or the reverse) is refused: payments would
    /// never be confirmed.
    pub fn config(&self) -> Result<Option<api::StripeConfig>, crate::error::ServeError> {
        use crate::error::ServeError;
        use crate::secrets::{inline_or_file, read_secret_file};
        let secret_key = inline_or_file(self.stripe_secret_key.as_deref(), self.stripe_secret_key_file.as_deref())?;
        let webhook_secrets: Vec<String> = match &self.stripe_webhook_secret_file {
            Some(path) => read_secret_file(path)?.split([',', '\n']).map(str::to_owned).collect(),
            None => self.stripe_webhook_secret.clone(),
        };
        let webhook_secrets: Vec<String> =
            webhook_secrets.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        match (secret_key, webhook_secrets.is_empty()) {
            (None, true) => Ok(None),
            (None, false) => {
                Err(ServeError::MissingSecret { what: "Stripe's secret key", flags: "--stripe-secret-key(-file)" })
            }
            (Some(_), true) => Err(ServeError::MissingSecret {
                what: "Stripe's webhook signing secret",
                flags: "--stripe-webhook-secret(-file)",
            }),
            (Some(secret_key), false) => Ok(Some(api::StripeConfig {
                api_base: self.stripe_api_base.clone(),
                secret_key,
                webhook_secrets,
                tolerance: self.stripe_tolerance.into(),
                request_timeout: self.stripe_request_timeout.into(),
            })),
        }
    }
}

fn token_lifetime_max(text: &str) -> ParseResult<Span> {
    let lifetime = parse_span(text)?;
    if lifetime.is_zero() {
        return Err("must be positive".into());
    }
    Ok(span(lifetime))
}

/// Who signs the bearer tokens the api accepts, and the waiting room's key (`dev` and `api`).
#[derive(Args, Clone, Debug)]
pub struct TokenArgs {
    /// HS256 key that verifies clients' tokens, at least 32 bytes (`boxoffice dev`: generated
    /// and kept in the data directory unless given).
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A file holding `--jwt-secret`, readable by its owner (and group) only.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Accept tokens from this OIDC issuer (its `iss`, e.g.
    /// `https://login.example.com/realms/boxoffice`), verified with the keys it publishes.
    #[arg(long, env = "BOXOFFICE_OIDC_ISSUER", requires = "oidc_audience")]
    pub oidc_issuer: Option<String>,
    /// The audience (`aud`) the issuer's tokens must name: this api's client id.
    #[arg(long, env = "BOXOFFICE_OIDC_AUDIENCE", requires = "oidc_issuer")]
    pub oidc_audience: Option<String>,
    /// The issuer's key set [default: the `jwks_uri` of its discovery document].
    #[arg(long, env = "BOXOFFICE_OIDC_JWKS_URL", requires = "oidc_issuer")]
    pub oidc_jwks_url: Option<String>,
    /// The claim of an issuer's token that holds the role (`user`, `admin` or `scanner`; a
    /// list gives the highest it names; a dotted path reaches into objects, such as
    /// `realm_access.roles`). A token without it is a user's.
    #[arg(long, env = "BOXOFFICE_OIDC_ROLE_CLAIM", default_value = "role")]
    pub oidc_role_claim: String,
    /// PEM file of certificates to trust for the issuer's HTTPS, beside the public roots.
    #[arg(long, env = "BOXOFFICE_OIDC_CA_FILE", requires = "oidc_issuer")]
    pub oidc_ca_file: Option<PathBuf>,
    /// Tokens valid for longer than this (from now, or from when they were issued) are refused.
    #[arg(long, env = "BOXOFFICE_TOKEN_LIFETIME_MAX", default_value_t = span(api::TOKEN_LIFETIME_MAX_DEFAULT), value_parser = token_lifetime_max)]
    pub token_lifetime_max: Span,
    /// The waiting room's key, at least 32 bytes, shared by every api instance (`boxoffice
    /// dev`: generated and kept in the data directory unless given).
    #[arg(long, env = "BOXOFFICE_QUEUE_SECRET", hide_env_values = true)]
    pub queue_secret: Option<String>,
    /// A file holding `--queue-secret`, readable by its owner (and group) only.
    #[arg(long, env = "BOXOFFICE_QUEUE_SECRET_FILE", conflicts_with = "queue_secret")]
    pub queue_secret_file: Option<PathBuf>,
    /// The key ticket codes are signed with (each event's Ed25519 key is derived from it), at
    /// least 32 bytes, shared by every api instance; changing it invalidates issued codes
    /// [default: derived from the waiting room's key; `boxoffice dev`: generated and kept in the
    /// data directory].
    #[arg(long, env = "BOXOFFICE_TICKET_SECRET", hide_env_values = true)]
    pub ticket_secret: Option<String>,
    /// A file holding `--ticket-secret`, readable by its owner (and group) only.
    #[arg(long, env = "BOXOFFICE_TICKET_SECRET_FILE", conflicts_with = "ticket_secret")]
    pub ticket_secret_file: Option<PathBuf>,
}

/// The keys [`TokenArgs`] gives, read from their files where given as files.
pub struct TokenKeys {
    pub jwt_secret: Option<String>,
    pub queue_secret: Option<String>,
    pub ticket_secret: Option<String>,
}

impl TokenArgs {
    pub fn keys(&self) -> Result<TokenKeys, crate::secrets::SecretFileError> {
        use crate::secrets::inline_or_file;
        Ok(TokenKeys {
            jwt_secret: inline_or_file(self.jwt_secret.as_deref(), self.jwt_secret_file.as_deref())?,
            queue_secret: inline_or_file(self.queue_secret.as_deref(), self.queue_secret_file.as_deref())?,
            ticket_secret: inline_or_file(self.ticket_secret.as_deref(), self.ticket_secret_file.as_deref())?,
        })
    }

    pub fn oidc(&self) -> Option<api::OidcConfig> {
        Some(api::OidcConfig {
            issuer: self.oidc_issuer.clone()?,
            audience: self.oidc_audience.clone()?,
            jwks_url: self.oidc_jwks_url.clone(),
            role_claim: self.oidc_role_claim.clone(),
            ca_file: self.oidc_ca_file.clone(),
        })
    }
}

impl EdgeArgs {
    /// The api's configuration: these settings, the token settings and keys (the waiting room's
    /// is required), and whether dev tokens are served.
    pub fn api_config(
        &self,
        tokens: &TokenArgs,
        keys: TokenKeys,
        dev_tokens: bool,
    ) -> Result<api::ApiConfig, crate::error::ServeError> {
        Ok(api::ApiConfig {
            jwt_secret: keys.jwt_secret,
            oidc: tokens.oidc(),
            token_lifetime_max: tokens.token_lifetime_max.into(),
            queue_secret: keys.queue_secret.unwrap_or_default(),
            ticket_secret: keys.ticket_secret,
            dev_tokens,
            hold_ttl: self.hold_ttl.into(),
            held_seats_per_user_max: self.held_seats_per_user_max,
            body_limit_bytes: self.body_limit_bytes,
            read_cache: api::ReadCacheConfig {
                ttl: self.read_cache_ttl.into(),
                capacity_bytes: self.read_cache_mb.saturating_mul(1 << 20),
            },
            limits: api::LimitsConfig {
                user_per_s: self.rate_limit_user_per_s,
                user_burst: self.rate_limit_user_burst,
                ip_per_s: self.rate_limit_ip_per_s,
                ip_burst: self.rate_limit_ip_burst,
                churn_releases_max: self.churn_releases_max,
                churn_window: self.churn_window.into(),
            },
            serve: api::ServeConfig {
                header_timeout: self.header_timeout.into(),
                request_timeout: self.request_timeout.into(),
                idle_timeout: self.idle_timeout.into(),
                connections_max: self.connections_max,
                connections_per_address_max: self.connections_per_address_max,
            },
            streams: api::StreamsConfig {
                max: self.streams_max,
                per_address_max: self.streams_per_address_max,
                per_user_max: self.streams_per_user_max,
            },
            metrics_addr: self.metrics_addr,
            stripe: self.stripe.config()?,
            sandbox_payments: self.sandbox_payments,
        })
    }
}

/// How a process or an operator's command proves itself to the cluster: its TLS credential,
/// whose certificate names its role, and the cluster secret, a second factor in every
/// connection's hello (`node`, `api`, `indexer`, and the operator's commands; `dev` needs none).
#[derive(Args, Clone, Debug)]
pub struct ClusterAccess {
    /// Shared by every process of the cluster; at least 16 bytes.
    #[arg(long, env = "BOXOFFICE_CLUSTER_SECRET", hide_env_values = true, value_parser = cluster_secret)]
    pub cluster_secret: Option<String>,
    /// A file holding `--cluster-secret`, readable by its owner (and group) only.
    #[arg(long, env = "BOXOFFICE_CLUSTER_SECRET_FILE", conflicts_with = "cluster_secret")]
    pub cluster_secret_file: Option<PathBuf>,
    /// This process's TLS credential: a directory written by `boxoffice certs issue` (`cert.pem`,
    /// `key.pem`, `ca.pem`). Every connection between processes is mutual TLS.
    #[arg(long, env = "BOXOFFICE_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
}

fn positive_span(text: &str) -> ParseResult<Span> {
    let span_given = parse_span(text)?;
    if span_given.is_zero() {
        return Err("must be positive".into());
    }
    Ok(span(span_given))
}

fn positive_count(text: &str) -> ParseResult<usize> {
    match text.parse::<usize>()? {
        0 => Err("must be positive".into()),
        n => Ok(n),
    }
}

/// The limits of a node's port (`boxoffice node`).
#[derive(Args, Clone, Debug)]
pub struct PortArgs {
    /// A connection to the node's port must show its protocol, finish TLS and send its hello
    /// within this, or it is closed.
    #[arg(long, env = "BOXOFFICE_HANDSHAKE_TIMEOUT", default_value_t = span(node::HANDSHAKE_TIMEOUT_DEFAULT), value_parser = positive_span)]
    pub handshake_timeout: Span,
    /// An established connection that sends no frame for this long, with no call in flight, is
    /// closed (its client opens a new one when it next calls).
    #[arg(long, env = "BOXOFFICE_IDLE_TIMEOUT", default_value_t = span(node::IDLE_TIMEOUT_DEFAULT), value_parser = positive_span)]
    pub idle_timeout: Span,
    /// Open connections to the node's port in all; beyond it new ones are closed at once.
    /// Lowered at start-up to what the process's file-descriptor limit allows.
    #[arg(long, env = "BOXOFFICE_CONNECTIONS_MAX", default_value_t = node::CONNECTIONS_MAX_DEFAULT, value_parser = positive_count)]
    pub connections_max: usize,
    /// Open connections to the node's port per remote address.
    #[arg(long, env = "BOXOFFICE_CONNECTIONS_PER_ADDRESS_MAX", default_value_t = node::CONNECTIONS_PER_ADDRESS_MAX_DEFAULT, value_parser = positive_count)]
    pub connections_per_address_max: usize,
}

impl PortArgs {
    pub fn limits(&self) -> node::PortLimits {
        node::PortLimits {
            handshake_timeout: self.handshake_timeout.into(),
            idle_timeout: self.idle_timeout.into(),
            connections_max: self.connections_max,
            connections_per_address_max: self.connections_per_address_max,
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct DevArgs {
    /// TOML file whose keys are these flags' names (`addr`, `hold_ttl`, …); flags and their
    /// environment variables win over it.
    #[arg(long, env = "BOXOFFICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve the api on; port 0 picks a free port (printed at start-up).
    #[arg(long, env = "BOXOFFICE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Where the node keeps its database; data survives restarts.
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./boxoffice-data")]
    pub data_dir: PathBuf,
    /// Start without the demo venues and events.
    #[arg(long)]
    pub no_demo: bool,
    /// Event shards (one Raft group each); fixed when the data directory is created [default:
    /// 8; with --restore, the backup's].
    #[arg(long, env = "BOXOFFICE_SHARDS", value_parser = shards())]
    pub shards: Option<u32>,
    /// Start a new data directory from this backup (`boxoffice backup create`) instead of the
    /// demo data; the data directory must be new or empty.
    #[arg(long, env = "BOXOFFICE_RESTORE")]
    pub restore: Option<PathBuf>,
    /// The state store's block cache, in MiB: with its write buffers (64 MiB) the bound on the
    /// store's memory, whatever the data on disk grows to.
    #[arg(long, env = "BOXOFFICE_CACHE_MB", default_value_t = DEV_CACHE_MB_DEFAULT)]
    pub cache_mb: u64,
    #[command(flatten)]
    pub snapshots: SnapshotArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

#[derive(Args, Clone, Debug)]
pub struct NodeArgs {
    /// TOML file whose keys are these flags' names (`node_id`, `listen`, …); flags and their
    /// environment variables win over it.
    #[arg(long, env = "BOXOFFICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id: a positive number, unique in the cluster, never reused.
    #[arg(long = "id", env = "BOXOFFICE_NODE_ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: u64,
    /// Address to serve peers, api instances and operators on.
    #[arg(long, env = "BOXOFFICE_LISTEN", default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,
    /// Address others reach this node at [default: the address it listens on].
    #[arg(long, env = "BOXOFFICE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Where the node keeps its database [default: ./boxoffice-node-ID].
    #[arg(long, env = "BOXOFFICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub access: ClusterAccess,
    #[command(flatten)]
    pub port: PortArgs,
    /// The state store's block cache, in MiB (with its write buffers, 64 MiB, the bound on the
    /// store's memory).
    #[arg(long, env = "BOXOFFICE_CACHE_MB", default_value_t = NODE_CACHE_MB_DEFAULT)]
    pub cache_mb: u64,
    /// The largest difference between any two nodes' clocks (keep them in sync with NTP): reads
    /// show a hold expired only once every clock is past its expiry.
    #[arg(long, env = "BOXOFFICE_MAX_CLOCK_OFFSET", default_value_t = span(Duration::from_millis(node::MAX_OFFSET_MS_DEFAULT as u64)), value_parser = max_clock_offset)]
    pub max_clock_offset: Span,
    /// Interval of the leaders' heartbeats, in milliseconds.
    #[arg(long, default_value_t = node::RaftTuning::default().heartbeat_ms, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time between this and `election_max_ms`
    /// starts an election, in milliseconds.
    #[arg(long, default_value_t = node::RaftTuning::default().election_min_ms, value_parser = clap::value_parser!(u64).range(1..))]
    pub election_min_ms: u64,
    #[arg(long, default_value_t = node::RaftTuning::default().election_max_ms, value_parser = clap::value_parser!(u64).range(1..))]
    pub election_max_ms: u64,
    #[command(flatten)]
    pub snapshots: SnapshotArgs,
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

/// The outgoing webhook dispatcher (`boxoffice dev` and `indexer`).
#[derive(Args, Clone, Debug)]
pub struct WebhookArgs {
    /// PEM file of a certificate authority that webhook endpoints' HTTPS certificates may chain to,
    /// trusted beside the public roots (endpoints behind a private CA).
    #[arg(long, env = "BOXOFFICE_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,
}

impl WebhookArgs {
    /// The dispatcher's configuration: its positions file in `data_dir`, `clock_margin` for the
    /// largest difference between this process's clock and the leaders'.
    pub fn config(&self, data_dir: &std::path::Path, clock_margin: Duration) -> indexer::DispatcherConfig {
        indexer::DispatcherConfig {
            ca_file: self.webhook_ca_file.clone(),
            clock_margin,
            ..indexer::DispatcherConfig::new(data_dir.to_path_buf())
        }
    }
}

/// How often each group snapshots (`boxoffice node` and `dev`).
#[derive(Args, Clone, Debug)]
pub struct SnapshotArgs {
    /// Build a snapshot (and compact the log) after this many applied entries: each group after
    /// between one and two times this many, spread by group, so shards do not build together.
    #[arg(long, default_value_t = node::RaftTuning::default().snapshot_every_logs, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every_logs: u64,
}

/// When ended events leave memory for their shard's archive (`boxoffice node` and `dev`).
#[derive(Args, Clone, Debug)]
pub struct ArchiveArgs {
    /// How long after an event starts it moves, with its orders and tickets, from memory to the
    /// shard's archive on disk (reads still find it there; its orders can no longer change).
    #[arg(long, env = "BOXOFFICE_ARCHIVE_AFTER", default_value_t = span(Duration::from_millis(node::ARCHIVE_AFTER_MS_DEFAULT as u64)), value_parser = any_span)]
    pub archive_after: Span,
}

impl ArchiveArgs {
    pub fn archive_after_ms(&self) -> i64 {
        i64::try_from(Duration::from(self.archive_after).as_millis()).unwrap_or(i64::MAX)
    }
}

impl NodeArgs {
    pub fn tuning(&self) -> node::RaftTuning {
        node::RaftTuning {
            heartbeat_ms: self.heartbeat_ms,
            election_min_ms: self.election_min_ms,
            election_max_ms: self.election_max_ms,
            snapshot_every_logs: self.snapshots.snapshot_every_logs,
            archive_after_ms: self.archive.archive_after_ms(),
            ..node::RaftTuning::default()
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("./boxoffice-node-{}", self.node_id)))
    }
}

/// Elasticsearch, when a deployment has outgrown the embedded index.
#[derive(Args, Clone, Debug)]
pub struct ElasticArgs {
    /// Search Elasticsearch at this URL (http(s)://HOST:9200) instead of the embedded index.
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_URL")]
    pub elasticsearch_url: Option<String>,
    /// Prefix of the index, alias and template names.
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_PREFIX", default_value = "boxoffice-events")]
    pub elasticsearch_prefix: String,
    /// An encoded API key (base64 of `id:key`).
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_API_KEY", hide_env_values = true)]
    pub elasticsearch_api_key: Option<String>,
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_USERNAME")]
    pub elasticsearch_username: Option<String>,
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_PASSWORD", hide_env_values = true)]
    pub elasticsearch_password: Option<String>,
    /// PEM file of the certificate authority that signed Elasticsearch's HTTPS certificate (a
    /// self-managed cluster's `config/certs/http_ca.crt`), trusted beside the public roots.
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_CA_FILE")]
    pub elasticsearch_ca_file: Option<PathBuf>,
}

impl ElasticArgs {
    pub fn config(&self) -> Option<indexer::ElasticConfig> {
        let url = self.elasticsearch_url.clone()?;
        Some(indexer::ElasticConfig {
            url,
            index_prefix: self.elasticsearch_prefix.clone(),
            api_key: self.elasticsearch_api_key.clone(),
            username: self.elasticsearch_username.clone(),
            password: self.elasticsearch_password.clone(),
            ca_file: self.elasticsearch_ca_file.clone(),
        })
    }
}

#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// TOML file whose keys are these flags' names (`listen`, `nodes`, `hold_ttl`, …); flags and
    /// their environment variables win over it.
    #[arg(long, env = "BOXOFFICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve the public api on.
    #[arg(long, env = "BOXOFFICE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Addresses of some of the cluster's nodes, comma-separated; the rest are learned.
    #[arg(long, env = "BOXOFFICE_NODES", value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub access: ClusterAccess,
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// Serve `POST /v1/auth/dev-token`, which mints any user's and admin tokens (development and
    /// tests only; refused unless `--listen` is a loopback address).
    #[arg(long, env = "BOXOFFICE_DEV_TOKENS")]
    pub dev_tokens: bool,
    /// Answer `GET /v1/search` through this `boxoffice indexer` (https://HOST:PORT, a host its
    /// certificate names).
    #[arg(long, env = "BOXOFFICE_SEARCH_URL", conflicts_with = "elasticsearch_url")]
    pub search_url: Option<String>,
    #[command(flatten)]
    pub elastic: ElasticArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

#[derive(Args, Clone, Debug)]
pub struct IndexerArgs {
    /// TOML file whose keys are these flags' names (`listen`, `nodes`, …); flags and their
    /// environment variables win over it.
    #[arg(long, env = "BOXOFFICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to answer api instances' searches on.
    #[arg(long, env = "BOXOFFICE_LISTEN", default_value = "127.0.0.1:7100")]
    pub listen: SocketAddr,
    /// Addresses of some of the cluster's nodes, comma-separated.
    #[arg(long, env = "BOXOFFICE_NODES", value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub access: ClusterAccess,
    /// Where the embedded index (and its feed checkpoints) and the webhook positions live.
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./boxoffice-indexer")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub elastic: ElasticArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// Which cluster an operator command talks to.
#[derive(Args, Clone, Debug)]
pub struct ClusterTarget {
    /// Any node of the cluster.
    #[arg(long, env = "BOXOFFICE_NODE", default_value = "127.0.0.1:7001")]
    pub node: String,
    /// An operator's credential (`boxoffice certs issue --role operator`) and the secret.
    #[command(flatten)]
    pub access: ClusterAccess,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        stripe: StripeArgs,
    }

    fn stripe(args: &[&str]) -> StripeArgs {
        Probe::try_parse_from(std::iter::once("probe").chain(args.iter().copied())).expect("parses").stripe
    }

    #[test]
    fn stripe_is_on_with_a_key_and_a_webhook_secret_and_never_shows_them() {
        assert!(stripe(&[]).config().expect("valid").is_none());
        let args = stripe(&["--stripe-secret-key", "sk_test_1", "--stripe-webhook-secret", "whsec_a, whsec_b"]);
        assert!(!format!("{args:?}").contains("sk_test_1") && !format!("{args:?}").contains("whsec_a"));
        let config = args.config().expect("valid").expect("on");
        assert_eq!(config.webhook_secrets, ["whsec_a", "whsec_b"]);
        assert_eq!((config.api_base.as_str(), config.tolerance), ("https://api.stripe.com", Duration::from_secs(300)));
        assert!(!format!("{config:?}").contains("sk_test_1"));

        let key_only = stripe(&["--stripe-secret-key", "sk_test_1"]).config();
        assert!(matches!(key_only, Err(crate::error::ServeError::MissingSecret { .. })));
        let secret_only = stripe(&["--stripe-webhook-secret", "whsec_a"]).config();
        assert!(matches!(secret_only, Err(crate::error::ServeError::MissingSecret { .. })));
        let bad = ["--stripe-tolerance", "0s", "--stripe-api-base", "ftp://x", "--stripe-request-timeout", "2h"];
        for pair in bad.chunks(2) {
            assert!(Probe::try_parse_from(std::iter::once("probe").chain(pair.iter().copied())).is_err(), "{pair:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn stripe_webhook_secrets_may_come_from_a_file_one_a_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("whsec");
        std::fs::write(&path, "whsec_new\r\nwhsec_old\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let path = path.to_str().expect("utf-8");
        let config = stripe(&["--stripe-secret-key", "sk_test_1", "--stripe-webhook-secret-file", path]).config();
        assert_eq!(config.expect("valid").expect("on").webhook_secrets, ["whsec_new", "whsec_old"]);
    }
}
