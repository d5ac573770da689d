//! The Elasticsearch backend (8.x), for deployments that outgrow one machine.
//!
//! Layout, for a prefix `p` (default `boxoffice-events`): concrete events indexes `p-v1`,
//! `p-v2`, … created from the index template `p-events` (pattern `p-*`); the alias `p`, which
//! every read and write goes through and which [`ElasticIndex::reindex`] moves atomically; and
//! `p-checkpoints`, one document per shard (`shard-{n}`), from its own higher-priority template.
//!
//! Two roles, two types, two sets of privileges (README, "Search"): [`ElasticIndex`] is the
//! indexer's (and `boxoffice search reindex`'s) — it installs the templates, creates the indexes
//! and the alias, writes, and moves the alias; [`ElasticSearch`] is the api's — it only searches
//! the alias, so the api's key needs nothing but `read` on it.
//!
//! Versions: documents and checkpoints are written with `version_type: external`, so
//! Elasticsearch itself refuses (409) anything not newer than what it holds: replays, restarts
//! and concurrent indexers never regress a document or a checkpoint. Checkpoints are written
//! after the documents they cover, never atomically with them: a crash in between only replays.

pub(crate) mod body;
mod client;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::http::StatusCode;
use elasticsearch::indices::{
    IndicesCreateParts, IndicesGetAliasParts, IndicesPutIndexTemplateParts, IndicesRefreshParts,
};
use elasticsearch::{BulkParts, SearchParts};
use seams::{BoxFuture, SearchBackend, SearchError, SearchPage, SearchQuery};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::document::Document;
use crate::error::IndexError;
use crate::index::{Checkpoints, Index};
use crate::plan::Plan;
use body::{
    bulk_body, bulk_outcome, checkpoints_body, checkpoints_index, checkpoints_template, generation_of, index_template,
    parse_checkpoints, reindex_body, search_body, swap_alias_body, versioned_index, BulkOutcome,
};
use client::{clip, Client, RETRY_DELAY_MAX, RETRY_DELAY_MIN, WRITE_ATTEMPTS_MAX};

/// Time a reindex may take: it copies the whole index before it answers.
const REINDEX_TIMEOUT: Duration = Duration::from_secs(3_600);

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
    /// A PEM file of certificate authorities to trust for the cluster's HTTPS certificate, beside
    /// the public roots: a self-managed Elasticsearch 8 makes its own CA on first start
    /// (`config/certs/http_ca.crt`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
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
            ca_file: None,
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
            .field("ca_file", &self.ca_file)
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

