//! `boxoffice dev`: one node, the api and demo data in one process, on one machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api::{ApiState, SandboxPayments};
use raft_store::SledKv;
use seams::MetricsRender;

use node::now_ms;

use crate::error::ServeError;
use crate::process::{bind_metrics, bind_public, fit_connections_to_fd_limit, flush_stdout, shutdown_signal};
use crate::settings::EdgeArgs;
use node::LocalCluster;
use node::NoPeers;
use node::{Node, NodeSetup, RaftTuning};

/// sled's page cache for `boxoffice dev`.
const DEV_CACHE_BYTES: u64 = 256 << 20;
/// How long start-up waits for every group to elect its (only) leader.
const STARTUP_LEADER_WAIT_MS: u64 = 30_000;

#[derive(Clone, Debug)]
pub struct DevOptions {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub demo: bool,
    pub shards: u32,
    pub jwt_secret: Option<String>,
    /// See `RaftTuning::archive_after_ms`.
    pub archive_after_ms: i64,
    pub edge: EdgeArgs,
}

/// The dev signing key: given, or generated once and kept in the data directory so tokens
/// survive restarts.
fn dev_jwt_secret(data_dir: &Path, given: Option<String>) -> Result<String, ServeError> {
    if let Some(secret) = given {
        return Ok(secret);
    }
    let path = data_dir.join("dev-jwt-secret");
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok(secret.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ServeError::DataDir { path, source: e }),
    }
    let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    std::fs::write(&path, &secret).map_err(ServeError::data_dir(path))?;
    Ok(secret)
}

pub async fn run(opts: DevOptions, metrics: MetricsRender) -> Result<(), ServeError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(ServeError::data_dir(&opts.data_dir))?;
    let jwt_secret = dev_jwt_secret(&opts.data_dir, opts.jwt_secret.clone())?;
    let kv = SledKv::open(&opts.data_dir.join("db"), DEV_CACHE_BYTES)?;
    let listener = bind_public(opts.addr)?;
    let addr = listener.local_addr().map_err(ServeError::listen(opts.addr))?;

    let node = Node::start(NodeSetup {
        node_id: 1,
        advertise_addr: addr.to_string(),
        kv,
        client: Arc::new(NoPeers),
        tuning: RaftTuning { archive_after_ms: opts.archive_after_ms, ..RaftTuning::default() },
        // One node, one clock: nothing to allow for.
        clock: node::Clock::new(0),
    })
    .await?;
    node.bootstrap_single(opts.shards).await?;
    node.wait_for_leaders(Duration::from_millis(STARTUP_LEADER_WAIT_MS)).await?;
    let cluster = Arc::new(LocalCluster::new(node.clone()));

    if opts.demo {
        let seeded = crate::demo::seed(cluster.as_ref(), now_ms()).await?;
        if seeded.venues + seeded.events > 0 {
            tracing::info!(venues = seeded.venues, events = seeded.events, "demo data created");
        }
    }

    // The indexer runs in process: it follows every shard's change feed into the embedded index,
    // which serves `GET /v1/search`.
    let index = indexer::EmbeddedIndex::open(&opts.data_dir.join("search"))?;
    let follower = indexer::Follower::start(cluster.clone(), index.clone(), indexer::FollowerConfig::default());

    let mut config = opts.edge.api_config(jwt_secret, true);
    fit_connections_to_fd_limit(&mut config);
    let metrics_listener = bind_metrics(&config).await?;
    let metrics = crate::telemetry::with_node_gauges(&node, metrics);
    let state = ApiState::new(cluster, config.clone(), Arc::new(SandboxPayments), metrics)?.with_search(index);
    let background = state.start_background();

    tracing::info!(
        %addr,
        data_dir = %opts.data_dir.display(),
        shards = node.shard_count().unwrap_or(opts.shards),
        demo = opts.demo,
        api = ?config,
        "boxoffice dev configuration"
    );
    print_banner(addr, &opts, &config);

    let served = api::serve_api(state, listener, metrics_listener, shutdown_signal()).await;
    drop(background);
    follower.stop().await;
    node.shutdown().await;
    served.map_err(ServeError::Serve)
}

fn print_banner(addr: SocketAddr, opts: &DevOptions, config: &api::ApiConfig) {
    let url = format!("http://{addr}");
    // The first line is stable: scripts and tests read the address from it.
    println!("boxoffice: listening on {url}");
    println!();
    println!("  Boxoffice dev is running: one node, {} shards, data in {}", opts.shards, opts.data_dir.display());
    println!("  Holds last {}. Dev tokens are on.", opts.edge.hold_ttl);
    println!();
    println!("  Browse the events:   curl -s {url}/v1/events");
    println!(
        "  Get a token:         curl -s -X POST {url}/v1/auth/dev-token -H 'content-type: application/json' -d '{{\"user_id\":\"alice\",\"role\":\"user\"}}'"
    );
    println!("  API description:     {url}/openapi.json");
    match config.metrics_addr {
        Some(metrics) => println!("  Metrics:             http://{metrics}/metrics"),
        None => println!("  Metrics:             {url}/metrics"),
    }
    println!();
    flush_stdout();
}
