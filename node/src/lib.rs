//! The Raft host: the groups a node hosts on one database, the transport between processes, the
//! router that api instances and indexers use to reach group leaders, and the cluster's own
//! operations (initialization, replica moves). The `boxoffice` binary (crate `boxoffice`) runs
//! it; the simulation runs the same code on madsim.

mod admission;
#[cfg(not(madsim))]
mod authz;
mod clock;
mod coordinator;
mod host;
mod local;
mod network;
mod router;
#[cfg(not(madsim))]
mod rpc;
mod service;
mod version;
mod wire;
#[cfg(all(test, not(madsim)))]
mod wire_fuzz;

#[cfg(not(madsim))]
pub use authz::{authorize, may_propose, may_send};
pub use clock::{now_ms, Clock, MAX_OFFSET_MS_DEFAULT};
pub use coordinator::{init_cluster, rebalance_duty, rebalance_once, CoordinatorError};
pub use host::{
    Group, IdentityError, InvalidRequest, Node, NodeError, NodeSetup, ProposeError, RaftTuning, TransferError,
    ARCHIVE_AFTER_MS_DEFAULT, HAND_OVER_TIMEOUT_MS,
};
pub use local::LocalCluster;
pub use network::{chunk_timeout, NetworkFactory, NoPeers};
pub use router::{call_leader, CallError, Router};
#[cfg(not(madsim))]
pub use rpc::{
    Handler, HttpStream, PortConfig, PortLimits, PortLimitsError, RpcNodeClient, SplitListener,
    CONNECTIONS_MAX_DEFAULT, CONNECTIONS_PER_ADDRESS_MAX_DEFAULT, HANDSHAKE_TIMEOUT_DEFAULT, HTTP_LIFETIME,
    IDLE_TIMEOUT_DEFAULT, PREAMBLE, PREAMBLE_V1,
};
pub use version::{incompatible as incompatible_versions, Version};
pub use wire::{
    DamagedGroup, DiskUsage, GroupStatus, LeaderHint, NodeClient, NodeInfo, NodeReply, NodeRequest, NodeStatusReply,
    RaftRpc, RaftRpcReply, RequestKind, RoutingReply, TransportError, WireError, UNKNOWN_KIND_REFUSAL,
};
