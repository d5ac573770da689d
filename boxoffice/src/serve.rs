//! The long-running processes of a cluster: `boxoffice node` and `boxoffice api`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api::{ApiConfig, ApiState, Payments};

use crate::access::Access;
use crate::error::ServeError;
use raft_store::NodeId;
use seams::MetricsRender;

use crate::http::internal_routes;
use crate::ports::{serve_node_http, IndexerPort};
use crate::process::{
    bind_metrics, bind_public, fit_connections_to_fd_limit, fit_port_to_fd_limit, flush_stdout,
    shutdown_or_storage_failure, shutdown_signal,
};
use node::Router;
use node::{Handler, PortConfig, PortLimits, RpcNodeClient, SplitListener};
use node::{Node, NodeSetup, RaftTuning};

#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub node_id: NodeId,
    pub listen: SocketAddr,
    /// Where peers reach this node; by default the address it listens on.
    pub advertise: Option<String>,
    pub data_dir: PathBuf,
    /// The node's credential (its role: node) and the cluster secret.
    pub access: Access,
    /// The limits of the node's port.
    pub port: PortLimits,
    pub cache_bytes: u64,
    pub tuning: RaftTuning,
    /// The largest difference between two nodes' clocks the cluster assumes (see `Clock`).
    pub max_clock_offset_ms: i64,
}

pub async fn run_node(opts: NodeOptions, metrics: MetricsRender) -> Result<(), ServeError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(ServeError::data_dir(&opts.data_dir))?;
    let listener = tokio::net::TcpListener::bind(opts.listen).await.map_err(ServeError::listen(opts.listen))?;
    let bound = listener.local_addr().map_err(ServeError::listen(opts.listen))?;
    let advertise = opts.advertise.clone().unwrap_or_else(|| bound.to_string());
    let (kv, log_kv) = raft_store::open_node_stores(&opts.data_dir, opts.cache_bytes).await?;
    let client = Arc::new(RpcNodeClient::new(&opts.access.credential, &opts.access.secret)?);
    let mut port = opts.port.clone();
    fit_port_to_fd_limit(&mut port);
    let port =
        PortConfig { tls: opts.access.credential.server_config()?, secret: opts.access.secret.clone(), limits: port };
    let node = Node::start(NodeSetup {
        node_id: opts.node_id,
        advertise_addr: advertise.clone(),
        kv,
        log_kv,
        client,
        tuning: opts.tuning.clone(),
        clock: node::Clock::new(opts.max_clock_offset_ms),
    })
    .await?;
    tokio::spawn(node::rebalance_duty(Arc::downgrade(&node)));
    node.spawn_sampled_gauges(opts.data_dir.clone());
    tracing::info!(
        node = opts.node_id,
        %bound,
        %advertise,
        data_dir = %opts.data_dir.display(),
        cluster_secret = "****",
        port = ?port.limits,
        cache_bytes = opts.cache_bytes,
        "boxoffice node configuration"
    );
    println!("boxoffice: node {} listening on {bound}", opts.node_id);
    flush_stdout();
    let metrics = crate::telemetry::with_node_gauges(&node, metrics);
    let app = internal_routes(node.clone(), metrics);
    let handler: Handler = {
        let node = node.clone();
        Arc::new(move |request| {
            let node = node.clone();
            Box::pin(async move { node.handle(request).await })
        })
    };
    // Peers, api instances and the CLI call on this port over mutual TLS (`node::rpc`);
    // operators' probes and scrapes arrive on it in plain HTTP.
    let listener = SplitListener::new(listener, port, handler).map_err(ServeError::Serve)?;
    let failed = Arc::new(std::sync::Mutex::new(None));
    let stop = {
        let (node, failed) = (node.clone(), failed.clone());
        async move {
            match shutdown_or_storage_failure(&node).await {
                Some(e) => *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
                // Asked to stop: hand the groups led here to other replicas first, while this
                // port still serves (a successor may need this node's vote), so that clients
                // find leaders the moment this node is gone.
                None => node.hand_over_all(Duration::from_millis(node::HAND_OVER_TIMEOUT_MS)).await,
            }
        }
    };
    serve_node_http(listener, app, stop).await;
    node.shutdown().await;
    if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(ServeError::StorageFailed(e));
    }
    Ok(())
}

/// Where `boxoffice api` answers `GET /v1/search` from.
#[derive(Clone, Debug)]
pub enum SearchSource {
    /// Search answers 503.
    None,
    /// A `boxoffice indexer` process, at an `https://` URL.
    Indexer { url: String },
    /// An Elasticsearch cluster that an indexer keeps current.
    Elastic(indexer::ElasticConfig),
}

#[derive(Clone, Debug)]
pub struct ApiOptions {
    pub listen: SocketAddr,
    /// Nodes to learn the cluster from (any subset).
    pub nodes: Vec<String>,
    /// The api's credential (its role: api) and the cluster secret.
    pub access: Access,
    pub api: ApiConfig,
    pub search: SearchSource,
}

