//! The stateless public tier: REST `/v1` over a [`Cluster`].

mod cluster;

pub use cluster::{BoxFuture, Cluster, ClusterError, Consistency, GroupHealth, Readiness, Submit};
