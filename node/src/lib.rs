//! The Boxoffice server: hosts Raft groups on one database, and runs the api in front of them.

mod clock;
mod host;
mod local;
mod network;

#[cfg(not(madsim))]
mod demo;
#[cfg(not(madsim))]
pub mod dev;
#[cfg(not(madsim))]
pub mod telemetry;

pub use clock::now_ms;
pub use host::{Group, Node, NodeError, NodeSetup, ProposeError, RaftTuning};
pub use local::LocalCluster;
pub use network::{NetworkFactory, NoPeers, RaftRpc, RaftRpcReply, Transport, TransportError};
