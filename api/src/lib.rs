//! The stateless public tier: REST `/v1` over a [`seams::Cluster`].
//!
//! - [`router`] serves the contract of `shared/API.md` from an [`ApiState`]: auth, idempotency,
//!   problem documents, the seat stream, metrics and the OpenAPI document; and, at `/`, the
//!   reference web client (`web.rs`, files in `api/web/`), which uses nothing but `/v1`.
//! - [`serve_api`] (and [`serve`]) is the public edge's server loop: header, request and idle
//!   timeouts, connection caps, readable 413s; `/metrics` optionally on an internal address.
//! - [`seams::Cluster`] is the only way this crate reaches the store, [`seams::SearchBackend`] the
//!   only way it reaches a search index, [`PaymentGateway`] the only way it reaches a payment
//!   provider ([`Payments`] puts the sandbox and [`StripeGateway`] behind it; Stripe's results
//!   arrive at its signed webhook).
//!
//! Architecture invariant: the api keeps no state another instance needs. Every booking rule is
//! decided inside the state machine; the api validates input, routes commands to their group, and
//! translates outcomes to HTTP. What it does keep (waiting-room blocks and views) is soft: lost on
//! restart, rebuilt from the store, never consulted by another instance.

mod app;
mod cache;
mod config;
mod dto;
mod edge;
mod error;
mod extract;
mod identity;
mod jwks;
mod limits;
mod middleware;
mod openapi;
mod pagination;
mod payments;
mod queue;
mod routes;
mod seat_feed;
mod sse;
mod state;
mod streams;
pub mod ticket_code;
mod tls;
mod token;
mod waiting_room;
mod web;
mod words;

#[cfg(test)]
mod tests;

pub use app::{metrics_router, router};
pub use config::{
    check_body_limit_bytes, check_cap, check_edge_timeout, check_hold_ttl, check_read_cache_ttl, check_secret,
    ApiConfig, ConfigError, LimitsConfig, OidcConfig, ReadCacheConfig, ServeConfig, StreamsConfig,
    BODY_LIMIT_BYTES_DEFAULT, CHURN_RELEASES_MAX_DEFAULT, CHURN_WINDOW_DEFAULT, CONNECTIONS_MAX_DEFAULT,
    CONNECTIONS_PER_ADDRESS_MAX_DEFAULT, EDGE_TIMEOUT_MAX, HEADER_TIMEOUT_DEFAULT, HELD_SEATS_PER_USER_MAX_DEFAULT,
    HOLD_TTL_DEFAULT, IDLE_TIMEOUT_DEFAULT, RATE_LIMIT_IP_BURST_DEFAULT, RATE_LIMIT_USER_BURST_DEFAULT,
    RATE_LIMIT_USER_PER_S_DEFAULT, READ_CACHE_BYTES_DEFAULT, READ_CACHE_TTL_DEFAULT, READ_CACHE_TTL_MAX,
    REQUEST_TIMEOUT_DEFAULT, SECRET_BYTES_MIN, STREAMS_MAX_DEFAULT, STREAMS_PER_ADDRESS_MAX_DEFAULT,
    STREAMS_PER_USER_MAX_DEFAULT, TOKEN_LIFETIME_MAX_DEFAULT,
};
pub use edge::{serve, serve_api, LINGER_BYTES_MAX, LINGER_TIME_MAX, SHUTDOWN_GRACE, WRITE_STALL_MAX};
pub use error::ApiError;
pub use payments::{
    check_stripe_api_base, check_stripe_request_timeout, check_stripe_tolerance, Charge, Charged, HostedPage,
    PaymentError, PaymentGateway, Payments, Refund, SandboxPayments, StripeConfig, StripeGateway,
    STRIPE_API_BASE_DEFAULT, STRIPE_REQUEST_TIMEOUT_DEFAULT, STRIPE_TOLERANCE_DEFAULT,
};
pub use state::{ApiState, Background};
pub use token::{mint_token, Role};
