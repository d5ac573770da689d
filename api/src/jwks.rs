//! An OIDC issuer's signing keys: fetched from its JSON Web Key Set, cached by key id, and
//! fetched again on a timer and when a token names a key not seen yet (rotation), at most once
//! every [`REFRESH_MIN_INTERVAL`] so a flood of unknown key ids cannot turn into a flood of
//! fetches.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::time::Instant;

use crate::config::OidcConfig;

/// How often the key set is fetched again while nothing asks for a new key.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The shortest time between two fetches, whatever asks for them (shorter in unit tests, which
/// rotate keys and wait it out).
pub(crate) const REFRESH_MIN_INTERVAL: Duration =
    if cfg!(test) { Duration::from_secs(1) } else { Duration::from_secs(5) };
/// How long one fetch (discovery and key set) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set accepted, in bytes.
const JWKS_BYTES_MAX: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum JwksError {
    #[error("fetching {url}: {source}")]
    Fetch { url: String, source: reqwest::Error },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {reason}")]
    Invalid { url: String, reason: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("the HTTP client: {0}")]
    Client(reqwest::Error),
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// A verification key and the one algorithm it may verify.
#[derive(Clone)]
pub(crate) struct Key {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

pub(crate) struct Jwks {
    config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// Held while fetching; records when the last fetch started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    pub(crate) fn new(config: OidcConfig) -> Result<Jwks, JwksError> {
        let tls = crate::tls::client_config(config.ca_file.as_deref())?;
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .use_preconfigured_tls(tls)
            .build()
            .map_err(JwksError::Client)?;
        Ok(Jwks { config, http, keys: RwLock::default(), fetching: tokio::sync::Mutex::new(None) })
    }

    pub(crate) fn config(&self) -> &OidcConfig {
        &self.config
    }

    fn cached(&self, kid: &str) -> Option<Key> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).get(kid).cloned()
    }

    /// The key `kid`: from the cache, or after one fetch if it is not there and the last fetch
    /// is old enough.
    pub(crate) async fn key(&self, kid: &str) -> Option<Key> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if let Err(e) = self.refresh(false).await {
            tracing::warn!(error = %e, "the identity provider's keys could not be fetched");
        }
        self.cached(kid)
    }

    /// Fetches the key set again; unless `force`, not if the last fetch started less than
    /// [`REFRESH_MIN_INTERVAL`] ago. Concurrent callers share one fetch.
    pub(crate) async fn refresh(&self, force: bool) -> Result<(), JwksError> {
        let mut last = self.fetching.lock().await;
        if !force && last.is_some_and(|at| at.elapsed() < REFRESH_MIN_INTERVAL) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let keys = self.fetch().await?;
        metrics::counter!("api_jwks_fetches_total").increment(1);
        tracing::debug!(keys = keys.len(), "identity provider keys fetched");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, JwksError> {
        let jwks_url = match &self.config.jwks_url {
            Some(url) => url.clone(),
            None => self.discover().await?,
        };
        let bytes = self.get(&jwks_url).await?;
        let set: JwkSet = serde_json::from_slice(&bytes)
            .map_err(|e| JwksError::Invalid { url: jwks_url.clone(), reason: e.to_string() })?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            let Some(algorithm) = algorithm_of(jwk) else { continue };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, Key { key, algorithm });
                }
                Err(e) => tracing::warn!(kid, error = %e, "a published key is not usable"),
            }
        }
        Ok(keys)
    }

    /// The key set's address from the issuer's discovery document, which must name the issuer.
    async fn discover(&self) -> Result<String, JwksError> {
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let bytes = self.get(&url).await?;
        let discovery: Discovery = serde_json::from_slice(&bytes)
            .map_err(|e| JwksError::Invalid { url: url.clone(), reason: e.to_string() })?;
        if discovery.issuer != self.config.issuer {
            let reason = format!("the document names issuer {:?}", discovery.issuer);
            return Err(JwksError::Invalid { url, reason });
        }
        Ok(discovery.jwks_uri)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        let fetch = |source| JwksError::Fetch { url: url.to_owned(), source };
        let response = self.http.get(url).send().await.map_err(fetch)?;
        if !response.status().is_success() {
            return Err(JwksError::Status { url: url.to_owned(), status: response.status().as_u16() });
        }
        if response.content_length().is_some_and(|n| n > JWKS_BYTES_MAX as u64) {
            return Err(JwksError::Invalid { url: url.to_owned(), reason: "larger than a key set should be".into() });
        }
        let bytes = response.bytes().await.map_err(fetch)?;
        if bytes.len() > JWKS_BYTES_MAX {
            return Err(JwksError::Invalid { url: url.to_owned(), reason: "larger than a key set should be".into() });
        }
        Ok(bytes.to_vec())
    }
}

/// The algorithm a published key is for: its `alg` if given, else the usual one of its type.
/// Only the asymmetric algorithms of OIDC issuers; a symmetric key published in a key set is
/// ignored (it would let anyone who reads the set sign tokens).
fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm.and_then(|a| match a {
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::RS384 => Some(Algorithm::RS384),
        KeyAlgorithm::RS512 => Some(Algorithm::RS512),
        KeyAlgorithm::PS256 => Some(Algorithm::PS256),
        KeyAlgorithm::PS384 => Some(Algorithm::PS384),
        KeyAlgorithm::PS512 => Some(Algorithm::PS512),
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::ES384 => Some(Algorithm::ES384),
        KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
        _ => None,
    });
    if declared.is_some() {
        return declared;
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Some(Algorithm::ES256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => Some(Algorithm::ES384),
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        _ => None,
    }
}
