//! The stateless public tier: REST `/v1` over a [`Cluster`].
//!
//! - [`router`] serves the contract of `shared/API.md` from an [`ApiState`]: auth, idempotency,
//!   problem documents, the seat stream, metrics and the OpenAPI document.
//! - [`Cluster`] is the only way this crate reaches the store; [`PaymentGateway`] the only way it
//!   reaches a payment provider.
//!
//! Architecture invariant: the api keeps no state another instance needs. Every booking rule is
//! decided inside the state machine; the api validates input, routes commands to their group, and
//! translates outcomes to HTTP. What it does keep (waiting-room blocks and views) is soft: lost on
//! restart, rebuilt from the store, never consulted by another instance.

#[cfg(not(madsim))]
mod cache;
mod cluster;
#[cfg(not(madsim))]
mod config;
#[cfg(not(madsim))]
mod dto;
#[cfg(not(madsim))]
mod error;
#[cfg(not(madsim))]
mod extract;
#[cfg(not(madsim))]
mod identity;
#[cfg(not(madsim))]
mod limits;
#[cfg(not(madsim))]
mod middleware;
#[cfg(not(madsim))]
mod openapi;
#[cfg(not(madsim))]
mod pagination;
#[cfg(not(madsim))]
mod payments;
#[cfg(not(madsim))]
mod queue;
#[cfg(not(madsim))]
mod routes;
mod search;
#[cfg(not(madsim))]
mod state;
#[cfg(not(madsim))]
mod token;
#[cfg(not(madsim))]
mod waiting_room;

#[cfg(test)]
mod tests;

pub use cluster::{BoxFuture, Cluster, ClusterError, Consistency, GroupHealth, Readiness, Submit};
#[cfg(not(madsim))]
pub use config::{ApiConfig, LimitsConfig, ReadCacheConfig};
#[cfg(not(madsim))]
pub use error::ApiError;
#[cfg(not(madsim))]
pub use payments::{Charge, Charged, PaymentError, PaymentGateway, Refund, SandboxPayments};
#[cfg(not(madsim))]
pub use routes::router;
pub use search::{
    GeoFilter, SearchBackend, SearchError, SearchHit, SearchPage, SearchQuery, SEARCH_DEPTH_MAX, SEARCH_RADIUS_KM_MAX,
    SEARCH_TEXT_LEN_MAX,
};
#[cfg(not(madsim))]
pub use state::{ApiState, Background, MetricsRender};
#[cfg(not(madsim))]
pub use token::{mint_token, Role};
