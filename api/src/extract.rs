//! Extractors that answer bad input in the problem format: the caller from the bearer token,
//! ids from the path, query parameters, and write bodies with their idempotency identity.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use futures_util::StreamExt;
use raft_store::{Actor, EventId, HoldId, OrderId, RequestId, TicketId, UserId, VenueId, WebhookId};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::identity::{self, IdKind, IdempotencyKey, IDEMPOTENCY_KEY_HEADER};
use crate::state::ApiState;
use crate::token::Role;

/// The user a request acts for, from a valid bearer token.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub user: UserId,
    pub role: Role,
}

impl Caller {
    pub(crate) fn actor(&self) -> Actor {
        Actor { user: self.user.clone(), admin: self.role == Role::Admin }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let caller = caller_of(parts, state).await?;
        if caller.role == Role::Scanner {
            return Err(ApiError::Forbidden("a scanner's token only checks tickets in".into()));
        }
        Ok(caller)
    }
}

/// The caller the rate-limit layer verified (it leaves it in the extensions), or the bearer
/// token's, verified here.
async fn caller_of(parts: &Parts, state: &ApiState) -> Result<Caller, ApiError> {
    if let Some(caller) = parts.extensions.get::<Caller>() {
        return Ok(caller.clone());
    }
    let (user, role) = state.tokens().verify(bearer_token(&parts.headers)?).await?;
    Ok(Caller { user, role })
}

pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("this request needs an `Authorization: Bearer <token>` header".into()))?;
    let text = value.to_str().map_err(|_| ApiError::Unauthorized("the Authorization header is malformed".into()))?;
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())),
    }
}

/// Who is asking, as far as is known without requiring anything: the client's address (absent
/// when the router is called without a connection, as in tests) and the user of a valid bearer
/// token (absent without one; an invalid one is not an error here, the route being open).
#[derive(Clone, Debug)]
pub(crate) struct Client {
    pub address: Option<std::net::IpAddr>,
    pub user: Option<UserId>,
}

impl FromRequestParts<ApiState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let address = client_address(parts);
        let user = caller_of(parts, state).await.ok().map(|c| c.user);
        Ok(Client { address, user })
    }
}

/// The client's address, from the connection (see `edge/`).
pub(crate) fn client_address(parts: &Parts) -> Option<std::net::IpAddr> {
    parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.ip())
}

/// The client's address alone, when known.
pub(crate) struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_address(parts)))
    }
}

/// A caller with the `admin` role; any other valid caller gets 403.
#[derive(Clone, Debug)]
pub(crate) struct Admin(pub Caller);

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.role != Role::Admin {
            return Err(ApiError::Forbidden("this request needs the admin role".into()));
        }
        Ok(Admin(caller))
    }
}

/// A caller who may check tickets in: the `scanner` role, or `admin`.
#[derive(Clone, Debug)]
pub(crate) struct Scanner(pub Caller);

impl FromRequestParts<ApiState> for Scanner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let caller = caller_of(parts, state).await?;
        if !matches!(caller.role, Role::Scanner | Role::Admin) {
            return Err(ApiError::Forbidden("checking tickets in needs the scanner or admin role".into()));
        }
        Ok(Scanner(caller))
    }
}

impl PathId for TicketId {
    const WHAT: &'static str = "ticket";
    fn parse_id(s: &str) -> Option<Self> {
        TicketId::parse(s)
    }
}

/// An id taken from the path.
pub(crate) trait PathId: Sized {
    /// What the id names, for the 404's detail.
    const WHAT: &'static str;
    fn parse_id(s: &str) -> Option<Self>;
}

impl PathId for EventId {
    const WHAT: &'static str = "event";
    fn parse_id(s: &str) -> Option<Self> {
        EventId::parse(s)
    }
}

impl PathId for VenueId {
    const WHAT: &'static str = "venue";
    fn parse_id(s: &str) -> Option<Self> {
        VenueId::parse(s)
    }
}

impl PathId for HoldId {
    const WHAT: &'static str = "hold";
    fn parse_id(s: &str) -> Option<Self> {
        HoldId::parse(s)
    }
}

