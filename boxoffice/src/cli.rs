//! The `boxoffice` binary's command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, ApiFile, NodeFile};
use crate::telemetry::{self, LogFormat};
use clap::{Args, Parser, Subcommand};

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
    /// A cluster node: hosts replicas of the Raft groups (start it, then `cluster init` or `cluster add-node`).
    Node(NodeArgs),
    /// A stateless api instance in front of a cluster; run as many as you like.
    Api(ApiArgs),
    /// Follows the cluster's change feed into the search index, and answers api instances' searches.
    Indexer(IndexerArgs),
    /// Search index operations.
    #[command(subcommand)]
    Search(SearchCommand),
    /// Operator commands: create a cluster, show it, add and remove nodes.
    #[command(subcommand)]
    Cluster(ClusterCommand),
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
    #[command(flatten)]
    read_limits: ReadLimitArgs,
}

/// The api's read cache and abuse limits (`boxoffice dev` and `boxoffice api`).
#[derive(Args)]
struct ReadLimitArgs {
    /// How long event details and seat maps are served from the api's memory; `0s` turns the
    /// cache off.
    #[arg(long, env = "BOXOFFICE_READ_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    read_cache_ttl: Duration,
    /// Memory for the read cache, in MiB.
    #[arg(long, env = "BOXOFFICE_READ_CACHE_MB", default_value_t = 64)]
    read_cache_mb: u64,
    /// Requests per second each user (token) may make, sustained; 0 turns the limit off.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_USER_PER_S", default_value_t = 50)]
    rate_limit_user_per_s: u32,
    /// Requests a user may make at once above the sustained rate.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_USER_BURST", default_value_t = 100)]
    rate_limit_user_burst: u32,
    /// Requests per second each client address may make, sustained; 0 (the default) turns the
    /// limit off. Leave it off behind a proxy: every client then has the proxy's address.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_IP_PER_S", default_value_t = 0)]
    rate_limit_ip_per_s: u32,
    /// Requests a client address may make at once above the sustained rate.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_IP_BURST", default_value_t = 200)]
    rate_limit_ip_burst: u32,
    /// Holds a user may release per `--churn-window` before their new holds answer 429 for a
    /// while; 0 turns the limit off.
    #[arg(long, env = "BOXOFFICE_CHURN_RELEASES_MAX", default_value_t = 10)]
    churn_releases_max: u32,
    /// The window of `--churn-releases-max`; the budget refills evenly over it.
    #[arg(long, env = "BOXOFFICE_CHURN_WINDOW", default_value = "10m", value_parser = humantime::parse_duration)]
    churn_window: Duration,
}

impl ReadLimitArgs {
    fn read_cache(&self) -> api::ReadCacheConfig {
        api::ReadCacheConfig { ttl: self.read_cache_ttl, capacity_bytes: self.read_cache_mb.saturating_mul(1 << 20) }
    }

    fn limits(&self) -> api::LimitsConfig {
        api::LimitsConfig {
            user_per_s: self.rate_limit_user_per_s,
            user_burst: self.rate_limit_user_burst,
            ip_per_s: self.rate_limit_ip_per_s,
            ip_burst: self.rate_limit_ip_burst,
            churn_releases_max: self.churn_releases_max,
            churn_window: self.churn_window,
        }
    }
}

#[derive(Args)]
struct NodeArgs {
    /// TOML file with the same keys as these flags (`node_id`, `listen`, …); flags win.
    #[arg(long, env = "BOXOFFICE_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id: a positive number, unique in the cluster, never reused.
    #[arg(long = "id", env = "BOXOFFICE_NODE_ID")]
    node_id: Option<u64>,
    /// Address to serve peers, api instances and operators on [default: 127.0.0.1:7001].
    #[arg(long, env = "BOXOFFICE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address others reach this node at [default: the address it listens on].
    #[arg(long, env = "BOXOFFICE_ADVERTISE")]
    advertise: Option<String>,
    /// Where the node keeps its database [default: ./boxoffice-node-ID].
    #[arg(long, env = "BOXOFFICE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Shared by every node and api instance of the cluster; at least 16 characters.
    #[arg(long, env = "BOXOFFICE_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// sled's page cache, in MiB [default: 512].
    #[arg(long, env = "BOXOFFICE_CACHE_MB")]
    cache_mb: Option<u64>,
    /// The largest difference between any two nodes' clocks (keep them in sync with NTP): reads
    /// show a hold expired only once every clock is past its expiry [default: 500ms].
    #[arg(long, env = "BOXOFFICE_MAX_CLOCK_OFFSET", value_parser = humantime::parse_duration)]
    max_clock_offset: Option<Duration>,
}

