//! The Elasticsearch backend (8.x), for deployments that outgrow one machine.
//!
//! Layout, for a prefix `p` (default `boxoffice-events`): concrete events indexes `p-v1`,
//! `p-v2`, … created from the index template `p-events` (pattern `p-*`); the alias `p`, which
//! every read and write goes through and which [`ElasticIndex::reindex`] moves atomically; and
//! `p-checkpoints`, one document per shard (`shard-{n}`), from its own higher-priority template.
//!
//! Versions: documents and checkpoints are written with `version_type: external`, so
//! Elasticsearch itself refuses (409) anything not newer than what it holds: replays, restarts
//! and concurrent indexers never regress a document or a checkpoint. Checkpoints are written
//! after the documents they cover, never atomically with them: a crash in between only replays.

pub(crate) mod body;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{StatusCode, Url};
use elasticsearch::indices::{
    IndicesCreateParts, IndicesGetAliasParts, IndicesPutIndexTemplateParts, IndicesRefreshParts,
};
use elasticsearch::{BulkParts, Elasticsearch, SearchParts};
use seams::{BoxFuture, SearchBackend, SearchError, SearchPage, SearchQuery};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::document::Document;
use crate::error::IndexError;
use crate::index::{Checkpoints, Index};
use crate::plan::Plan;
use body::{
    bulk_body, bulk_outcome, checkpoints_body, checkpoints_index, checkpoints_template, generation_of, index_template,
    parse_checkpoints, parse_search, reindex_body, search_body, swap_alias_body, versioned_index, BulkOutcome,
};

/// Attempts of one write (bulk, template, index creation, reindex) before the error goes to the
/// caller: waits of 0.1, 0.2, 0.4 and 0.8 s between them. The follower then retries on its own.
const WRITE_ATTEMPTS_MAX: u32 = 5;
/// Attempts of one search: a client is waiting, so one quick retry only.
const SEARCH_ATTEMPTS_MAX: u32 = 2;
const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);
/// Time one request may take, except a reindex.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a reindex may take: it copies the whole index before it answers.
const REINDEX_TIMEOUT: Duration = Duration::from_secs(3_600);
/// Error text kept from an answer, in bytes.
const DETAIL_LEN_MAX: usize = 1_000;

#[derive(Clone, Serialize, Deserialize)]
pub struct ElasticConfig {
    /// `http(s)://host:port` of a node or a load balancer in front of the cluster.
    pub url: String,
    /// Names every index, alias and template this backend creates.
    #[serde(default = "default_prefix")]
    pub index_prefix: String,
    /// An encoded API key (base64 of `id:key`, as Elasticsearch hands it out); wins over basic
    /// authentication.
    pub api_key: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

fn default_prefix() -> String {
    "boxoffice-events".into()
}

impl Default for ElasticConfig {
    fn default() -> Self {
        ElasticConfig {
            url: "http://127.0.0.1:9200".into(),
            index_prefix: default_prefix(),
            api_key: None,
            username: None,
            password: None,
        }
    }
}

/// Secrets masked: configuration is printed at start-up.
impl std::fmt::Debug for ElasticConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mask = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("ElasticConfig")
            .field("url", &self.url)
            .field("index_prefix", &self.index_prefix)
            .field("api_key", &mask(&self.api_key))
            .field("username", &self.username)
            .field("password", &mask(&self.password))
            .finish()
    }
}

impl ElasticConfig {
    fn credentials(&self) -> Result<Option<Credentials>, IndexError> {
        match (&self.api_key, &self.username, &self.password) {
            (Some(key), _, _) => Ok(Some(Credentials::EncodedApiKey(key.clone()))),
            (None, Some(user), Some(password)) => Ok(Some(Credentials::Basic(user.clone(), password.clone()))),
            (None, None, None) => Ok(None),
            _ => Err(IndexError::Config("`username` and `password` go together".into())),
        }
    }

    fn check_prefix(&self) -> Result<(), IndexError> {
        let p = &self.index_prefix;
        let valid = !p.is_empty()
            && p.len() <= 200
            && !p.starts_with(['-', '_', '+', '.'])
            && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(())
        } else {
            Err(IndexError::Config(format!("`{p}` is not a usable index name (lower-case letters, digits, - and _)")))
        }
    }
}

