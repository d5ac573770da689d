//! The `boxoffice` binary's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cluster_cli::NodeList;
use crate::config;
use crate::error::{CliError, ServeError};
use crate::settings::{shards, ApiArgs, ClusterTarget, DevArgs, ElasticArgs, IndexerArgs, NodeArgs, SHARDS_DEFAULT};
use crate::telemetry::{self, LogFormat};

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

#[derive(Subcommand, Debug)]
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
    /// Operator commands: create a cluster, show it, add and remove nodes, rebuild a damaged copy.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Backups: a consistent copy of every group, and its check.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// The cluster CA and each process's TLS credential.
    #[command(subcommand)]
    Certs(crate::certs::CertsCommand),
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Writes a backup of every group (each at a committed index, with the layout and a manifest
    /// of checksums) into a new directory, while bookings go on.
    Create {
        #[command(flatten)]
        target: ClusterTarget,
        /// The directory to write (new, or empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-reads a backup: every file against the manifest's checksums, every group's stream
    /// against its own digest. Needs no node.
    Verify {
        /// The backup's directory.
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Creates a cluster from running nodes: `--nodes 1=host:7001,2=host:7002,3=host:7003`.
    Init {
        #[command(flatten)]
        target: ClusterTarget,
        /// The nodes, as `ID=ADDRESS` pairs, comma-separated.
        #[arg(long, value_parser = NodeList::parse)]
        nodes: NodeList,
        /// Event shards, fixed for the life of the cluster [default: 8; with --restore, the
        /// backup's].
        #[arg(long, value_parser = shards())]
        shards: Option<u32>,
        /// Replicas of each shard.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=i64::from(raft_store::REPLICATION_MAX)))]
        replication: u32,
        /// Start the new cluster's groups from this backup (`boxoffice backup create`); the
        /// nodes must be new.
        #[arg(long)]
        restore: Option<PathBuf>,
    },
    /// Nodes, shards, leaders, replicas, lag, health and disk.
    Status {
        #[command(flatten)]
        target: ClusterTarget,
        /// Print the report as JSON (for scripts and monitoring).
        #[arg(long)]
        json: bool,
        /// First wait, up to this long (e.g. `2m`), until the cluster is healthy: every active
        /// node answers, every group has a leader, and no replica is more than 1,000 entries
        /// behind; exit with an error if it is not by then. For scripts such as rolling restarts.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait_healthy: Option<Duration>,
    },
    /// Moves a group's leadership to another of its replicas (before maintenance of the node
    /// that leads it). Writes to the group wait a moment, and retry, while the successor is
    /// elected.
    TransferLeader {
        #[command(flatten)]
        target: ClusterTarget,
        /// The group: `meta` or `shard-N`.
        #[arg(long, value_parser = parse_group)]
        group: raft_store::GroupId,
        /// The node to lead it [default: the replica most up to date].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        to: Option<u64>,
    },
    /// Adds a running node; replicas then move onto it until balanced.
    AddNode {
        #[command(flatten)]
        target: ClusterTarget,
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
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
    /// Rebuilds a node's copy of a group (one `cluster status` reports damaged) from the other
    /// replicas: removed from the group, deleted, added back to catch up from a snapshot.
    Repair {
        #[command(flatten)]
        target: ClusterTarget,
        /// The node whose copy is rebuilt.
        #[arg(long)]
        id: u64,
        /// The group: `meta` or `shard-N`.
        #[arg(long, value_parser = parse_group)]
        group: raft_store::GroupId,
    },
}

fn parse_group(text: &str) -> Result<raft_store::GroupId, GroupNameError> {
    raft_store::GroupId::parse_name(text).ok_or_else(|| GroupNameError(text.to_owned()))
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a group (`meta` or `shard-N`)")]
struct GroupNameError(String);

#[derive(Subcommand, Debug)]
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

async fn run_dev(a: DevArgs, metrics: seams::MetricsRender) -> Result<(), ServeError> {
    let opts = crate::dev::DevOptions {
        addr: a.addr,
        data_dir: a.data_dir,
        demo: !a.no_demo,
        shards: a.shards,
        restore: a.restore,
        tokens: a.tokens,
        archive_after_ms: a.archive.archive_after_ms(),
        snapshot_every_logs: a.snapshots.snapshot_every_logs,
        edge: a.edge,
        webhooks: a.webhooks,
        cache_bytes: a.cache_mb.saturating_mul(1 << 20),
    };
    crate::dev::run(opts, metrics).await
}

async fn run_node(a: NodeArgs, metrics: seams::MetricsRender) -> Result<(), ServeError> {
    let opts = crate::serve::NodeOptions {
        node_id: a.node_id,
        listen: a.listen,
        advertise: a.advertise.clone(),
        data_dir: a.data_dir(),
        access: a.access.resolve(pki::Role::Node)?,
        port: a.port.limits(),
        cache_bytes: a.cache_mb.saturating_mul(1 << 20),
        tuning: a.tuning(),
        max_clock_offset_ms: Duration::from(a.max_clock_offset).as_millis() as i64,
    };
    crate::serve::run_node(opts, metrics).await
}

async fn run_api(a: ApiArgs, metrics: seams::MetricsRender) -> Result<(), ServeError> {
    let search = match (a.search_url, a.elastic.config()) {
        (Some(url), _) => crate::serve::SearchSource::Indexer { url },
        (None, Some(config)) => crate::serve::SearchSource::Elastic(config),
        (None, None) => crate::serve::SearchSource::None,
    };
    if a.dev_tokens && !a.listen.ip().is_loopback() {
        return Err(ServeError::DevTokensOffLoopback { listen: a.listen });
    }
    let keys = a.tokens.keys()?;
    if keys.jwt_secret.is_none() && a.tokens.oidc_issuer.is_none() {
        return Err(ServeError::MissingSecret {
            what: "a token key or issuer",
            flags: "--jwt-secret(-file) or --oidc-issuer",
        });
    }
    if keys.queue_secret.is_none() {
        return Err(ServeError::MissingSecret { what: "the waiting room's key", flags: "--queue-secret(-file)" });
    }
    let opts = crate::serve::ApiOptions {
        listen: a.listen,
        nodes: a.nodes,
        access: a.access.resolve(pki::Role::Api)?,
        api: a.edge.api_config(&a.tokens, keys, a.dev_tokens)?,
        search,
    };
    crate::serve::run_api(opts, metrics).await
}

async fn run_indexer(a: IndexerArgs, metrics: seams::MetricsRender) -> Result<(), ServeError> {
    let opts = crate::serve::IndexerOptions {
        listen: a.listen,
        nodes: a.nodes,
        access: a.access.resolve(pki::Role::Indexer)?,
        elastic: a.elastic.config(),
        // The leaders' clocks may differ from this process's by the cluster's default bound.
        webhooks: a.webhooks.config(&a.data_dir, Duration::from_millis(node::MAX_OFFSET_MS_DEFAULT as u64)),
        data_dir: a.data_dir,
    };
    crate::serve::run_indexer(opts, metrics).await
}

async fn run_cluster(command: ClusterCommand) -> Result<(), CliError> {
    match command {
        ClusterCommand::Init { target, nodes, shards, replication, restore: Some(dir) } => {
            let cli = operator(&target)?;
            println!("{}", crate::restore::init_cluster(&cli, &dir, nodes.0, shards, replication).await?);
        }
        ClusterCommand::Init { target, nodes, shards, replication, restore: None } => {
            let cli = operator(&target)?;
            println!("{}", cli.init(nodes.0, shards.unwrap_or(SHARDS_DEFAULT), replication).await?);
        }
        ClusterCommand::Repair { target, id, group } => {
            let cli = operator(&target)?;
            cli.repair(id, group, SETTLE_TIMEOUT).await?;
            println!("node {id}'s copy of {group} is rebuilt");
        }
        ClusterCommand::Status { target, json, wait_healthy } => {
            let cli = operator(&target)?;
            let report = match wait_healthy {
                Some(timeout) => cli.wait_healthy(timeout).await?,
                None => cli.status().await?,
            };
            match json {
                true => println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()),
                false => print!("{}", report.render()),
            }
        }
        ClusterCommand::TransferLeader { target, group, to } => {
            let cli = operator(&target)?;
            let leader = cli.transfer_leader(group, to).await?;
            println!("node {leader} leads {group}");
        }
        ClusterCommand::AddNode { target, id, addr, wait } => {
            let cli = operator(&target)?;
            let layout = cli.add_node(id, &addr).await?;
            println!("node {id} added at {addr}; replicas are moving onto it");
            if wait {
                cli.wait_balanced(layout.version, SETTLE_TIMEOUT).await?;
                println!("balanced");
            }
        }
        ClusterCommand::RemoveNode { target, id, wait } => {
            let cli = operator(&target)?;
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

/// The operator's client of the cluster: an operator's credential and the cluster secret.
fn operator(target: &ClusterTarget) -> Result<crate::cluster_cli::Cli, CliError> {
    let access = target.access.resolve(pki::Role::Operator)?;
    Ok(crate::cluster_cli::Cli::new(&target.node, &access)?)
}

/// `boxoffice search reindex`.
async fn reindex(elastic: ElasticArgs) -> Result<(), CliError> {
    let config = elastic.config().ok_or(CliError::NoElasticsearch)?;
    let index = indexer::ElasticIndex::connect(config).await?;
    let generation = index.reindex().await?;
    println!("reindexed into {generation}; the alias now points to it");
    Ok(())
}

/// `boxoffice backup …`.
async fn run_backup(command: BackupCommand) -> Result<(), CliError> {
    match command {
        BackupCommand::Create { target, out } => {
            let cli = operator(&target)?;
            let manifest = crate::backup::create(&cli, &out).await?;
            println!("backup of {} groups written to {}", manifest.groups.len(), out.display());
        }
        BackupCommand::Verify { dir } => {
            let backup = crate::backup::Backup::open(&dir)?;
            let summaries = backup.verify()?;
            println!("backup {} taken {} from {}", dir.display(), backup.manifest.created_at, backup.manifest.source);
            println!(
                "{:<10} {:>10} {:>6} {:>12} {:>12}  DIGEST",
                "GROUP", "INDEX", "TERM", "HOT BYTES", "COLD RECORDS"
            );
            for (entry, summary) in backup.manifest.groups.iter().zip(&summaries) {
                println!(
                    "{:<10} {:>10} {:>6} {:>12} {:>12}  {}",
                    entry.group, entry.index, entry.term, summary.hot_bytes, summary.cold_records, entry.digest
                );
            }
            println!("ok: every file matches its checksum and every stream its digest");
        }
    }
    Ok(())
}

async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Cluster(c) => run_cluster(c).await,
        Command::Backup(c) => run_backup(c).await,
        Command::Certs(c) => Ok(crate::certs::run(c)?),
        Command::Search(SearchCommand::Reindex { elastic }) => reindex(elastic).await,
        Command::Dev(a) => Ok(run_dev(a, telemetry::install_metrics()?).await?),
        Command::Node(a) => Ok(run_node(a, telemetry::install_metrics()?).await?),
        Command::Api(a) => Ok(run_api(a, telemetry::install_metrics()?).await?),
        Command::Indexer(a) => Ok(run_indexer(a, telemetry::install_metrics()?).await?),
    }
}

/// The command line, with a subcommand's `--config` file read into it (see `config.rs`).
fn parse() -> Cli {
    // The release this process reports (a test build's may differ from the package's).
    let version: &'static str = Box::leak(node::Version::local().to_string().into_boxed_str());
    let matches = match config::parse_with_file(Cli::command().version(version), std::env::args_os().collect()) {
        Ok(matches) => matches,
        Err(config::ParseError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("boxoffice: {e}");
            std::process::exit(2);
        }
    };
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

pub fn main() -> ExitCode {
    let cli = parse();
    // Every TLS client and server of the process uses ring (reqwest is built without a provider
    // of its own); installed before anything can build one. It fails only if one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    telemetry::init_tracing(cli.log_format, &cli.log);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "boxoffice stopped");
            eprintln!("boxoffice: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::parser::ValueSource;
    use clap::ArgMatches;

    use super::*;

    /// A valid value for each flag of `command` that has none by default.
    fn sample(id: &str) -> &'static str {
        match id {
            "jwt_secret" => "a-token-key-for-tests-of-32-bytes-or-more",
            "queue_secret" => "a-waiting-room-key-of-32-bytes-or-more",
            "ticket_secret" => "a-ticket-signing-key-of-32-bytes-or-more",
            "oidc_issuer" => "https://login.example.com/realms/boxoffice",
            "oidc_audience" => "boxoffice-api",
            "oidc_jwks_url" => "https://login.example.com/realms/boxoffice/keys",
            "oidc_ca_file" => "/etc/boxoffice/idp-ca.pem",
            // Alternatives the inline values exclude.
            "jwt_secret_file" | "queue_secret_file" | "ticket_secret_file" | "cluster_secret_file" => "",
            "cluster_secret" => "a-cluster-secret-for-tests",
            "tls_dir" => "/etc/boxoffice/tls",
            "nodes" => "127.0.0.1:7001",
            "node_id" => "4",
            "advertise" => "10.0.0.4:7001",
            "data_dir" => "/var/lib/boxoffice",
            "search_url" => "http://127.0.0.1:7100",
            "metrics_addr" => "127.0.0.1:9100",
            "shards" => "4",
            "restore" => "/var/backups/boxoffice",
            "elasticsearch_ca_file" => "/etc/boxoffice/elasticsearch-ca.pem",
            "webhook_ca_file" => "/etc/boxoffice/webhook-ca.pem",
            "elasticsearch_url" | "elasticsearch_api_key" | "elasticsearch_username" | "elasticsearch_password" => "",
            "stripe_secret_key" => "sk_test_a-key-for-tests",
            "stripe_webhook_secret" => "whsec_old,whsec_new",
            "stripe_secret_key_file" | "stripe_webhook_secret_file" => "",
            other => panic!("no sample value for `{other}`: give it a default or a sample here"),
        }
    }

    /// Every flag of `name` with a value (its default, or a sample), as flags and as a TOML file.
    fn every_flag(name: &str) -> (Vec<OsString>, String) {
        let cli = Cli::command();
        let command = cli.find_subcommand(name).expect("subcommand");
        let (mut flags, mut file) = (Vec::new(), String::new());
        for key in config::keys(command) {
            let arg = command.get_arguments().find(|a| a.get_id() == key.as_str()).expect("arg");
            let long = arg.get_long().expect("long");
            if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
                flags.push(format!("--{long}").into());
                file.push_str(&format!("{key} = true\n"));
                continue;
            }
            let value = match arg.get_default_values().first() {
                Some(default) => default.to_string_lossy().into_owned(),
                None => sample(&key).to_owned(),
            };
            if value.is_empty() {
                continue; // an alternative the others exclude (Elasticsearch beside --search-url)
            }
            flags.push(format!("--{long}={value}").into());
            file.push_str(&format!("{key} = {value:?}\n"));
        }
        (flags, file)
    }

    fn parsed(argv: Vec<OsString>) -> (ArgMatches, String) {
        let matches = config::parse_with_file(Cli::command(), argv).expect("parses");
        let command = format!("{:?}", Cli::from_arg_matches(&matches).expect("a command").command);
        (matches, command)
    }

    #[test]
    fn every_flag_of_api_and_dev_is_a_key_of_their_config_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["api", "dev", "node", "indexer"] {
            let (flags, file) = every_flag(name);
            let path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&path, &file).expect("write");
            let (_, by_flags) = parsed([OsString::from("boxoffice"), name.into()].into_iter().chain(flags).collect());
            let (matches, by_file) =
                parsed(vec!["boxoffice".into(), name.into(), "--config".into(), path.clone().into()]);
            let by_file = by_file.replace(&format!("Some({path:?})"), "None");
            assert_eq!(by_flags, by_file, "`boxoffice {name}`: the file\n{file}\nreads differently from its flags");
            // Each key was taken as its flag, not left to the flag's default.
            let sub = matches.subcommand_matches(name).expect("subcommand matches");
            for key in file.lines().filter_map(|line| line.split_once(" = ")).map(|(key, _)| key) {
                assert_eq!(sub.value_source(key), Some(ValueSource::CommandLine), "`{key}` of `boxoffice {name}`");
            }
        }
    }
}
