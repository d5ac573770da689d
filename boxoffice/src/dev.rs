//! `boxoffice dev`: one node, the api and demo data in one process, on one machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api::{ApiState, Payments};
use seams::MetricsRender;

use node::now_ms;

use crate::error::ServeError;
use crate::process::{
    bind_metrics, bind_public, fit_connections_to_fd_limit, flush_stdout, shutdown_or_storage_failure,
};
use crate::secrets;
use crate::settings::{EdgeArgs, TokenArgs, TokenKeys, WebhookArgs, SHARDS_DEFAULT};
use node::LocalCluster;
use node::NoPeers;
use node::{Node, NodeSetup, RaftTuning};

/// How long start-up waits for every group to elect its (only) leader.
const STARTUP_LEADER_WAIT_MS: u64 = 30_000;

#[derive(Clone, Debug)]
pub struct DevOptions {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub demo: bool,
    /// `None`: the stored count, or `SHARDS_DEFAULT` for a new directory (the backup's with
    /// `restore`).
    pub shards: Option<u32>,
    /// A backup to start a new data directory from.
    pub restore: Option<PathBuf>,
    pub tokens: TokenArgs,
    /// See `RaftTuning::archive_after_ms`.
    pub archive_after_ms: i64,
    /// See `RaftTuning::snapshot_every_logs`.
    pub snapshot_every_logs: u64,
    pub edge: EdgeArgs,
    pub webhooks: WebhookArgs,
    /// The state store's block cache (fjall).
    pub cache_bytes: u64,
}

/// The dev keys: given, or generated once and kept in the data directory (readable by its
/// owner only) so tokens, queue places and ticket codes survive restarts.
fn dev_keys(data_dir: &Path, tokens: &TokenArgs) -> Result<TokenKeys, ServeError> {
    let given = tokens.keys()?;
    let jwt_secret = match given.jwt_secret {
        Some(secret) => secret,
        None => secrets::kept_or_generated(&data_dir.join("dev-jwt-secret"))?,
    };
    let queue_secret = match given.queue_secret {
        Some(secret) => secret,
        None => secrets::kept_or_generated(&data_dir.join("dev-queue-secret"))?,
    };
    let ticket_secret = match given.ticket_secret {
        Some(secret) => secret,
        None => secrets::kept_or_generated(&data_dir.join("dev-ticket-secret"))?,
    };
    Ok(TokenKeys { jwt_secret: Some(jwt_secret), queue_secret: Some(queue_secret), ticket_secret: Some(ticket_secret) })
}