pub struct ElasticIndex {
    client: Elasticsearch,
    prefix: String,
    /// Reads and writes go through the alias, never a concrete index.
    alias: String,
    checkpoints_index: String,
}

impl ElasticIndex {
    /// Connects, installs the index templates, and creates the first events index and its
    /// alias if there is none yet. Asynchronous (unlike `EmbeddedIndex::open`) because it talks
    /// to the cluster; it fails if the cluster cannot be reached after a few retries.
    pub async fn connect(config: ElasticConfig) -> Result<Arc<ElasticIndex>, IndexError> {
        config.check_prefix()?;
        let url = Url::parse(&config.url).map_err(|e| IndexError::Config(format!("`{}`: {e}", config.url)))?;
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(REQUEST_TIMEOUT);
        if let Some(credentials) = config.credentials()? {
            transport = transport.auth(credentials);
        }
        let transport = transport.build().map_err(|e| IndexError::Config(e.to_string()))?;
        let prefix = config.index_prefix.clone();
        let index = ElasticIndex {
            client: Elasticsearch::new(transport),
            alias: prefix.clone(),
            checkpoints_index: checkpoints_index(&prefix),
            prefix,
        };
        index.install().await?;
        Ok(Arc::new(index))
    }

    /// Builds the next generation of the events index from the template as it is now (after a
    /// mapping change, say): creates `{prefix}-v{n+1}`, copies every document into it, moves the
    /// alias to it in one atomic step, and copies again what reached the old index in between.
    /// Searches and writes go on throughout. The old index is left for the operator to delete.
    /// Returns the new index's name.
    pub async fn reindex(&self) -> Result<String, IndexError> {
        self.install_templates().await?;
        let current = self
            .generation()
            .await?
            .ok_or_else(|| IndexError::Config(format!("alias `{}` does not exist: connect creates it", self.alias)))?;
        let old = versioned_index(&self.prefix, current);
        let new = versioned_index(&self.prefix, current + 1);
        self.create_index(&new, json!({})).await?;
        self.copy(&old, &new).await?;
        let swap = swap_alias_body(&self.alias, &old, &new);
        let api = self.client.indices();
        self.ok_json(self.send(WRITE_ATTEMPTS_MAX, || api.update_aliases().body(&swap).send()).await?).await?;
        // External versions make the second copy bring only what is newer than the first.
        self.copy(&old, &new).await?;
        tracing::info!(%old, %new, "reindexed; the old index can be deleted");
        Ok(new)
    }

    /// Makes every write so far searchable now, rather than within the refresh interval.
    pub async fn refresh(&self) -> Result<(), IndexError> {
        let indices = [self.alias.as_str(), self.checkpoints_index.as_str()];
        let api = self.client.indices();
        let response =
            self.send(WRITE_ATTEMPTS_MAX, || api.refresh(IndicesRefreshParts::Index(&indices)).send()).await?;
        self.ok_json(response).await.map(drop)
    }

    /// The index template as JSON (pattern `{prefix}-*`): settings, analyzer and mapping.
    pub fn index_template(prefix: &str) -> Value {
        index_template(prefix)
    }

    /// The bulk NDJSON body that indexes `docs` with external versions.
    pub fn bulk_body(docs: &[Document]) -> Result<String, IndexError> {
        bulk_body(docs)
    }

    /// The `_search` body for a query, as this backend sends it.
    pub fn search_body(query: &SearchQuery) -> Result<Value, SearchError> {
        Ok(search_body(&Plan::new(query)?))
    }

    /// Deletes every index and template of this prefix: tests only.
    #[cfg(test)]
    pub(crate) async fn delete_everything(&self) -> Result<(), IndexError> {
        use elasticsearch::indices::{IndicesDeleteIndexTemplateParts, IndicesDeleteParts};
        let generation = self.generation().await?.unwrap_or(0);
        let mut names: Vec<String> = (1..=generation).map(|g| versioned_index(&self.prefix, g)).collect();
        names.push(self.checkpoints_index.clone());
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let api = self.client.indices();
        let response = self
            .send(WRITE_ATTEMPTS_MAX, || api.delete(IndicesDeleteParts::Index(&names)).ignore_unavailable(true).send())
            .await?;
        self.ok_json(response).await?;
        for name in [format!("{}-events", self.prefix), self.checkpoints_index.clone()] {
            let response = self
                .send(WRITE_ATTEMPTS_MAX, || {
                    api.delete_index_template(IndicesDeleteIndexTemplateParts::Name(&name)).send()
                })
                .await?;
            self.ok_json(response).await?;
        }
        Ok(())
    }

