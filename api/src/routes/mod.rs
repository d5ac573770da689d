//! The handlers of the `/v1` routes of API.md and of the operations endpoints, one module per
//! resource; `app.rs` puts them together.

pub(crate) mod auth;
pub(crate) mod booking;
pub(crate) mod events;
pub(crate) mod ops;
pub(crate) mod orders;
pub(crate) mod payments;
pub(crate) mod pricing;
pub(crate) mod queue;
pub(crate) mod search;
pub(crate) mod seats;
pub(crate) mod tickets;
pub(crate) mod venues;
pub(crate) mod webhooks;
