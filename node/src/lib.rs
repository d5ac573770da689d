//! The Raft host: the groups a node hosts on one database, the transport between processes, the
//! router that api instances and indexers use to reach group leaders, and the cluster's own
//! operations (initialization, replica moves). The `boxoffice` binary (crate `boxoffice`) runs
//! it; the simulation runs the same code on madsim.

mod admission;
mod clock;
mod coordinator;
mod host;
mod local;
mod network;
mod router;
#[cfg(not(madsim))]
mod rpc;
mod service;
mod wire;

pub use clock::{now_ms, Clock, MAX_OFFSET_MS_DEFAULT};
pub use coordinator::{init_cluster, rebalance_duty, rebalance_once, CoordinatorError};
pub use host::{
    Group, IdentityError, InvalidRequest, Node, NodeError, NodeSetup, ProposeError, RaftTuning, TransferError,
    ARCHIVE_AFTER_MS_DEFAULT,
};
pub use local::LocalCluster;
pub use network::{chunk_timeout, NetworkFactory, NoPeers};
pub use router::{call_leader, CallError, Router};
#[cfg(not(madsim))]
pub use rpc::{Handler, RpcNodeClient, SplitListener, PREAMBLE};
pub use wire::{
    DamagedGroup, GroupStatus, LeaderHint, NodeClient, NodeReply, NodeRequest, NodeStatusReply, RaftRpc, RaftRpcReply,
    RoutingReply, TransportError, WireError,
};
