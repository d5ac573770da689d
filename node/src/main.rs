//! The `boxoffice` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use node::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(name = "boxoffice", version, about = "Sell every seat once: a ticketing platform on Raft")]
struct Cli {
    /// Log filter, in RUST_LOG syntax.
    #[arg(long, global = true, env = "BOXOFFICE_LOG", default_value = "info,openraft=warn")]
    log: String,
    #[arg(long, global = true, value_enum, env = "BOXOFFICE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One node, the api and demo data in one process: the embedded default for one machine.
    Dev(DevArgs),
    /// Load scenarios that print throughput and latency figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// One hot event, many buyers racing for seats; every hold durable before it is acknowledged.
    FlashSale(FlashSaleArgs),
}

#[derive(Args)]
struct FlashSaleArgs {
    /// A running server with dev tokens on; by default the bench starts `boxoffice dev` itself.
    #[arg(long)]
    url: Option<String>,
    #[arg(long, default_value_t = 20_000)]
    seats: u32,
    #[arg(long, default_value_t = 128)]
    buyers: usize,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Fraction of successful holds that check out.
    #[arg(long, default_value_t = 0.5)]
    checkout_ratio: f64,
}

#[derive(Args)]
struct DevArgs {
    /// Address to serve the api on; port 0 picks a free port (printed at start-up).
    #[arg(long, env = "BOXOFFICE_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Where the node keeps its database; data survives restarts.
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./boxoffice-data")]
    data_dir: PathBuf,
    /// Start without the demo venues and events.
    #[arg(long)]
    no_demo: bool,
    /// How long a hold lasts, e.g. `10m`, `90s`.
    #[arg(long, env = "BOXOFFICE_HOLD_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    hold_ttl: Duration,
    /// Event shards (one Raft group each); fixed when the data directory is created.
    #[arg(long, env = "BOXOFFICE_SHARDS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    shards: u32,
    /// HS256 key for tokens; by default one is generated and kept in the data directory.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "BOXOFFICE_BODY_LIMIT_BYTES", default_value_t = 1 << 20)]
    body_limit_bytes: usize,
}

async fn run_flash_sale(a: FlashSaleArgs) -> Result<(), String> {
    if !(0.0..=1.0).contains(&a.checkout_ratio) {
        return Err("--checkout-ratio is between 0 and 1".into());
    }
    let target = match &a.url {
        Some(url) => bench::Target::existing(url),
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            bench::Target::spawn(&exe, &[]).await.map_err(|e| e.to_string())?
        }
    };
    let config = bench::FlashSaleConfig {
        seats: a.seats,
        buyers: a.buyers,
        duration: a.duration,
        checkout_ratio: a.checkout_ratio,
    };
    let report = bench::flash_sale(std::sync::Arc::new(target), config).await.map_err(|e| e.to_string())?;
    report.print();
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_tracing(cli.log_format, &cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("boxoffice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let metrics = telemetry::install_metrics().map_err(|e| format!("metrics: {e}"))?;
        match cli.command {
            Command::Dev(a) => {
                let hold_ttl_ms = a.hold_ttl.as_millis();
                let ttl_range = raft_store::HOLD_TTL_MS_MIN as u128..=raft_store::HOLD_TTL_MS_MAX as u128;
                if !ttl_range.contains(&hold_ttl_ms) {
                    return Err(format!(
                        "--hold-ttl must be between {}ms and {}h",
                        raft_store::HOLD_TTL_MS_MIN,
                        raft_store::HOLD_TTL_MS_MAX / 3_600_000
                    ));
                }
                let opts = node::dev::DevOptions {
                    addr: a.addr,
                    data_dir: a.data_dir,
                    demo: !a.no_demo,
                    hold_ttl: a.hold_ttl,
                    shards: a.shards,
                    jwt_secret: a.jwt_secret,
                    body_limit_bytes: a.body_limit_bytes,
                };
                node::dev::run(opts, metrics).await.map_err(|e| e.to_string())
            }
            Command::Bench(BenchCommand::FlashSale(a)) => run_flash_sale(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "boxoffice stopped");
            eprintln!("boxoffice: {e}");
            ExitCode::FAILURE
        }
    }
}