/// The indexer's side: installs the templates, creates the indexes and the alias, writes
/// documents and checkpoints, reindexes. Its key needs the privileges of `boxoffice_indexer`
/// (README, "Search").
pub struct ElasticIndex {
    client: Client,
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
        let prefix = config.index_prefix.clone();
        let index = ElasticIndex {
            client: Client::new(&config)?,
            alias: prefix.clone(),
            checkpoints_index: checkpoints_index(&prefix),
            prefix,
        };
        index.install().await?;
        Ok(Arc::new(index))
    }

    /// Builds the next generation of the events index from the template as it is now (after a
    /// mapping change, say): creates `{prefix}-v{n+1}`, copies every document into it, moves the
    /// alias to it in one atomic step, refreshes the old index, and copies again what reached it
    /// in between. Searches and writes go on throughout. The old index is left for the operator
    /// to delete. Returns the new index's name.
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
        let api = self.client.es.indices();
        let swapped = self.client.send(WRITE_ATTEMPTS_MAX, || api.update_aliases().body(&swap).send()).await?;
        self.client.ok_json(swapped).await?;
        // A copy reads what a refresh has made visible. Writes that reached the old index during
        // the first copy, up to the moment of the swap, may not be yet (up to the refresh
        // interval): without this refresh the second copy would miss them, and they would be
        // lost from the new index. No new writes reach the old index after the swap.
        self.refresh_indices(&[old.as_str()]).await?;
        // External versions make the second copy bring only what is newer than the first.
        self.copy(&old, &new).await?;
        tracing::info!(%old, %new, "reindexed; the old index can be deleted");
        Ok(new)
    }

    /// Makes every write so far searchable now, rather than within the refresh interval.
    pub async fn refresh(&self) -> Result<(), IndexError> {
        self.refresh_indices(&[self.alias.as_str(), self.checkpoints_index.as_str()]).await
    }

    async fn refresh_indices(&self, indices: &[&str]) -> Result<(), IndexError> {
        let api = self.client.es.indices();
        let response =
            self.client.send(WRITE_ATTEMPTS_MAX, || api.refresh(IndicesRefreshParts::Index(indices)).send()).await?;
        self.client.ok_json(response).await.map(drop)
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
        let api = self.client.es.indices();
        let response = self
            .client
            .send(WRITE_ATTEMPTS_MAX, || api.delete(IndicesDeleteParts::Index(&names)).ignore_unavailable(true).send())
            .await?;
        self.client.ok_json(response).await?;
        for name in [format!("{}-events", self.prefix), self.checkpoints_index.clone()] {
            let response = self
                .client
                .send(WRITE_ATTEMPTS_MAX, || {
                    api.delete_index_template(IndicesDeleteIndexTemplateParts::Name(&name)).send()
                })
                .await?;
            self.client.ok_json(response).await?;
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
        let api = self.client.es.indices();
        for (name, template) in &templates {
            let response = self
                .client
                .send(WRITE_ATTEMPTS_MAX, || {
                    api.put_index_template(IndicesPutIndexTemplateParts::Name(name)).body(template).send()
                })
                .await?;
            self.client.ok_json(response).await?;
        }
        Ok(())
    }

    /// Creates an index; one that already exists is fine.
    async fn create_index(&self, name: &str, body: Value) -> Result<(), IndexError> {
        let api = self.client.es.indices();
        let response = self
            .client
            .send(WRITE_ATTEMPTS_MAX, || api.create(IndicesCreateParts::Index(name)).body(&body).send())
            .await?;
        match self.client.ok_json(response).await {
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
        let api = self.client.es.indices();
        let response =
            self.client.send(WRITE_ATTEMPTS_MAX, || api.get_alias(IndicesGetAliasParts::Name(&names)).send()).await?;
        if response.status_code() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let answer = self.client.ok_json(response).await?;
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
            .client
            .send(WRITE_ATTEMPTS_MAX, || {
                self.client
                    .es
                    .reindex()
                    .wait_for_completion(true)
                    .refresh(true)
                    .request_timeout(REINDEX_TIMEOUT)
                    .body(&body)
                    .send()
            })
            .await?;
        let answer = self.client.ok_json(response).await?;
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
                .client
                .send(WRITE_ATTEMPTS_MAX, || {
                    let bulk = self.client.es.bulk(BulkParts::Index(index));
                    // Through the alias, a missing alias must fail rather than create an index.
                    let bulk = if through_alias { bulk.require_alias(true) } else { bulk };
                    bulk.body(vec![body]).send()
                })
                .await?;
            match bulk_outcome(&self.client.ok_json(response).await?) {
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
        let api = self.client.es.indices();
        let response =
            self.client.send(WRITE_ATTEMPTS_MAX, || api.refresh(IndicesRefreshParts::Index(&indices)).send()).await?;
        self.client.ok_json(response).await?;
        let body = json!({"size": raft_store::SHARDS_MAX, "query": {"match_all": {}}});
        let response = self
            .client
            .send(WRITE_ATTEMPTS_MAX, || self.client.es.search(SearchParts::Index(&indices)).body(&body).send())
            .await?;
        parse_checkpoints(&self.client.ok_json(response).await?)
    }
}

impl SearchBackend for ElasticIndex {
    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<SearchPage, SearchError>> {
        Box::pin(search_alias(&self.client, &self.alias, query))
    }
}

/// The api's side: searches the alias and nothing else. It creates nothing, so its key needs
/// only `read` on the alias (README, "Search"); the indexer makes the alias.
pub struct ElasticSearch {
    client: Client,
    alias: String,
}

impl ElasticSearch {
    /// Checks the configuration and asks the alias for an empty page once. A key that may not
    /// search (401, 403) fails here, at start-up; a cluster that cannot be reached, or an alias
    /// the indexer has not made yet, is only logged: the api serves everything else meanwhile,
    /// and searches answer 503 until it can.
    pub async fn connect(config: ElasticConfig) -> Result<Arc<ElasticSearch>, IndexError> {
        config.check_prefix()?;
        let search = ElasticSearch { client: Client::new(&config)?, alias: config.index_prefix.clone() };
        match search.probe().await {
            Ok(()) => {}
            Err(IndexError::Rejected { status: status @ (401 | 403), detail }) => {
                return Err(IndexError::Config(format!(
                    "elasticsearch refused this key a search of `{}` ({status}): {detail}",
                    search.alias
                )))
            }
            Err(e) => tracing::warn!(alias = %search.alias, error = %e, "elasticsearch cannot be searched yet"),
        }
        Ok(Arc::new(search))
    }

    /// An empty page of the alias: the one kind of request the api's key is allowed.
    async fn probe(&self) -> Result<(), IndexError> {
        let indices = [self.alias.as_str()];
        let body = json!({"size": 0, "track_total_hits": false, "query": {"match_none": {}}});
        let response =
            self.client.send(1, || self.client.es.search(SearchParts::Index(&indices)).body(&body).send()).await?;
        self.client.ok_json(response).await.map(drop)
    }
}

impl SearchBackend for ElasticSearch {
    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<SearchPage, SearchError>> {
        Box::pin(search_alias(&self.client, &self.alias, query))
    }
}

async fn search_alias(client: &Client, alias: &str, query: SearchQuery) -> Result<SearchPage, SearchError> {
    let plan = Plan::new(&query)?;
    if plan.matches_nothing() {
        return Ok(SearchPage { hits: Vec::new(), more: false });
    }
    Ok(client.search(alias, &plan).await?)
}

impl Index for ElasticIndex {
    fn apply(&self, docs: Vec<Document>, checkpoints: Checkpoints) -> BoxFuture<'_, Result<(), IndexError>> {
        Box::pin(self.write(docs, checkpoints))
    }

    fn checkpoints(&self) -> BoxFuture<'_, Result<Checkpoints, IndexError>> {
        Box::pin(self.read_checkpoints())
    }
}
