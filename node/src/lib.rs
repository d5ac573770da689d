//! The Boxoffice server: hosts Raft groups on one database, routes the api to them, and runs the
//! cluster's own operations (initialization, replica moves).

mod admission;
mod clock;
#[cfg(not(madsim))]
pub mod config;
mod coordinator;
mod host;
mod local;
mod network;
mod router;
mod service;
mod wire;

#[cfg(not(madsim))]
pub mod cluster_cli;
#[cfg(not(madsim))]
mod demo;
#[cfg(not(madsim))]
pub mod dev;
#[cfg(not(madsim))]
mod http;
#[cfg(not(madsim))]
mod rpc;
#[cfg(not(madsim))]
pub mod serve;
#[cfg(not(madsim))]
pub mod telemetry;

pub use clock::{now_ms, Clock, MAX_OFFSET_MS_DEFAULT};
pub use coordinator::{init_cluster, rebalance_duty, rebalance_once};
pub use host::{Group, Node, NodeError, NodeSetup, ProposeError, RaftTuning};
#[cfg(not(madsim))]
pub use http::internal_routes;
pub use local::LocalCluster;
pub use network::{NetworkFactory, NoPeers, RaftRpc, RaftRpcReply};
pub use router::{call_leader, CallError, Router};
#[cfg(not(madsim))]
pub use rpc::RpcNodeClient;
pub use wire::{
    GroupStatus, LeaderHint, NodeClient, NodeReply, NodeRequest, NodeStatusReply, RoutingReply, TransportError,
    WireError,
};
