//! Load generators. Each scenario runs against a server over real HTTP and prints figures.

#![cfg(not(madsim))]

mod cluster;
mod failover;
mod flash_sale;
mod pace;
mod queue;
mod report;
mod search;
mod target;

pub use cluster::{Cluster, GroupRow, CLUSTER_NODES_MAX};
pub use failover::{run as failover, FailoverConfig, FAILOVER_NODES};
pub use flash_sale::{run as flash_sale, FlashSaleConfig};
pub use pace::{open_loop, Paced};
pub use queue::{run as queue, QueueBenchConfig};
pub use report::{Latencies, Report};
pub use search::{run as search, SearchBenchConfig};
pub use target::{Target, TargetError};