impl PathId for WebhookId {
    const WHAT: &'static str = "webhook";
    fn parse_id(s: &str) -> Option<Self> {
        WebhookId::parse(s)
    }
}

impl PathId for OrderId {
    const WHAT: &'static str = "order";
    fn parse_id(s: &str) -> Option<Self> {
        OrderId::parse(s)
    }
}

/// The route's one path id. An id that does not parse names nothing: 404, not 400, so clients
/// cannot tell a malformed id from an unknown one.
pub(crate) struct IdPath<T>(pub T);

impl<T: PathId, S: Send + Sync> FromRequestParts<S> for IdPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || ApiError::NotFound(format!("no {} has this id", T::WHAT));
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        T::parse_id(&raw).map(IdPath).ok_or_else(not_found)
    }
}

/// Query parameters; unknown ones are ignored, malformed ones answer 400.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// A write's JSON body with its idempotency identity.
///
/// The body is read whatever the Content-Type says (clients get that wrong more often than the
/// JSON), bounded by the configured limit; an empty body reads as `{}`. Unknown fields are
/// ignored.
pub(crate) struct Posted<T> {
    pub body: T,
    key: Option<IdempotencyKey>,
    fingerprint: u64,
}

impl<T> Posted<T> {
    /// The request id under which the store remembers this write's outcome.
    pub(crate) fn request_id(&self, user: &UserId) -> RequestId {
        identity::request_id(user, self.key.as_ref())
    }

    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Whether the client sent an `Idempotency-Key`: then an outcome may be a remembered one.
    pub(crate) fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The bits of a new venue, event or webhook id, stable across retries with the same key.
    pub(crate) fn new_id_bits(&self, kind: IdKind, user: &UserId) -> u64 {
        identity::new_id_bits(kind, user, self.key.as_ref())
    }
}

impl<T: DeserializeOwned> FromRequest<ApiState> for Posted<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let key = parts.headers.get(IDEMPOTENCY_KEY_HEADER).map(|v| IdempotencyKey::parse(v.as_bytes())).transpose()?;
        let bytes = read_body(body, &parts.headers, state.config().body_limit_bytes).await?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        let parsed: T = match serde_json::from_slice(text) {
            Ok(parsed) => parsed,
            // Syntax first, so malformed JSON is reported as such before any type mismatch.
            Err(e) => return Err(json_error(&serde_json::from_slice::<Value>(text).err().unwrap_or(e))),
        };
        // Only a keyed request can come again with another body, which the fingerprint tells;
        // without a key the request id is random and the fingerprint unused.
        let fingerprint = match &key {
            Some(_) => {
                let value: Value = serde_json::from_slice(text).map_err(|e| json_error(&e))?;
                identity::fingerprint(parts.method.as_str(), parts.uri.path(), &value)
            }
            None => 0,
        };
        Ok(Posted { body: parsed, key, fingerprint })
    }
}

fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::BadRequest(format!("the request body does not fit this endpoint: {e}")),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
        }
    }
}

/// Reads at most `limit_bytes` of the body: 413 beyond, checked on the declared length first so
/// an oversized upload is refused before it is read.
pub(crate) async fn read_body(body: Body, headers: &HeaderMap, limit_bytes: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::PayloadTooLarge { limit_bytes };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit_bytes as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if crate::error::is_timeout(&e) {
                return ApiError::RequestTimeout("the request body did not arrive within the request timeout".into());
            }
            ApiError::BadRequest(format!("the request body could not be read: {e}"))
        })?;
        if buf.len() + chunk.len() > limit_bytes {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// The caller of a request with a valid bearer token; `None` for a request without one, or with
/// one that does not verify (the middleware treats it as anonymous; handlers that need a token
/// answer 401 themselves).
pub(crate) async fn verified_caller(headers: &HeaderMap, tokens: &crate::token::TokenVerifier) -> Option<Caller> {
    let (user, role) = tokens.verify(bearer_token(headers).ok()?).await.ok()?;
    Some(Caller { user, role })
}