/// What a process in front of a cluster starts with: its listener, the address it got, and a
/// router over the nodes it was given (not refreshed yet).
async fn listen_and_connect(
    listen: SocketAddr,
    nodes: &[String],
    access: &Access,
) -> Result<(tokio::net::TcpListener, SocketAddr, Arc<Router>), ServeError> {
    let listener = bind_public(listen)?;
    let bound = listener.local_addr().map_err(ServeError::listen(listen))?;
    let client = Arc::new(RpcNodeClient::new(&access.credential, &access.secret)?);
    Ok((listener, bound, Router::new(client, nodes.to_vec())))
}

pub async fn run_api(opts: ApiOptions, metrics: MetricsRender) -> Result<(), ServeError> {
    let (listener, bound, router) = listen_and_connect(opts.listen, &opts.nodes, &opts.access).await?;
    if let Err(e) = router.refresh().await {
        tracing::warn!(error = %e, "the cluster is not reachable yet; retrying in the background");
    }
    router.spawn_refresher();
    let mut config = opts.api.clone();
    fit_connections_to_fd_limit(&mut config);
    let metrics_listener = bind_metrics(&config).await?;
    let payments = Arc::new(Payments::for_config(&config)?);
    let state = ApiState::new(router, config.clone(), payments, metrics)?;
    let state = match &opts.search {
        SearchSource::None => state,
        SearchSource::Indexer { url } => {
            let tls = opts.access.credential.client_config_for(pki::Role::Indexer)?;
            state.with_search(Arc::new(indexer::RemoteSearch::new(url, &opts.access.secret, tls)?))
        }
        // Read-only: the indexer installs templates and moves aliases; the api only searches.
        SearchSource::Elastic(config) => state.with_search(indexer::ElasticSearch::connect(config.clone()).await?),
    };
    tracing::info!(
        %bound,
        nodes = ?opts.nodes,
        search = ?search_name(&opts.search),
        api = ?config,
        cluster_secret = "****",
        "boxoffice api configuration"
    );
    println!("boxoffice: api listening on http://{bound}");
    if let Some(metrics) = config.metrics_addr {
        println!("boxoffice: api metrics on http://{metrics}/metrics");
    }
    flush_stdout();
    // The feed followers and limiter pruning run as long as the api serves.
    let _background = state.start_background();
    api::serve_api(state, listener, metrics_listener, shutdown_signal()).await.map_err(ServeError::Serve)
}

fn search_name(source: &SearchSource) -> String {
    match source {
        SearchSource::None => "none".into(),
        SearchSource::Indexer { url } => format!("indexer at {url}"),
        SearchSource::Elastic(c) => format!("elasticsearch at {} ({})", c.url, c.index_prefix),
    }
}

#[derive(Clone, Debug)]
pub struct IndexerOptions {
    pub listen: SocketAddr,
    pub nodes: Vec<String>,
    /// The indexer's credential (its role: indexer) and the cluster secret.
    pub access: Access,
    /// Where the embedded index lives (unused with Elasticsearch).
    pub data_dir: PathBuf,
    /// Index into Elasticsearch instead of the embedded index.
    pub elastic: Option<indexer::ElasticConfig>,
    /// The outgoing webhook dispatcher, which runs beside the follower.
    pub webhooks: indexer::DispatcherConfig,
}

/// `boxoffice indexer`: follows every shard's change feed into the search index and to the
/// outgoing webhooks, and answers api instances' searches.
pub async fn run_indexer(opts: IndexerOptions, metrics: MetricsRender) -> Result<(), ServeError> {
    let (listener, bound, router) = listen_and_connect(opts.listen, &opts.nodes, &opts.access).await?;
    // The follower needs the shard count: wait for the cluster rather than guess.
    while router.refresh().await.is_err() || router.layout().is_none() {
        tracing::warn!("waiting for the cluster to answer");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    router.spawn_refresher();
    let index: Arc<dyn indexer::Index> = match &opts.elastic {
        Some(config) => indexer::ElasticIndex::connect(config.clone()).await?,
        None => {
            std::fs::create_dir_all(&opts.data_dir).map_err(ServeError::data_dir(&opts.data_dir))?;
            indexer::EmbeddedIndex::open(&opts.data_dir.join("search"))?
        }
    };
    std::fs::create_dir_all(&opts.webhooks.dir).map_err(ServeError::data_dir(&opts.webhooks.dir))?;
    let webhooks = indexer::Dispatcher::start(router.clone(), opts.webhooks.clone())?;
    let follower = indexer::Follower::start(router, index.clone(), indexer::FollowerConfig::default());
    let backend = match &opts.elastic {
        Some(c) => format!("elasticsearch at {} ({})", c.url, c.index_prefix),
        None => format!("embedded in {}", opts.data_dir.display()),
    };
    tracing::info!(%bound, nodes = ?opts.nodes, %backend, cluster_secret = "****", "boxoffice indexer configuration");
    println!("boxoffice: indexer listening on https://{bound}");
    flush_stdout();
    let ops = indexer::ops_routes(metrics);
    let port = IndexerPort {
        tls: opts.access.credential.server_config()?,
        search: indexer::search_routes(index, &opts.access.secret).merge(ops.clone()),
        ops,
    };
    port.serve(listener, shutdown_signal()).await;
    webhooks.stop().await;
    follower.stop().await;
    Ok(())
}