#[derive(Args)]
struct ApiArgs {
    /// TOML file with the same keys as these flags (`listen`, `nodes`, …); flags win.
    #[arg(long, env = "BOXOFFICE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve the public api on [default: 127.0.0.1:8080].
    #[arg(long, env = "BOXOFFICE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Addresses of some of the cluster's nodes, comma-separated; the rest are learned.
    #[arg(long, env = "BOXOFFICE_NODES", value_delimiter = ',')]
    nodes: Vec<String>,
    #[arg(long, env = "BOXOFFICE_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// HS256 key that verifies clients' tokens.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Serve `POST /v1/auth/dev-token` (development and tests only).
    #[arg(long, env = "BOXOFFICE_DEV_TOKENS")]
    dev_tokens: bool,
    /// How long a hold lasts [default: 10m].
    #[arg(long, env = "BOXOFFICE_HOLD_TTL", value_parser = humantime::parse_duration)]
    hold_ttl: Option<Duration>,
    /// Largest request body accepted, in bytes [default: 1048576].
    #[arg(long, env = "BOXOFFICE_BODY_LIMIT_BYTES")]
    body_limit_bytes: Option<usize>,
    /// Answer `GET /v1/search` through this `boxoffice indexer` (http://HOST:PORT).
    #[arg(long, env = "BOXOFFICE_SEARCH_URL", conflicts_with = "elasticsearch_url")]
    search_url: Option<String>,
    #[command(flatten)]
    elastic: ElasticArgs,
    #[command(flatten)]
    read_limits: ReadLimitArgs,
}

/// Elasticsearch, when a deployment has outgrown the embedded index.
#[derive(Args)]
struct ElasticArgs {
    /// Search Elasticsearch at this URL (http(s)://HOST:9200) instead of the embedded index.
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_URL")]
    elasticsearch_url: Option<String>,
    /// Prefix of the index, alias and template names.
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_PREFIX", default_value = "boxoffice-events")]
    elasticsearch_prefix: String,
    /// An encoded API key (base64 of `id:key`).
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_API_KEY", hide_env_values = true)]
    elasticsearch_api_key: Option<String>,
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_USERNAME")]
    elasticsearch_username: Option<String>,
    #[arg(long, env = "BOXOFFICE_ELASTICSEARCH_PASSWORD", hide_env_values = true)]
    elasticsearch_password: Option<String>,
}

impl ElasticArgs {
    fn config(&self) -> Option<indexer::ElasticConfig> {
        let url = self.elasticsearch_url.clone()?;
        Some(indexer::ElasticConfig {
            url,
            index_prefix: self.elasticsearch_prefix.clone(),
            api_key: self.elasticsearch_api_key.clone(),
            username: self.elasticsearch_username.clone(),
            password: self.elasticsearch_password.clone(),
        })
    }
}

#[derive(Args)]
struct IndexerArgs {
    /// Address to answer api instances' searches on [default: 127.0.0.1:7100].
    #[arg(long, env = "BOXOFFICE_LISTEN", default_value = "127.0.0.1:7100")]
    listen: SocketAddr,
    /// Addresses of some of the cluster's nodes, comma-separated.
    #[arg(long, env = "BOXOFFICE_NODES", value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    #[arg(long, env = "BOXOFFICE_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: String,
    /// Where the embedded index (and its feed checkpoints) live.
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./boxoffice-indexer")]
    data_dir: PathBuf,
    #[command(flatten)]
    elastic: ElasticArgs,
}

