//! The stateless public tier: REST `/v1` over a [`seams::Cluster`].
//!
//! - [`router`] serves the contract of `shared/API.md` from an [`ApiState`]: auth, idempotency,
//!   problem documents, the seat stream, metrics and the OpenAPI document.
//! - [`seams::Cluster`] is the only way this crate reaches the store, [`seams::SearchBackend`] the
//!   only way it reaches a search index, [`PaymentGateway`] the only way it reaches a payment
//!   provider.
//!
//! Architecture invariant: the api keeps no state another instance needs. Every booking rule is
//! decided inside the state machine; the api validates input, routes commands to their group, and
//! translates outcomes to HTTP. What it does keep (waiting-room blocks and views) is soft: lost on
//! restart, rebuilt from the store, never consulted by another instance.

mod app;
mod cache;
mod config;
mod dto;
mod error;
mod extract;
mod identity;
mod limits;
mod middleware;
mod openapi;
mod pagination;
mod payments;
mod queue;
mod routes;
mod state;
mod token;
mod waiting_room;
mod words;

#[cfg(test)]
mod tests;

pub use app::router;
pub use config::{
    check_body_limit_bytes, check_hold_ttl, check_read_cache_ttl, ApiConfig, ConfigError, LimitsConfig,
    ReadCacheConfig, BODY_LIMIT_BYTES_DEFAULT, CHURN_RELEASES_MAX_DEFAULT, CHURN_WINDOW_DEFAULT, HOLD_TTL_DEFAULT,
    RATE_LIMIT_IP_BURST_DEFAULT, RATE_LIMIT_USER_BURST_DEFAULT, RATE_LIMIT_USER_PER_S_DEFAULT,
    READ_CACHE_BYTES_DEFAULT, READ_CACHE_TTL_DEFAULT, READ_CACHE_TTL_MAX,
};
pub use error::ApiError;
pub use payments::{Charge, Charged, PaymentError, PaymentGateway, Refund, SandboxPayments};
pub use state::{ApiState, Background};
pub use token::{mint_token, Role};
