//! Load generators. Each scenario runs against a server over real HTTP and prints figures.

mod browse;
mod catalogue;
mod catch_up;
mod cluster;
mod compare;
mod compare_mix;
mod error;
mod etcd;
mod etcd_browse;
mod failover;
mod flash_sale;
mod fuzz;
mod ledger;
mod mix;
mod pace;
mod pgbench;
mod postgres;
mod postgres_browse;
mod probe;
mod queue;
mod report;
mod sale;
mod search;
mod soak;
mod target;
mod write_path;

pub use browse::run as browse;
pub use catalogue::{CatalogEvent, SearchQuery};
pub use catch_up::{run as catch_up, CatchUpConfig};
pub use cluster::{ClusterProcesses, GroupRow, CLUSTER_NODES_MAX};
pub use compare::{run as compare, CompareConfig, Comparison};
pub use compare_mix::{compare_browse, compare_mixed, MixComparison};
pub use error::TargetError;
pub use etcd::EtcdStore;
pub use failover::{run as failover, FailoverConfig, FailoverConfigError, FAILOVER_NODES};
pub use flash_sale::{run as flash_sale, run_paced as flash_sale_paced, BoxofficeStore};
pub use fuzz::{fuzz, print_fuzz, FuzzConfig, FuzzError, FuzzRow};
pub use ledger::I1Check;
pub use mix::{run_mix, BrowseBenchConfig, BrowseStore, MixFigures, RunFigures};
pub use pace::{open_loop, Paced};
pub use pgbench::{run as write_path_pgbench, PgbenchConfig};
pub use postgres::{PostgresStore, POSTGRES_CONNECTIONS_MAX};
pub use probe::{Housekeeping, NodePages, NodeProbe};
pub use queue::{run as queue, QueueBenchConfig};
pub use report::{Latencies, Report};
pub use sale::{run_paced_sale, run_sale, FlashSaleConfig, HoldOutcome, PacedSaleFigures, SaleFigures, SaleStore};
pub use search::{run as search, SearchBenchConfig};
pub use soak::{print_minutes as print_soak_minutes, run as soak, Minute, SoakConfig, SoakOutcome};
pub use target::{stop as stop_target, Target};
pub use write_path::{
    print_comparison as print_write_path_comparison, run as write_path, WritePathConfig, WritePathRow, OPEN_LOOP_SHARE,
};

/// Arguments that turn the server's abuse limits off (`boxoffice dev`, `boxoffice api`): a
/// bench's few users make thousands of requests a second from one address, and it measures the
/// store and the api, not the limits.
pub const SERVER_ARGS_NO_LIMITS: &[&str] = &[
    "--rate-limit-user-per-s",
    "0",
    "--rate-limit-ip-per-s",
    "0",
    "--churn-releases-max",
    "0",
    // Every client of the bench is 127.0.0.1, with up to 1,024 pooled connections.
    "--connections-per-address-max",
    "0",
    "--streams-per-address-max",
    "0",
    // A bench's few users hold thousands of seats each.
    "--held-seats-per-user-max",
    "0",
];
