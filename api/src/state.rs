//! What every handler shares: the cluster, the configuration, the payment gateway, the token
//! verifier and the metrics renderer. Cheap to clone (one `Arc`).

use std::sync::Arc;

use raft_store::{shard_of, EventId, GroupId};

use crate::cluster::Cluster;
use crate::config::ApiConfig;
use crate::payments::PaymentGateway;
use crate::search::SearchBackend;
use crate::token::TokenVerifier;
use crate::waiting_room::WaitingRoom;

/// Renders the process's metrics in the Prometheus text format; the binary installs the
/// recorder and passes its render function.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Arc<dyn Cluster>,
    config: ApiConfig,
    payments: Arc<dyn PaymentGateway>,
    metrics: MetricsRender,
    tokens: TokenVerifier,
    search: Option<Arc<dyn SearchBackend>>,
    waiting_room: WaitingRoom,
}

impl ApiState {
    /// Start-up: panics on an invalid configuration (see [`ApiConfig::validate`]) or a cluster
    /// without shards, which no request could work around.
    pub fn new(
        cluster: Arc<dyn Cluster>,
        config: ApiConfig,
        payments: Arc<dyn PaymentGateway>,
        metrics: MetricsRender,
    ) -> ApiState {
        if let Err(problem) = config.validate() {
            panic!("invalid api configuration: {problem}");
        }
        assert!(cluster.shard_count() > 0, "a cluster has at least one shard");
        let tokens = TokenVerifier::new(&config.jwt_secret);
        let waiting_room = WaitingRoom::new(cluster.clone(), &config.jwt_secret);
        ApiState { inner: Arc::new(Inner { cluster, config, payments, metrics, tokens, search: None, waiting_room }) }
    }

    /// Serves `GET /v1/search` from this backend (without one it answers 503). Start-up only:
    /// call before the state is shared.
    pub fn with_search(mut self, search: Arc<dyn SearchBackend>) -> ApiState {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.search = Some(search),
            None => panic!("with_search is called at start-up, before the state is shared"),
        }
        self
    }

    pub(crate) fn search(&self) -> Option<&dyn SearchBackend> {
        self.inner.search.as_deref()
    }

    pub(crate) fn cluster(&self) -> &dyn Cluster {
        self.inner.cluster.as_ref()
    }

    pub(crate) fn cluster_arc(&self) -> Arc<dyn Cluster> {
        self.inner.cluster.clone()
    }

    pub(crate) fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    pub(crate) fn payments(&self) -> &dyn PaymentGateway {
        self.inner.payments.as_ref()
    }

    pub(crate) fn render_metrics(&self) -> String {
        (self.inner.metrics)()
    }

    pub(crate) fn waiting_room(&self) -> &WaitingRoom {
        &self.inner.waiting_room
    }

    pub(crate) fn tokens(&self) -> &TokenVerifier {
        &self.inner.tokens
    }

    /// The shard that owns an event.
    pub(crate) fn shard_of(&self, event_id: &EventId) -> u32 {
        shard_of(event_id, self.cluster().shard_count())
    }

    /// The group that owns an event.
    pub(crate) fn group_of(&self, event_id: &EventId) -> GroupId {
        GroupId::shard(self.shard_of(event_id))
    }
}
