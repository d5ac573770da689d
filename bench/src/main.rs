//! `boxoffice-bench`: load scenarios that print throughput and latency figures, against a
//! Boxoffice it starts (the `boxoffice` binary built beside this one, or `$BOXOFFICE_BIN`) or one
//! already running, and the peer baselines `scripts/baselines` starts.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "boxoffice-bench", version, about = "Load scenarios for Boxoffice and its peer baselines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error(transparent)]
    Target(#[from] bench::TargetError),
    #[error(transparent)]
    Harness(#[from] harness::HarnessError),
    #[error("{0}")]
    Usage(&'static str),
    #[error("{0}")]
    Failover(bench::FailoverConfigError),
    #[error(transparent)]
    Fuzz(#[from] bench::FuzzError),
    #[error("{0} decoder panics (inputs above)")]
    DecoderPanics(u64),
}

#[derive(Subcommand)]
enum Command {
    /// Loads many events, then measures peak searches per second and search latency at a fixed
    /// rate below the peak, while buyers book.
    Search(SearchBenchArgs),
    /// One hot event, many buyers racing for seats; every hold durable before it is acknowledged.
    FlashSale(FlashSaleArgs),
    /// The waiting room's front door: queue joins and status polls per second on one api instance.
    Queue(QueueBenchArgs),
    /// A cluster of three mid-sale loses the leader of the event's shard to SIGKILL: how long
    /// bookings stop, and whether every acknowledged hold survives.
    Failover(FailoverArgs),
    /// A cluster of three holds a sold-out event (200,000 seats, 1,000,000 orders); a fourth
    /// node takes over a replica of its shard by snapshot while bookings go on: the transfer's
    /// size, how long the catch-up took, and the bookings' latency before and during it.
    CatchUp(CatchUpArgs),
    /// Many events, a 100:1 mix of browsing (event details, seat maps) and holds, with some
    /// events hot: peak reads per second, latency below the peak, and the read cache's hit ratio.
    Browse(BrowseBenchArgs),
    /// Boxoffice against the peer baselines (PostgreSQL, etcd; see `scripts/baselines`), one
    /// store after another, on the flash sale, browsing, and browsing mixed with searches; a
    /// table per scenario with the ratios.
    Compare(CompareArgs),
    /// Uncontended holds (each a different seat; every one succeeds): the peak in a closed loop,
    /// then an open loop at 70% of it — durable holds/s, the tail from when each hold was due,
    /// the longest stall, and the snapshots the nodes built meanwhile.
    WritePath(WritePathArgs),
    /// `boxoffice dev` with short hold and archive delays, booked for minutes while events are
    /// created, start and are archived: its RSS each minute; fails unless RSS is flat after
    /// warm-up.
    Soak(SoakArgs),
    /// Fuzzes the decoders of the log, the cold store, snapshot streams and the machine: mutated
    /// and random bytes for `--duration`, cases and panics per target (a panic fails the run).
    Fuzz(FuzzArgs),
}

/// A scenario of `boxoffice-bench compare`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// One hot event, buyers racing for seats.
    FlashSale,
    /// 100 reads (event details, seat maps) per write across many events.
    Browse,
    /// As browse, with a tenth of the reads searches.
    Mixed,
}

impl Scenario {
    /// The order `boxoffice-bench compare` runs them in, whatever order they were asked in.
    const ALL: [Scenario; 3] = [Scenario::FlashSale, Scenario::Browse, Scenario::Mixed];
}

#[derive(Args)]
struct CompareArgs {
    /// PostgreSQL to sell the seats in, e.g. `postgresql://bench@127.0.0.1:55432/bench`;
    /// skipped when absent.
    #[arg(long)]
    postgres_url: Option<String>,
    /// etcd members' client URLs, comma-separated; skipped when absent.
    #[arg(long, value_delimiter = ',')]
    etcd_urls: Vec<String>,
    /// Boxoffice nodes the bench starts: 1 is `boxoffice dev`; more are `boxoffice node`s
    /// (replication min(3, N)) behind one `boxoffice api`.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=bench::CLUSTER_NODES_MAX as u64))]
    nodes: u64,
    /// Scenarios to run, comma-separated; they run in the order flash-sale, browse, mixed, each
    /// on a fresh Boxoffice that is stopped before the baselines run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "flash-sale,browse,mixed")]
    scenarios: Vec<Scenario>,
    /// Flash sale: seats of the hot event.
    #[arg(long, default_value_t = 20_000)]
    seats: u32,
    /// Flash sale: buyers racing for them.
    #[arg(long, default_value_t = 128)]
    buyers: usize,
    /// Length of each run: every store runs every scenario twice (its peak, then its latency at
    /// 70% of that peak).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[command(flatten, next_help_heading = "Browse and mixed")]
    browse: BrowseShapeArgs,
}

/// The shape of the browse (and mixed) workload, shared by `boxoffice-bench browse` and `boxoffice-bench compare`.
#[derive(Args)]
struct BrowseShapeArgs {
    /// Events in the catalogue.
    #[arg(long, default_value_t = 1_000)]
    events: usize,
    /// Clients of the closed-loop run that finds the peak.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Reads per write.
    #[arg(long, default_value_t = 100)]
    reads_per_write: u32,
}

impl BrowseShapeArgs {
    fn config(&self, duration: Duration) -> bench::BrowseBenchConfig {
        bench::BrowseBenchConfig {
            events: self.events,
            clients: self.clients,
            reads_per_write: self.reads_per_write,
            duration,
            ..bench::BrowseBenchConfig::default()
        }
    }
}

#[derive(Args)]
struct BrowseBenchArgs {
    /// A running server with dev tokens on (and limits off); by default the bench starts
    /// `boxoffice dev` itself.
    #[arg(long)]
    url: Option<String>,
    #[command(flatten)]
    shape: BrowseShapeArgs,
    /// Length of each of the two runs.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Extra `boxoffice dev` arguments, e.g. `--read-cache-ttl=0s` to measure without the cache.
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// Nodes the bench starts: 1 is `boxoffice dev`; more are `boxoffice node`s (replication
    /// min(3, N)) behind one `boxoffice api`.
    #[arg(long, default_value_t = 1, conflicts_with = "url", value_parser = clap::value_parser!(u64).range(1..=bench::CLUSTER_NODES_MAX as u64))]
    nodes: u64,
}

#[derive(Args)]
struct SearchBenchArgs {
    /// A running server with dev tokens on; by default the bench starts `boxoffice dev` itself.
    #[arg(long)]
    url: Option<String>,
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Searchers of the closed-loop run that finds the peak.
    #[arg(long, default_value_t = 8)]
    searchers: usize,
    /// Searches per second offered in the latency run [default: half the measured peak].
    #[arg(long)]
    search_rate: Option<f64>,
    /// Holds per second offered meanwhile.
    #[arg(long, default_value_t = 200.0)]
    hold_rate: f64,
    /// Length of each of the two runs.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(Args)]
struct QueueBenchArgs {
    /// A running server with dev tokens on; by default the bench starts `boxoffice dev` itself.
    #[arg(long)]
    url: Option<String>,
    /// Concurrent clients in each run.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Length of each of the two runs (joins, then polls).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(Args)]
struct FlashSaleArgs {
    /// A running server with dev tokens on; by default the bench starts `boxoffice dev` itself.
    #[arg(long)]
    url: Option<String>,
    /// Nodes the bench starts: 1 is `boxoffice dev`; more are `boxoffice node`s (replication
    /// min(3, N)) behind one `boxoffice api`.
    #[arg(long, default_value_t = 1, conflicts_with = "url", value_parser = clap::value_parser!(u64).range(1..=bench::CLUSTER_NODES_MAX as u64))]
    nodes: u64,
    #[arg(long, default_value_t = 20_000)]
    seats: u32,
    #[arg(long, default_value_t = 128)]
    buyers: usize,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Fraction of successful holds that check out.
    #[arg(long, default_value_t = 0.5)]
    checkout_ratio: f64,
    /// Offer hold commands at this rate per second whether or not earlier ones were answered (an
    /// open loop, latency counted from when each was due) instead of buyers racing flat out.
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(Args)]
struct FailoverArgs {
    /// Buyers booking at once, each in a section of its own.
    #[arg(long, default_value_t = 16)]
    buyers: usize,
    /// Seats each buyer owns; it stops once it holds them all.
    #[arg(long, default_value_t = 4_000)]
    seats_per_buyer: u32,
    /// Booking before the leader is killed.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Booking between the kill and the restart of the killed node.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    after_kill: Duration,
    /// Booking after the restart.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    after_restart: Duration,
    /// Keep the cluster's data and logs (they are kept anyway when a check fails).
    #[arg(long)]
    keep_files: bool,
}

#[derive(Args)]
struct CatchUpArgs {
    /// Seated seats of the event, a multiple of 1,000 up to 200,000; all sold.
    #[arg(long, default_value_t = bench::CatchUpConfig::default().seats)]
    seats: u32,
    /// Orders in all, one per seat and the rest general admissions.
    #[arg(long, default_value_t = bench::CatchUpConfig::default().orders)]
    orders: u64,
    /// Concurrent buyers filling the event.
    #[arg(long, default_value_t = bench::CatchUpConfig::default().clients)]
    clients: usize,
}

#[derive(Args)]
struct WritePathArgs {
    /// Boxoffice nodes the bench starts, comma-separated for several runs in one (`1,3`): 1 is
    /// `boxoffice dev`; more are `boxoffice node`s (replication min(3, N)) behind one `boxoffice
    /// api`. Each runs on fresh servers; with several, a table compares them.
    #[arg(long, value_delimiter = ',', default_value = "3", value_parser = clap::value_parser!(u64).range(1..=bench::CLUSTER_NODES_MAX as u64))]
    nodes: Vec<u64>,
    /// Clients of the closed loop that finds the peak.
    #[arg(long, default_value_t = bench::WritePathConfig::default().clients)]
    clients: usize,
    /// Length of each of the two runs (the closed loop, then the open loop).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Users the holds are spread over.
    #[arg(long, default_value_t = bench::WritePathConfig::default().users)]
    users: usize,
    /// Seats of each event (one per shard or more), a multiple of 1,000 up to 200,000.
    #[arg(long, default_value_t = bench::WritePathConfig::default().seats_per_event)]
    seats_per_event: u32,
    /// How long the server keeps a hold: expiry is what frees the seats for the next round.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    hold_ttl: Duration,
    /// PostgreSQL to run the same hold in as a transaction driven by `pgbench` (the same two
    /// loops, after Boxoffice's runs), e.g. `postgresql://bench@127.0.0.1:55432/bench`
    /// (`scripts/baselines start`); the table then gives every peak as a multiple of its peak.
    #[arg(long)]
    postgres_url: Option<String>,
    /// The `pgbench` executable (PostgreSQL's client package).
    #[arg(long, default_value = "pgbench")]
    pgbench: std::path::PathBuf,
}

#[derive(Args)]
struct SoakArgs {
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Holds offered per second, each followed by a checkout, a release, or nothing.
    #[arg(long, default_value_t = bench::SoakConfig::default().rate)]
    rate: f64,
    /// The server's `--hold-ttl`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    hold_ttl: Duration,
    /// The server's `--archive-after`: events leave memory this long after they start.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    archive_after: Duration,
    /// The server's `--cache-mb` (the state store's block cache).
    #[arg(long, default_value_t = bench::SoakConfig::default().cache_mb)]
    cache_mb: u64,
    /// The server's `--snapshot-every-logs` (each group 1-2x it): short, so that every group's
    /// log reaches its steady size within the warm-up.
    #[arg(long, default_value_t = bench::SoakConfig::default().snapshot_every_logs)]
    snapshot_every_logs: u64,
}

#[derive(Args)]
struct FuzzArgs {
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The case generator's seed [default: drawn at random, printed].
    #[arg(long)]
    seed: Option<u64>,
}

/// Event shards of the clusters the bench starts, as `boxoffice dev` has by default.
const BENCH_SHARDS: u32 = 8;

/// What a bench runs against: the server at `url`, or one it starts with the limits off — `boxoffice
/// dev` for one node, a cluster of `nodes` behind one api otherwise — with `extra` server arguments.
async fn bench_target(url: Option<&str>, nodes: u64, extra: &[String]) -> Result<bench::Target, BenchError> {
    if let Some(url) = url {
        return Ok(bench::Target::existing(url));
    }
    let exe = harness::boxoffice_bin()?;
    let mut args: Vec<&str> = bench::SERVER_ARGS_NO_LIMITS.to_vec();
    args.extend(extra.iter().map(String::as_str));
    let started = match nodes {
        1 => bench::Target::spawn(&exe, &args).await,
        n => bench::Target::spawn_cluster(&exe, n as usize, BENCH_SHARDS, &args).await,
    };
    Ok(started?)
}

async fn run_search_bench(a: SearchBenchArgs) -> Result<(), BenchError> {
    let target = bench_target(a.url.as_deref(), 1, &[]).await?;
    let config = bench::SearchBenchConfig {
        events: a.events,
        searchers: a.searchers,
        search_rate: a.search_rate,
        hold_rate: a.hold_rate,
        duration: a.duration,
        ..bench::SearchBenchConfig::default()
    };
    let report = bench::search(std::sync::Arc::new(target), config).await?;
    report.print();
    Ok(())
}

async fn run_queue_bench(a: QueueBenchArgs) -> Result<(), BenchError> {
    let target = bench_target(a.url.as_deref(), 1, &[]).await?;
    let config = bench::QueueBenchConfig { clients: a.clients, duration: a.duration };
    let report = bench::queue(std::sync::Arc::new(target), config).await?;
    report.print();
    Ok(())
}

async fn run_flash_sale(a: FlashSaleArgs) -> Result<(), BenchError> {
    if !(0.0..=1.0).contains(&a.checkout_ratio) {
        return Err(BenchError::Usage("--checkout-ratio is between 0 and 1"));
    }
    if a.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(BenchError::Usage("--rate is a number of hold commands per second above 0"));
    }
    let target = bench_target(a.url.as_deref(), a.nodes, &[]).await?;
    let config = bench::FlashSaleConfig {
        seats: a.seats,
        buyers: a.buyers,
        duration: a.duration,
        checkout_ratio: a.checkout_ratio,
    };
    let target = std::sync::Arc::new(target);
    let report = match a.rate {
        Some(rate) => bench::flash_sale_paced(target, config, rate).await,
        None => bench::flash_sale(target, config).await,
    };
    let report = report?;
    report.print();
    Ok(())
}

async fn run_compare(a: CompareArgs) -> Result<(), BenchError> {
    let etcd_urls: Vec<String> = a.etcd_urls.into_iter().filter(|u| !u.is_empty()).collect();
    let postgres_url = a.postgres_url.as_deref();
    let browse = a.browse.config(a.duration);
    for scenario in Scenario::ALL.into_iter().filter(|s| a.scenarios.contains(s)) {
        match scenario {
            Scenario::FlashSale => {
                let config = bench::CompareConfig {
                    sale: bench::FlashSaleConfig {
                        seats: a.seats,
                        buyers: a.buyers,
                        duration: a.duration,
                        ..bench::FlashSaleConfig::default()
                    },
                    postgres_url: a.postgres_url.clone(),
                    etcd_urls: etcd_urls.clone(),
                    ..bench::CompareConfig::default()
                };
                let target = bench_target(None, a.nodes, &[]).await?;
                bench::compare(target, config).await?.print();
            }
            Scenario::Browse => {
                let target = bench_target(None, a.nodes, &[]).await?;
                let compared = bench::compare_browse(target, postgres_url, &etcd_urls, &browse).await;
                compared?.print();
            }
            Scenario::Mixed => {
                let target = searchable_bench_target(a.nodes).await?;
                let compared = bench::compare_mixed(target, postgres_url, &etcd_urls, &browse).await;
                compared?.print();
            }
        }
        println!();
    }
    Ok(())
}

/// A Boxoffice that answers searches: `boxoffice dev` has its index built in; a cluster gets a
/// `boxoffice indexer` beside it.
async fn searchable_bench_target(nodes: u64) -> Result<bench::Target, BenchError> {
    if nodes == 1 {
        return bench_target(None, 1, &[]).await;
    }
    let exe = harness::boxoffice_bin()?;
    let args = bench::SERVER_ARGS_NO_LIMITS;
    Ok(bench::Target::spawn_searchable_cluster(&exe, nodes as usize, BENCH_SHARDS, args).await?)
}

async fn run_browse(a: BrowseBenchArgs) -> Result<(), BenchError> {
    let target = bench_target(a.url.as_deref(), a.nodes, &a.server_arg).await?;
    let config = a.shape.config(a.duration);
    let report = bench::browse(std::sync::Arc::new(target), config).await?;
    report.print();
    Ok(())
}

async fn run_failover(a: FailoverArgs) -> Result<(), BenchError> {
    let config = bench::FailoverConfig {
        buyers: a.buyers,
        seats_per_buyer: a.seats_per_buyer,
        warmup: a.warmup,
        after_kill: a.after_kill,
        after_restart: a.after_restart,
    };
    config.check().map_err(BenchError::Failover)?;
    let target = bench_target(None, bench::FAILOVER_NODES as u64, &[]).await?;
    if a.keep_files {
        if let Some(cluster) = target.cluster() {
            cluster.keep_files();
            println!("cluster files are kept in {}", cluster.files().display());
        }
    }
    let report = bench::failover(std::sync::Arc::new(target), config).await?;
    report.print();
    Ok(())
}

async fn run_catch_up(a: CatchUpArgs) -> Result<(), BenchError> {
    let config = bench::CatchUpConfig { seats: a.seats, orders: a.orders, clients: a.clients };
    let exe = harness::boxoffice_bin()?;
    Ok(bench::catch_up(&exe, config).await?)
}

async fn run_write_path(a: WritePathArgs) -> Result<(), BenchError> {
    let config = bench::WritePathConfig {
        clients: a.clients,
        duration: a.duration,
        users: a.users,
        seats_per_event: a.seats_per_event,
        hold_ttl: a.hold_ttl,
    };
    config.check()?;
    let mut rows = Vec::new();
    for nodes in a.nodes {
        let target = std::sync::Arc::new(bench_target(None, nodes, &config.server_args()).await?);
        let mut row = bench::write_path(target.clone(), &config).await?;
        bench::stop_target(target)?;
        row.report().print();
        println!();
        rows.push(row);
    }
    if let Some(url) = a.postgres_url {
        let pg = bench::PgbenchConfig { url, exe: a.pgbench };
        let mut row = bench::write_path_pgbench(&pg, &config).await?;
        row.report().print();
        println!();
        rows.push(row);
    }
    if rows.len() > 1 {
        bench::print_write_path_comparison(&mut rows);
    }
    Ok(())
}

async fn run_soak(a: SoakArgs) -> Result<(), BenchError> {
    let config = bench::SoakConfig {
        duration: a.duration,
        rate: a.rate,
        hold_ttl: a.hold_ttl,
        archive_after: a.archive_after,
        cache_mb: a.cache_mb,
        snapshot_every_logs: a.snapshot_every_logs,
        ..bench::SoakConfig::default()
    };
    config.check()?;
    let target = std::sync::Arc::new(bench_target(None, 1, &config.server_args()).await?);
    let outcome = bench::soak(target, &config).await?;
    println!();
    outcome.report(&config).print();
    bench::print_soak_minutes(&outcome.minutes);
    if !outcome.rss.flat {
        return Err(BenchError::Target(bench::TargetError::Scenario("RSS was not flat after warm-up".into())));
    }
    Ok(())
}

fn run_fuzz(a: FuzzArgs) -> Result<(), BenchError> {
    let config = bench::FuzzConfig { duration: a.duration, seed: a.seed.unwrap_or_else(rand::random) };
    let rows = bench::fuzz(&config)?;
    bench::print_fuzz(&config, &rows);
    let panics: u64 = rows.iter().map(|r| r.panics).sum();
    if panics > 0 {
        return Err(BenchError::DecoderPanics(panics));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The HTTP clients' TLS uses ring (reqwest is built without a provider of its own).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("boxoffice-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::FlashSale(a) => run_flash_sale(a).await,
            Command::Search(a) => run_search_bench(a).await,
            Command::Queue(a) => run_queue_bench(a).await,
            Command::Failover(a) => run_failover(a).await,
            Command::CatchUp(a) => run_catch_up(a).await,
            Command::Browse(a) => run_browse(a).await,
            Command::Compare(a) => run_compare(a).await,
            Command::WritePath(a) => run_write_path(a).await,
            Command::Soak(a) => run_soak(a).await,
            Command::Fuzz(a) => run_fuzz(a),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boxoffice-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