    async fn install(&self) -> Result<(), IndexError> {
        self.install_templates().await?;
        self.create_index(&self.checkpoints_index, json!({})).await?;
        if self.generation().await?.is_none() {
            let first = versioned_index(&self.prefix, 1);
            // The index and its alias in one request: there is never one without the other.
            let aliases = json!({"aliases": {self.alias.as_str(): {"is_write_index": true}}});
            self.create_index(&first, aliases).await?;
            if self.generation().await?.is_none() {
                return Err(IndexError::Config(format!("`{first}` exists without the alias `{}`", self.alias)));
            }
        }
        Ok(())
    }

    async fn install_templates(&self) -> Result<(), IndexError> {
        let templates = [
            (format!("{}-events", self.prefix), index_template(&self.prefix)),
            (self.checkpoints_index.clone(), checkpoints_template(&self.prefix)),
        ];
        let api = self.client.indices();
        for (name, template) in &templates {
            let response = self
                .send(WRITE_ATTEMPTS_MAX, || {
                    api.put_index_template(IndicesPutIndexTemplateParts::Name(name)).body(template).send()
                })
                .await?;
            self.ok_json(response).await?;
        }
        Ok(())
    }

    /// Creates an index; one that already exists is fine.
    async fn create_index(&self, name: &str, body: Value) -> Result<(), IndexError> {
        let api = self.client.indices();
        let response =
            self.send(WRITE_ATTEMPTS_MAX, || api.create(IndicesCreateParts::Index(name)).body(&body).send()).await?;
        match self.ok_json(response).await {
            Err(IndexError::Rejected { status: 400, detail })
                if detail.contains("resource_already_exists_exception") =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// The generation the alias points at, or `None` if there is no alias yet.
    async fn generation(&self) -> Result<Option<u32>, IndexError> {
        let names = [self.alias.as_str()];
        let api = self.client.indices();
        let response =
            self.send(WRITE_ATTEMPTS_MAX, || api.get_alias(IndicesGetAliasParts::Name(&names)).send()).await?;
        if response.status_code() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let answer = self.ok_json(response).await?;
        let indexes = answer.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        let generations: Option<Vec<u32>> = indexes.iter().map(|name| generation_of(&self.prefix, name)).collect();
        match generations {
            Some(g) => Ok(g.into_iter().max()),
            None => Err(IndexError::Config(format!(
                "alias `{}` points at {indexes:?}, not made by the indexer",
                self.alias
            ))),
        }
    }

    async fn copy(&self, source: &str, dest: &str) -> Result<(), IndexError> {
        let body = reindex_body(source, dest);
        let response = self
            .send(WRITE_ATTEMPTS_MAX, || {
                self.client
                    .reindex()
                    .wait_for_completion(true)
                    .refresh(true)
                    .request_timeout(REINDEX_TIMEOUT)
                    .body(&body)
                    .send()
            })
            .await?;
        let answer = self.ok_json(response).await?;
        match answer.get("failures").and_then(Value::as_array) {
            Some(failures) if !failures.is_empty() => {
                Err(IndexError::Rejected { status: 200, detail: clip(Value::Array(failures.clone()).to_string()) })
            }
            _ => Ok(()),
        }
    }

    /// Sends one bulk body until every item is stored or refused for good.
    async fn bulk(&self, index: &str, body: &str, through_alias: bool) -> Result<(), IndexError> {
        let mut delay = RETRY_DELAY_MIN;
        let mut last = String::new();
        for attempt in 1..=WRITE_ATTEMPTS_MAX {
            let response = self
                .send(WRITE_ATTEMPTS_MAX, || {
                    let bulk = self.client.bulk(BulkParts::Index(index));
                    // Through the alias, a missing alias must fail rather than create an index.
                    let bulk = if through_alias { bulk.require_alias(true) } else { bulk };
                    bulk.body(vec![body]).send()
                })
                .await?;
            match bulk_outcome(&self.ok_json(response).await?) {
                BulkOutcome::Done => return Ok(()),
                BulkOutcome::Rejected { status, detail } => {
                    return Err(IndexError::Rejected { status, detail: clip(detail) })
                }
                BulkOutcome::Retry(reason) => last = reason,
            }
            if attempt < WRITE_ATTEMPTS_MAX {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_DELAY_MAX);
            }
        }
        Err(IndexError::Unavailable(format!("bulk items kept failing: {}", clip(last))))
    }

    /// Sends a request, again after a transport error, 429 or 5xx, up to `attempts` times with
    /// exponential backoff. Any other answer is returned as it is.
    async fn send<F, Fut>(&self, attempts: u32, call: F) -> Result<Response, IndexError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Response, elasticsearch::Error>>,
    {
        let mut delay = RETRY_DELAY_MIN;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match call().await {
                Ok(response) if !retryable(response.status_code()) => return Ok(response),
                Ok(response) => last = format!("answered {}", response.status_code()),
                Err(e) => last = e.to_string(),
            }
            if attempt < attempts {
                tracing::warn!(attempt, error = %last, "elasticsearch request failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_DELAY_MAX);
            }
        }
        Err(IndexError::Unavailable(last))
    }

    /// The answer's JSON if it is a success; its status and text otherwise.
    async fn ok_json(&self, response: Response) -> Result<Value, IndexError> {
        let status = response.status_code();
        if status.is_success() {
            return response
                .json::<Value>()
                .await
                .map_err(|e| IndexError::Unavailable(format!("reading an answer: {e}")));
        }
        let detail = response.text().await.unwrap_or_default();
        Err(IndexError::Rejected { status: status.as_u16(), detail: clip(detail) })
    }

    async fn write(&self, docs: Vec<Document>, checkpoints: Checkpoints) -> Result<(), IndexError> {
        if !docs.is_empty() {
            self.bulk(&self.alias, &bulk_body(&docs)?, true).await?;
        }
        // Only after the documents are stored: a checkpoint never covers a missing document.
        if !checkpoints.is_empty() {
            self.bulk(&self.checkpoints_index, &checkpoints_body(&checkpoints)?, false).await?;
        }
        Ok(())
    }

    async fn read_checkpoints(&self) -> Result<Checkpoints, IndexError> {
        // Checkpoints written within the last refresh interval must count too.
        let indices = [self.checkpoints_index.as_str()];
        let api = self.client.indices();
        let response =
            self.send(WRITE_ATTEMPTS_MAX, || api.refresh(IndicesRefreshParts::Index(&indices)).send()).await?;
        self.ok_json(response).await?;
        let body = json!({"size": raft_store::SHARDS_MAX, "query": {"match_all": {}}});
        let response = self
            .send(WRITE_ATTEMPTS_MAX, || self.client.search(SearchParts::Index(&indices)).body(&body).send())
            .await?;
        parse_checkpoints(&self.ok_json(response).await?)
    }

    async fn run_search(&self, plan: &Plan) -> Result<SearchPage, IndexError> {
        let body = search_body(plan);
        let indices = [self.alias.as_str()];
        let response = self
            .send(SEARCH_ATTEMPTS_MAX, || self.client.search(SearchParts::Index(&indices)).body(&body).send())
            .await?;
        parse_search(&self.ok_json(response).await?, plan)
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn clip(mut text: String) -> String {
    if text.len() > DETAIL_LEN_MAX {
        let mut end = DETAIL_LEN_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl SearchBackend for ElasticIndex {
    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<SearchPage, SearchError>> {
        Box::pin(async move {
            let plan = Plan::new(&query)?;
            if plan.matches_nothing() {
                return Ok(SearchPage { hits: Vec::new(), more: false });
            }
            Ok(self.run_search(&plan).await?)
        })
    }
}

impl Index for ElasticIndex {
    fn apply(&self, docs: Vec<Document>, checkpoints: Checkpoints) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(self.write(docs, checkpoints))
    }

    fn checkpoints(&self) -> BoxFuture<'_, Result<Checkpoints, IndexError>> {
        Box::pin(self.read_checkpoints())
    }
}
