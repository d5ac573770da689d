//! The connection both Elasticsearch roles share: the transport (URL, credentials, the trusted
//! CA), retries with backoff, answers read as JSON or as errors, and the one search request.

use std::future::Future;
use std::time::Duration;

use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{StatusCode, Url};
use elasticsearch::{Elasticsearch, SearchParts};
use seams::SearchPage;
use serde_json::Value;

use super::body::{parse_search, search_body, SearchAnswer};
use super::ElasticConfig;
use crate::error::IndexError;
use crate::plan::Plan;

/// Attempts of one write (bulk, template, index creation, reindex) before the error goes to the
/// caller: waits of 0.1, 0.2, 0.4 and 0.8 s between them. The follower then retries on its own.
pub(crate) const WRITE_ATTEMPTS_MAX: u32 = 5;
/// Attempts of one search: a client is waiting, so one quick retry only.
const SEARCH_ATTEMPTS_MAX: u32 = 2;
pub(crate) const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
pub(crate) const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);
/// Time one request may take, except a reindex.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Error text kept from an answer, in bytes.
const DETAIL_LEN_MAX: usize = 1_000;
/// Largest CA file read, in bytes: a bundle of a few hundred certificates.
const CA_FILE_BYTES_MAX: u64 = 1 << 20;

/// A client of one cluster (one URL), authenticated, trusting the configured CA.
pub(crate) struct Client {
    pub(crate) es: Elasticsearch,
}

impl Client {
    pub(crate) fn new(config: &ElasticConfig) -> Result<Client, IndexError> {
        let url = Url::parse(&config.url).map_err(|e| IndexError::Config(format!("`{}`: {e}", config.url)))?;
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(REQUEST_TIMEOUT);
        if let Some(credentials) = config.credentials()? {
            transport = transport.auth(credentials);
        }
        if let Some(path) = &config.ca_file {
            // `Full`: the chain and the host name are verified as usual, with this CA trusted
            // beside the public roots (reqwest's rustls keeps its built-in webpki roots).
            transport = transport.cert_validation(CertificateValidation::Full(read_ca(path)?));
        }
        let transport = transport.build().map_err(|e| IndexError::Config(e.to_string()))?;
        Ok(Client { es: Elasticsearch::new(transport) })
    }

    /// Sends a request, again after a transport error, 429 or 5xx, up to `attempts` times with
    /// exponential backoff. Any other answer is returned as it is.
    pub(crate) async fn send<F, Fut>(&self, attempts: u32, call: F) -> Result<Response, IndexError>
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
    pub(crate) async fn ok_json(&self, response: Response) -> Result<Value, IndexError> {
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

    /// One page of a search through `alias`. An answer missing some shards is an error, never a
    /// short page: the page would be served as the whole truth, and its cursor would skip what
    /// the missing shards hold. A 400 is a query Elasticsearch cannot answer as asked.
    pub(crate) async fn search(&self, alias: &str, plan: &Plan) -> Result<SearchPage, IndexError> {
        let body = search_body(plan);
        let indices = [alias];
        let response =
            self.send(SEARCH_ATTEMPTS_MAX, || self.es.search(SearchParts::Index(&indices)).body(&body).send()).await?;
        let answer = match self.ok_json(response).await {
            Ok(answer) => answer,
            Err(IndexError::Rejected { status: 400, detail }) => {
                metrics::counter!("boxoffice_elasticsearch_rejected_searches_total").increment(1);
                tracing::warn!(%detail, "elasticsearch refused a search as malformed (400)");
                return Err(IndexError::Rejected { status: 400, detail });
            }
            Err(e) => return Err(e),
        };
        match parse_search(&answer, plan)? {
            SearchAnswer::Complete(page) => Ok(page),
            SearchAnswer::Partial { failed, total, timed_out, reason } => {
                metrics::counter!("boxoffice_elasticsearch_partial_results_total").increment(1);
                tracing::warn!(failed, total, timed_out, %reason, "elasticsearch answered a search from some shards only");
                Err(IndexError::Partial { failed, total, timed_out, reason: clip(reason) })
            }
        }
    }
}

/// The PEM certificates of `path`; an unreadable file or one without a certificate is a
/// configuration error at start-up, not a TLS failure on the first request.
fn read_ca(path: &std::path::Path) -> Result<Certificate, IndexError> {
    let shown = path.display();
    let bad = |e: &dyn std::fmt::Display| IndexError::Config(format!("elasticsearch CA file `{shown}`: {e}"));
    let length = std::fs::metadata(path).map_err(|e| bad(&e))?.len();
    if length > CA_FILE_BYTES_MAX {
        return Err(bad(&format!("{length} bytes, more than {CA_FILE_BYTES_MAX}")));
    }
    let pem = std::fs::read(path).map_err(|e| bad(&e))?;
    Certificate::from_pem(&pem).map_err(|e| bad(&e))
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

pub(crate) fn clip(mut text: String) -> String {
    if text.len() > DETAIL_LEN_MAX {
        let mut end = DETAIL_LEN_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