pub async fn run(opts: DevOptions, metrics: MetricsRender) -> Result<(), ServeError> {
    // Checked before the directory is touched: a restore goes into a new one.
    let backup = match &opts.restore {
        Some(dir) => Some(crate::restore::open_for_dev(dir, &opts.data_dir, opts.shards)?),
        None => None,
    };
    std::fs::create_dir_all(&opts.data_dir).map_err(ServeError::data_dir(&opts.data_dir))?;
    let keys = dev_keys(&opts.data_dir, &opts.tokens)?;
    let (kv, log_kv) = raft_store::open_node_stores(&opts.data_dir, opts.cache_bytes).await?;
    let listener = bind_public(opts.addr)?;
    let addr = listener.local_addr().map_err(ServeError::listen(opts.addr))?;

    let node = Node::start(NodeSetup {
        node_id: 1,
        advertise_addr: addr.to_string(),
        kv,
        log_kv,
        client: Arc::new(NoPeers),
        tuning: RaftTuning {
            archive_after_ms: opts.archive_after_ms,
            snapshot_every_logs: opts.snapshot_every_logs,
            ..RaftTuning::default()
        },
        // One node, one clock: nothing to allow for.
        clock: node::Clock::new(0),
    })
    .await?;
    let shards = match &backup {
        Some(backup) => {
            crate::restore::seed_dev(&node, backup).await?;
            tracing::info!(backup = ?opts.restore, groups = backup.manifest.groups.len(), "data directory restored");
            backup.manifest.shard_count
        }
        None => opts.shards.unwrap_or(SHARDS_DEFAULT),
    };
    node.bootstrap_single(shards).await?;
    node.wait_for_leaders(Duration::from_millis(STARTUP_LEADER_WAIT_MS)).await?;
    // The disk and the hot state's counts, as a cluster's node samples them.
    node.spawn_sampled_gauges(opts.data_dir.clone());
    let cluster = Arc::new(LocalCluster::new(node.clone()));

    if opts.demo && backup.is_none() {
        let seeded = crate::demo::seed(cluster.as_ref(), now_ms()).await?;
        if seeded.venues + seeded.events > 0 {
            tracing::info!(venues = seeded.venues, events = seeded.events, "demo data created");
        }
    }

    // The indexer runs in process: it follows every shard's change feed into the embedded index,
    // which serves `GET /v1/search`.
    let index = indexer::EmbeddedIndex::open(&opts.data_dir.join("search"))?;
    let follower = indexer::Follower::start(cluster.clone(), index.clone(), indexer::FollowerConfig::default());
    // So does the webhook dispatcher; one process, one clock: no margin between clocks.
    let webhooks = indexer::Dispatcher::start(cluster.clone(), opts.webhooks.config(&opts.data_dir, Duration::ZERO))?;

    // Dev tokens mint anyone's tokens: served only where no one else can ask for them.
    let dev_tokens = addr.ip().is_loopback();
    if !dev_tokens {
        tracing::warn!(%addr, "not a loopback address: dev tokens are off (POST /v1/auth/dev-token answers 404)");
    }
    let mut config = opts.edge.api_config(&opts.tokens, keys, dev_tokens)?;
    config.sandbox_payments = true;
    fit_connections_to_fd_limit(&mut config);
    let metrics_listener = bind_metrics(&config).await?;
    let metrics = crate::telemetry::with_node_gauges(&node, metrics);
    let payments = Arc::new(Payments::for_config(&config)?);
    let state = ApiState::new(cluster, config.clone(), payments, metrics)?.with_search(index);
    let background = state.start_background();

    tracing::info!(
        %addr,
        data_dir = %opts.data_dir.display(),
        shards = node.shard_count().unwrap_or(shards),
        demo = opts.demo,
        api = ?config,
        "boxoffice dev configuration"
    );
    print_banner(addr, &opts, shards, &config);

    let failed = std::sync::Mutex::new(None);
    let stop = async {
        if let Some(e) = shutdown_or_storage_failure(&node).await {
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
    };
    let served = api::serve_api(state, listener, metrics_listener, stop).await;
    drop(background);
    webhooks.stop().await;
    follower.stop().await;
    node.shutdown().await;
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(ServeError::StorageFailed(e));
    }
    served.map_err(ServeError::Serve)
}

fn print_banner(addr: SocketAddr, opts: &DevOptions, shards: u32, config: &api::ApiConfig) {
    let url = format!("http://{addr}");
    // The first line is stable: scripts and tests read the address from it.
    println!("boxoffice: listening on {url}");
    println!();
    println!("  Boxoffice dev is running: one node, {shards} shards, data in {}", opts.data_dir.display());
    let dev_tokens = if config.dev_tokens { "on" } else { "off (not a loopback address)" };
    println!("  Holds last {}. Dev tokens are {dev_tokens}.", opts.edge.hold_ttl);
    println!();
    println!("  Web client:          {url}/");
    println!("  Browse the events:   curl -s {url}/v1/events");
    println!(
        "  Get a token:         curl -s -X POST {url}/v1/auth/dev-token -H 'content-type: application/json' -d '{{\"user_id\":\"alice\",\"role\":\"user\"}}'"
    );
    println!("  API description:     {url}/openapi.json");
    if config.stripe.is_some() {
        println!("  Stripe webhook:      {url}/v1/payments/stripe/webhook");
    }
    match config.metrics_addr {
        Some(metrics) => println!("  Metrics:             http://{metrics}/metrics"),
        None => println!("  Metrics:             {url}/metrics"),
    }
    println!();
    flush_stdout();
}
