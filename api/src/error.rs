//! The crate's one error type and its rendering as an RFC 9457 problem document.
//!
//! Every error the tier answers, axum's own rejections included, leaves through
//! [`ApiError::into_response`], so clients see one format with a machine-readable `code`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use raft_store::{HoldStatus, OrderStatus, Refusal};
use serde_json::{json, Map, Value};

use crate::words::{hold_status_str, order_status_str, time_json};
use seams::ClusterError;

/// Media type of every error body.
pub(crate) const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
/// Prefix of the problem `type` URI; the code completes it.
const PROBLEM_TYPE_PREFIX: &str = "urn:boxoffice:problem:";
/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_S: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request breaks what the OpenAPI document declares (a schema, a pattern, a bound).
    #[error("{0}")]
    BadRequest(String),
    /// The request meets the document but breaks a rule it cannot state: between fields, against
    /// another record (an event's prices and its venue's sections), or the clock. 422, code
    /// `bad_request`.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unauthorized(String),
    /// A webhook whose signature is missing, malformed, stale or wrong (400
    /// `invalid_signature`): nothing it says is acted on.
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Nothing is left to sell (409 `sold_out`).
    #[error("{0}")]
    SoldOut(String),
    /// A hold on a high-traffic event without a usable waiting-room token (403 `queue_required`).
    #[error("{0}")]
    QueueRequired(String),
    #[error("this method is not allowed on this resource")]
    MethodNotAllowed,
    #[error("the request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    /// A business refusal decided by the state machine.
    #[error("refused: {0:?}")]
    Refused(Refusal),
    /// The store cannot be reached now; the request may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// This instance is at a capacity limit (503 `unavailable`, with this detail); another
    /// instance, or this one a little later, can serve the request.
    #[error("{0}")]
    Overloaded(String),
    /// The request's body did not arrive within the request timeout (408, code `bad_request`:
    /// the client's request was incomplete).
    #[error("{0}")]
    RequestTimeout(String),
    /// An abuse limit refused the request (429); the client may retry after `retry_after_s`.
    #[error("{detail}")]
    RateLimited { detail: String, retry_after_s: u64 },
    /// A bug or a broken invariant; the message is logged, never sent.
    #[error("{0}")]
    Internal(String),
}

/// The internal message of a 5xx, attached to the response for the logging middleware.
#[derive(Clone, Debug)]
pub(crate) struct InternalDetail(pub String);

/// The parts of a problem document.
pub(crate) struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Problem { status, code, title, detail: detail.into(), extensions: Map::new() }
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.extensions.insert(key.to_owned(), value);
        self
    }

    /// The document as it is sent: the standard members first, then the extensions.
    fn document(&self) -> ProblemDocument<'_> {
        ProblemDocument {
            kind: format!("{PROBLEM_TYPE_PREFIX}{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            extensions: &self.extensions,
        }
    }

    #[cfg(test)]
    pub(crate) fn body(&self) -> Value {
        serde_json::to_value(self.document()).unwrap_or(Value::Null)
    }

    /// The document's JSON text.
    pub(crate) fn text(&self) -> String {
        // Strings, numbers and a map with string keys: nothing here can fail to serialize.
        serde_json::to_string(&self.document()).unwrap_or_default()
    }

    pub(crate) fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, self.text()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
            }
            _ => {}
        }
        response
    }

    /// A problem for a status that no handler chose (axum's own answers), by status alone.
    pub(crate) fn for_status(status: StatusCode) -> Problem {
        let (code, title) = match status.as_u16() {
            400 => ("bad_request", "Bad request"),
            401 => ("unauthorized", "Unauthorized"),
            403 => ("forbidden", "Forbidden"),
            404 => ("not_found", "Not found"),
            405 => ("method_not_allowed", "Method not allowed"),
            408 => ("bad_request", "Request timeout"),
            413 => ("payload_too_large", "Payload too large"),
            415 => ("bad_request", "Unsupported media type"),
            422 => ("bad_request", "Unprocessable request"),
            429 => ("rate_limited", "Too many requests"),
            503 => ("unavailable", "Service unavailable"),
            s if s < 500 => ("bad_request", "Bad request"),
            _ => ("internal", "Internal error"),
        };
        let detail = status.canonical_reason().unwrap_or(title);
        Problem::new(status, code, title, detail)
    }
}

