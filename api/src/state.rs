//! What every handler shares: the cluster, the configuration, the payment gateway, the token
//! verifier and the metrics renderer. Cheap to clone (one `Arc`).

use std::sync::Arc;

use raft_store::{shard_of, Command, EventId, GroupId, Outcome, RequestId, UserId};
use seams::{Cluster, MetricsRender, SearchBackend, Submit};

use crate::cache::ReadCache;
use crate::config::{ApiConfig, ConfigError};
use crate::error::ApiError;
use crate::limits::{Limits, LIMITS_PRUNE_INTERVAL};
use crate::payments::PaymentGateway;
use crate::seat_feed::SeatFeeds;
use crate::streams::StreamSlots;
use crate::ticket_code::TicketKeys;
use crate::token::TokenVerifier;
use crate::waiting_room::WaitingRoom;

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
    read_cache: Arc<ReadCache>,
    limits: Arc<Limits>,
    seat_feeds: SeatFeeds,
    stream_slots: Arc<StreamSlots>,
    tickets: TicketKeys,
}

impl ApiState {
    /// Start-up: refuses an invalid configuration (see [`ApiConfig::validate`]); panics on a
    /// cluster without shards, which no configuration causes and no request could work around.
    pub fn new(
        cluster: Arc<dyn Cluster>,
        config: ApiConfig,
        payments: Arc<dyn PaymentGateway>,
        metrics: MetricsRender,
    ) -> Result<ApiState, ConfigError> {
        config.validate()?;
        assert!(cluster.shard_count() > 0, "a cluster has at least one shard");
        let tokens = TokenVerifier::new(&config).map_err(|e| {
            let issuer = config.oidc.as_ref().map_or("", |o| o.issuer.as_str());
            ConfigError { key: "oidc_issuer", value: issuer.to_owned(), rule: e.to_string() }
        })?;
        let waiting_room = WaitingRoom::new(cluster.clone(), &config.queue_secret);
        let read_cache = Arc::new(ReadCache::new(&config.read_cache));
        let limits = Arc::new(Limits::new(&config.limits));
        let seat_feeds = SeatFeeds::new(cluster.clone());
        let stream_slots = StreamSlots::new(&config.streams);
        let tickets = TicketKeys::new(config.ticket_secret.as_deref().unwrap_or(&config.queue_secret).as_bytes());
        let inner = Inner {
            cluster,
            config,
            payments,
            metrics,
            tokens,
            search: None,
            waiting_room,
            read_cache,
            limits,
            seat_feeds,
            stream_slots,
            tickets,
        };
        Ok(ApiState { inner: Arc::new(inner) })
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

    /// Every event's ticket-signing key.
    pub(crate) fn tickets(&self) -> &TicketKeys {
        &self.inner.tickets
    }

    pub(crate) fn tokens(&self) -> &TokenVerifier {
        &self.inner.tokens
    }

    pub(crate) fn read_cache(&self) -> &ReadCache {
        &self.inner.read_cache
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub(crate) fn seat_feeds(&self) -> &SeatFeeds {
        &self.inner.seat_feeds
    }

    pub(crate) fn stream_slots(&self) -> &Arc<StreamSlots> {
        &self.inner.stream_slots
    }

    /// Starts the tasks this instance runs beside its requests: one change-feed follower per
    /// shard that invalidates the read cache, and the pruning of the rate limiters' keys. They
    /// tolerate an unreachable cluster and run until the returned guard is dropped. Without them
    /// the api still serves; cached documents then change only on expiry and on writes through
    /// this instance.
    pub fn start_background(&self) -> Background {
        let mut tasks = Vec::new();
        if self.read_cache().enabled() {
            tasks.push(tokio::spawn(crate::cache::follow_feeds(self.inner.read_cache.clone(), self.cluster_arc())));
        }
        if self.limits().any() {
            let limits = self.inner.limits.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LIMITS_PRUNE_INTERVAL).await;
                    limits.prune();
                }
            }));
        }
        if self.tokens().jwks().is_some() {
            let state = self.clone();
            tasks.push(tokio::spawn(async move {
                // At once, so the first tokens find their keys; then on a timer, so rotated keys
                // are known before tokens signed with them arrive.
                loop {
                    if let Some(jwks) = state.tokens().jwks() {
                        if let Err(e) = jwks.refresh(true).await {
                            tracing::warn!(error = %e, "the identity provider's keys could not be fetched");
                        }
                    }
                    tokio::time::sleep(crate::jwks::REFRESH_INTERVAL).await;
                }
            }));
        }
        Background { tasks }
    }

    /// Proposes a command and returns its outcome; a refusal becomes the matching error.
    pub(crate) async fn submit(
        &self,
        command: Command,
        request_id: RequestId,
        fingerprint: u64,
    ) -> Result<Outcome, ApiError> {
        self.submit_as(Submit { command, request_id, fingerprint, keyed: true }).await
    }

    /// Submits a command, says whether it was applied or refused in the metrics, lets the read
    /// caches know, and turns a refusal into its problem document.
    pub(crate) async fn submit_as(&self, submit: Submit) -> Result<Outcome, ApiError> {
        let name = submit.command.name();
        let written = Written::of(&submit.command);
        let result = self.cluster().submit(submit).await;
        let label = match &result {
            Ok(Outcome::Refused(_)) => "refused",
            Ok(_) => "applied",
            Err(_) => "error",
        };
        metrics::counter!("api_commands_total", "command" => name, "result" => label).increment(1);
        let result = result.map_err(ApiError::from);
        self.after_write(&result, written).await;
        match result? {
            Outcome::Refused(refusal) => Err(refusal.into()),
            outcome => Ok(outcome),
        }
    }

    /// After a command through this instance: a write drops the cached documents of its event,
    /// and a release spends the user's churn budget. A refusal changed nothing; an error may
    /// have, and the change feed will tell.
    pub(crate) async fn after_write(&self, result: &Result<Outcome, ApiError>, written: Written) {
        if matches!(result, Ok(Outcome::Refused(_)) | Err(_)) {
            return;
        }
        if let Some(event_id) = &written.event_id {
            self.read_cache().invalidate(event_id, "write").await;
        }
        if let Some(user) = &written.releaser {
            self.limits().note_release(user);
        }
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

/// What a command touches, taken before it is sent (the command moves into the request).
pub(crate) struct Written {
    event_id: Option<EventId>,
    /// The user, for a release.
    releaser: Option<UserId>,
}

impl Written {
    pub(crate) fn of(command: &Command) -> Written {
        let releaser = match command {
            Command::ReleaseHold { user, .. } => Some(user.clone()),
            _ => None,
        };
        Written { event_id: command.event_id().cloned(), releaser }
    }
}

/// The api's background tasks (see [`ApiState::start_background`]); dropping it stops them.
#[must_use = "dropping the guard stops the background tasks"]
pub struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