#[derive(Args)]
struct ClusterTarget {
    /// Any node of the cluster.
    #[arg(long, env = "BOXOFFICE_NODE", default_value = "127.0.0.1:7001")]
    node: String,
    #[arg(long, env = "BOXOFFICE_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: String,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Creates a cluster from running nodes: `--nodes 1=host:7001,2=host:7002,3=host:7003`.
    Init {
        #[command(flatten)]
        target: ClusterTarget,
        #[arg(long)]
        nodes: String,
        /// Event shards, fixed for the life of the cluster.
        #[arg(long, default_value_t = 8)]
        shards: u32,
        /// Replicas of each shard.
        #[arg(long, default_value_t = 3)]
        replication: u32,
    },
    /// Nodes, shards, leaders, replicas, lag and health.
    Status {
        #[command(flatten)]
        target: ClusterTarget,
    },
    /// Adds a running node; replicas then move onto it until balanced.
    AddNode {
        #[command(flatten)]
        target: ClusterTarget,
        #[arg(long)]
        id: u64,
        /// The new node's address.
        #[arg(long)]
        addr: String,
        /// Wait until the replicas are balanced.
        #[arg(long)]
        wait: bool,
    },
    /// Drains a node: its replicas move to the others, then it is removed.
    RemoveNode {
        #[command(flatten)]
        target: ClusterTarget,
        #[arg(long)]
        id: u64,
        /// Wait until the node is empty and removed.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand)]
enum SearchCommand {
    /// Elasticsearch: copy the index into a new generation (new mapping, new settings) and move the
    /// alias to it atomically; searches and the indexer go on throughout.
    Reindex {
        #[command(flatten)]
        elastic: ElasticArgs,
    },
}

/// Settles for the waits in `cluster add-node --wait` and `remove-node --wait`.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);

fn check_hold_ttl(ttl: Duration) -> Result<Duration, String> {
    let ms = ttl.as_millis();
    let range = raft_store::HOLD_TTL_MS_MIN as u128..=raft_store::HOLD_TTL_MS_MAX as u128;
    if range.contains(&ms) {
        Ok(ttl)
    } else {
        Err(format!(
            "the hold ttl is between {}ms and {}h",
            raft_store::HOLD_TTL_MS_MIN,
            raft_store::HOLD_TTL_MS_MAX / 3_600_000
        ))
    }
}

fn parse_addr(text: &str, what: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| format!("`{text}` is not a valid {what} address (HOST:PORT)"))
}

async fn run_dev(a: DevArgs, metrics: seams::MetricsRender) -> Result<(), String> {
    let opts = crate::dev::DevOptions {
        addr: a.addr,
        data_dir: a.data_dir,
        demo: !a.no_demo,
        hold_ttl: check_hold_ttl(a.hold_ttl)?,
        shards: a.shards,
        jwt_secret: a.jwt_secret,
        body_limit_bytes: a.body_limit_bytes,
        read_cache: a.read_limits.read_cache(),
        limits: a.read_limits.limits(),
    };
    crate::dev::run(opts, metrics).await.map_err(|e| e.to_string())
}

async fn run_node(a: NodeArgs, metrics: seams::MetricsRender) -> Result<(), String> {
    let file: NodeFile = config::load(a.config.as_deref())?;
    let node_id = a.node_id.or(file.node_id).ok_or("give the node's id (--id)")?;
    if node_id == 0 {
        return Err("node ids start at 1".into());
    }
    let listen = match (a.listen, file.listen) {
        (Some(l), _) => l,
        (None, Some(l)) => parse_addr(&l, "listen")?,
        (None, None) => parse_addr("127.0.0.1:7001", "listen")?,
    };
    let mut tuning = node::RaftTuning::default();
    tuning.heartbeat_ms = file.heartbeat_ms.unwrap_or(tuning.heartbeat_ms);
    tuning.election_min_ms = file.election_min_ms.unwrap_or(tuning.election_min_ms);
    tuning.election_max_ms = file.election_max_ms.unwrap_or(tuning.election_max_ms);
    tuning.snapshot_every_logs = file.snapshot_every_logs.unwrap_or(tuning.snapshot_every_logs);
    let max_clock_offset = match (a.max_clock_offset, file.max_clock_offset) {
        (Some(o), _) => o,
        (None, Some(o)) => humantime::parse_duration(&o).map_err(|e| format!("max_clock_offset: {e}"))?,
        (None, None) => Duration::from_millis(node::MAX_OFFSET_MS_DEFAULT as u64),
    };
    if max_clock_offset > Duration::from_secs(60) {
        return Err("the max clock offset is at most 60s".into());
    }
    let opts = crate::serve::NodeOptions {
        node_id,
        listen,
        advertise: a.advertise.or(file.advertise),
        data_dir: a
            .data_dir
            .or(file.data_dir.map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(format!("./boxoffice-node-{node_id}"))),
        cluster_secret: a.cluster_secret.or(file.cluster_secret).ok_or("give the cluster secret (--cluster-secret)")?,
        cache_bytes: a.cache_mb.or(file.cache_mb).unwrap_or(512) << 20,
        tuning,
        max_clock_offset_ms: max_clock_offset.as_millis() as i64,
    };
    crate::serve::run_node(opts, metrics).await.map_err(|e| e.to_string())
}

async fn run_api(a: ApiArgs, metrics: seams::MetricsRender) -> Result<(), String> {
    let file: ApiFile = config::load(a.config.as_deref())?;
    let listen = match (a.listen, file.listen) {
        (Some(l), _) => l,
        (None, Some(l)) => parse_addr(&l, "listen")?,
        (None, None) => parse_addr("127.0.0.1:8080", "listen")?,
    };
    let hold_ttl = match (a.hold_ttl, file.hold_ttl) {
        (Some(t), _) => t,
        (None, Some(t)) => humantime::parse_duration(&t).map_err(|e| format!("hold_ttl: {e}"))?,
        (None, None) => Duration::from_secs(600),
    };
    let opts = crate::serve::ApiOptions {
        listen,
        nodes: if a.nodes.is_empty() { file.nodes.unwrap_or_default() } else { a.nodes },
        cluster_secret: a.cluster_secret.or(file.cluster_secret).ok_or("give the cluster secret (--cluster-secret)")?,
        jwt_secret: a.jwt_secret.or(file.jwt_secret).ok_or("give the token key (--jwt-secret)")?,
        dev_tokens: a.dev_tokens || file.dev_tokens.unwrap_or(false),
        hold_ttl: check_hold_ttl(hold_ttl)?,
        body_limit_bytes: a.body_limit_bytes.or(file.body_limit_bytes).unwrap_or(1 << 20),
        search: match (a.search_url, a.elastic.config()) {
            (Some(url), _) => crate::serve::SearchSource::Indexer { url },
            (None, Some(config)) => crate::serve::SearchSource::Elastic(config),
            (None, None) => crate::serve::SearchSource::None,
        },
        read_cache: a.read_limits.read_cache(),
        limits: a.read_limits.limits(),
    };
    crate::serve::run_api(opts, metrics).await.map_err(|e| e.to_string())
}

async fn run_indexer(a: IndexerArgs, metrics: seams::MetricsRender) -> Result<(), String> {
    let opts = crate::serve::IndexerOptions {
        listen: a.listen,
        nodes: a.nodes,
        cluster_secret: a.cluster_secret,
        data_dir: a.data_dir,
        elastic: a.elastic.config(),
    };
    crate::serve::run_indexer(opts, metrics).await.map_err(|e| e.to_string())
}

async fn run_cluster(command: ClusterCommand) -> Result<(), String> {
    match command {
        ClusterCommand::Init { target, nodes, shards, replication } => {
            let cli = crate::cluster_cli::Cli::new(&target.node, &target.cluster_secret)?;
            let nodes = crate::cluster_cli::parse_nodes(&nodes)?;
            println!("{}", cli.init(nodes, shards, replication).await?);
        }
        ClusterCommand::Status { target } => {
            let cli = crate::cluster_cli::Cli::new(&target.node, &target.cluster_secret)?;
            print!("{}", cli.status().await?);
        }
        ClusterCommand::AddNode { target, id, addr, wait } => {
            let cli = crate::cluster_cli::Cli::new(&target.node, &target.cluster_secret)?;
            let layout = cli.add_node(id, &addr).await?;
            println!("node {id} added at {addr}; replicas are moving onto it");
            if wait {
                cli.wait_balanced(layout.version, SETTLE_TIMEOUT).await?;
                println!("balanced");
            }
        }
        ClusterCommand::RemoveNode { target, id, wait } => {
            let cli = crate::cluster_cli::Cli::new(&target.node, &target.cluster_secret)?;
            let layout = cli.remove_node(id).await?;
            println!("node {id} is draining; its replicas are moving to the other nodes");
            if wait {
                cli.wait_balanced(layout.version, SETTLE_TIMEOUT).await?;
                println!("node {id} removed");
            }
        }
    }
    Ok(())
}

pub fn main() -> ExitCode {
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
        match cli.command {
            Command::Cluster(c) => run_cluster(c).await,
            Command::Search(SearchCommand::Reindex { elastic }) => {
                let config = elastic.config().ok_or("give the Elasticsearch URL (--elasticsearch-url)")?;
                let index = indexer::ElasticIndex::connect(config).await.map_err(|e| e.to_string())?;
                let generation = index.reindex().await.map_err(|e| e.to_string())?;
                println!("reindexed into {generation}; the alias now points to it");
                Ok(())
            }
            command => {
                let metrics = telemetry::install_metrics().map_err(|e| format!("metrics: {e}"))?;
                match command {
                    Command::Dev(a) => run_dev(a, metrics).await,
                    Command::Node(a) => run_node(a, metrics).await,
                    Command::Api(a) => run_api(a, metrics).await,
                    Command::Indexer(a) => run_indexer(a, metrics).await,
                    Command::Cluster(_) | Command::Search(_) => unreachable!("handled above"),
                }
            }
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