/// A problem document's members, serialized straight from the [`Problem`] they describe.
#[derive(serde::Serialize)]
struct ProblemDocument<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: &'static str,
    #[serde(flatten)]
    extensions: &'a Map<String, Value>,
}

impl ApiError {
    /// An outcome or answer of the wrong kind: the store and the api disagree on the protocol.
    pub(crate) fn unexpected(what: impl std::fmt::Debug) -> ApiError {
        ApiError::Internal(format!("unexpected reply from the store: {what:?}"))
    }

    pub(crate) fn problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            ApiError::BadRequest(d) => Problem::new(S::BAD_REQUEST, "bad_request", "Bad request", d),
            ApiError::Unprocessable(d) => {
                Problem::new(S::UNPROCESSABLE_ENTITY, "bad_request", "Unprocessable request", d)
            }
            ApiError::Unauthorized(d) => Problem::new(S::UNAUTHORIZED, "unauthorized", "Unauthorized", d),
            ApiError::InvalidSignature(d) => Problem::new(S::BAD_REQUEST, "invalid_signature", "Invalid signature", d),
            ApiError::Forbidden(d) => Problem::new(S::FORBIDDEN, "forbidden", "Forbidden", d),
            ApiError::SoldOut(d) => Problem::new(S::CONFLICT, "sold_out", "Sold out", d),
            ApiError::QueueRequired(d) => Problem::new(S::FORBIDDEN, "queue_required", "Queue required", d),
            ApiError::NotFound(d) => Problem::new(S::NOT_FOUND, "not_found", "Not found", d),
            ApiError::MethodNotAllowed => {
                Problem::new(S::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed", self.to_string())
            }
            ApiError::PayloadTooLarge { .. } => {
                Problem::new(S::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large", self.to_string())
            }
            ApiError::Refused(refusal) => refusal_problem(refusal),
            ApiError::Unavailable(_) => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "the store is unavailable; retry shortly",
            ),
            ApiError::Overloaded(d) => Problem::new(S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", d),
            ApiError::RequestTimeout(d) => Problem::new(S::REQUEST_TIMEOUT, "bad_request", "Request timeout", d),
            ApiError::RateLimited { detail, retry_after_s } => {
                Problem::new(S::TOO_MANY_REQUESTS, "rate_limited", "Too many requests", detail)
                    .with("retry_after_s", json!(retry_after_s))
            }
            ApiError::Internal(_) => internal_problem(),
        }
    }
}

fn internal_problem() -> Problem {
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", "an internal error occurred")
}

fn refusal_problem(refusal: &Refusal) -> Problem {
    use StatusCode as S;
    match refusal {
        Refusal::NotFound { what } => Problem::new(S::NOT_FOUND, "not_found", "Not found", format!("{what} not found")),
        // The store sees only requests that met the document (the api checks it first), so what
        // it finds invalid is a rule the document cannot state: 422, like `Unprocessable`.
        Refusal::Invalid { detail } => {
            Problem::new(S::UNPROCESSABLE_ENTITY, "bad_request", "Unprocessable request", detail)
        }
        Refusal::Conflict { detail } => Problem::new(S::CONFLICT, "conflict", "Conflict", detail),
        Refusal::SeatsUnavailable { seats } => {
            Problem::new(S::CONFLICT, "seats_unavailable", "Seats unavailable", "some seats are not available")
                .with("unavailable", json!(seats))
        }
        Refusal::SoldOut { section, available } => Problem::new(
            S::CONFLICT,
            "sold_out",
            "Sold out",
            format!("section {section} has only {available} admissions left"),
        )
        .with("section", json!(section))
        .with("available", json!(available)),
        Refusal::LimitExceeded { limit, current, requested } => Problem::new(
            S::UNPROCESSABLE_ENTITY,
            "limit_exceeded",
            "Limit exceeded",
            format!("at most {limit} tickets per user; you have {current} and asked for {requested}"),
        )
        .with("limit", json!(limit))
        .with("current", json!(current))
        .with("requested", json!(requested)),
        Refusal::HeldSeatsExceeded { limit, current, requested } => Problem::new(
            S::UNPROCESSABLE_ENTITY,
            "limit_exceeded",
            "Limit exceeded",
            format!(
                "at most {limit} seats held at once per user for this event; you hold {current} and asked for \
                 {requested}: check out or release a hold first"
            ),
        )
        .with("limit", json!(limit))
        .with("current", json!(current))
        .with("requested", json!(requested)),
        Refusal::NotOnSale { on_sale_at_ms, starts_at_ms } => {
            let (on_sale_at, starts_at) = (time_json(*on_sale_at_ms), time_json(*starts_at_ms));
            Problem::new(
                S::FORBIDDEN,
                "not_on_sale",
                "Not on sale",
                format!("tickets are on sale from {on_sale_at} until the event starts at {starts_at}"),
            )
            .with("on_sale_at", json!(on_sale_at))
            .with("starts_at", json!(starts_at))
        }
        Refusal::InvalidTicketCode { reason } => {
            Problem::new(S::BAD_REQUEST, "invalid_ticket_code", "Invalid ticket code", reason)
        }
        Refusal::AlreadyCheckedIn { admitted_at_ms } => {
            let admitted_at = time_json(*admitted_at_ms);
            Problem::new(
                S::CONFLICT,
                "already_checked_in",
                "Already checked in",
                format!("this ticket was admitted at {admitted_at}"),
            )
            .with("admitted_at", json!(admitted_at))
        }
        Refusal::TicketCheckedIn => Problem::new(
            S::CONFLICT,
            "ticket_checked_in",
            "Ticket checked in",
            "a ticket that was admitted at the door cannot be transferred",
        ),
        Refusal::TicketNotTransferable { reason } => {
            Problem::new(S::CONFLICT, "ticket_not_transferable", "Ticket not transferable", reason)
        }
        Refusal::QueueRequired => Problem::new(
            S::FORBIDDEN,
            "queue_required",
            "Queue required",
            "this event sells through its waiting room: join the queue first",
        ),
        Refusal::AccessUsed => Problem::new(
            S::FORBIDDEN,
            "queue_required",
            "Queue required",
            "this waiting-room access token has already bought a hold: join the queue again",
        ),
        Refusal::HoldExpired => Problem::new(S::CONFLICT, "hold_expired", "Hold expired", "the hold has expired"),
        Refusal::HoldNotActive { status } => hold_not_active(*status),
        Refusal::OrderNotCancellable { status, reason } => order_not_cancellable(*status, reason),
        Refusal::IdempotencyKeyReused => Problem::new(
            S::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Idempotency key reused",
            "this Idempotency-Key was used with another request",
        ),
        // The api routed a command to a group that does not own it: a bug on this side, logged
        // through `InternalDetail`.
        Refusal::WrongGroup => internal_problem(),
    }
}

fn hold_not_active(status: HoldStatus) -> Problem {
    let status = hold_status_str(status);
    // `status` is the HTTP status in a problem document, so the hold's goes by another name.
    Problem::new(StatusCode::CONFLICT, "hold_not_active", "Hold not active", format!("the hold is {status}"))
        .with("hold_status", json!(status))
}

fn order_not_cancellable(status: OrderStatus, reason: &str) -> Problem {
    let status = order_status_str(status);
    Problem::new(StatusCode::CONFLICT, "order_not_cancellable", "Order not cancellable", reason)
        .with("order_status", json!(status))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.problem().into_response();
        if let ApiError::RateLimited { retry_after_s, .. } = &self {
            // Whole seconds, at least one (RFC 9110 `delay-seconds`).
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from((*retry_after_s).max(1)));
        }
        let detail = match &self {
            ApiError::Internal(detail) | ApiError::Unavailable(detail) => Some(detail.clone()),
            ApiError::Refused(Refusal::WrongGroup) => Some("a command reached a group that does not own it".into()),
            _ => None,
        };
        if let Some(detail) = detail {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        response
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::Refused(refusal)
    }
}

impl From<ClusterError> for ApiError {
    fn from(error: ClusterError) -> Self {
        match error {
            ClusterError::Unavailable(detail) => ApiError::Unavailable(detail),
            ClusterError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

/// Whether an error (or one it wraps) is the request deadline's (the edge's timeout layer), so
/// that a body cut off by it answers 408, not 400.
pub(crate) fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        next = e.source();
    }
    false
}
