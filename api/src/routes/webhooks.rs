//! `/v1/webhooks`: the outgoing webhook endpoints admins register for order and ticket events.
//! The meta group keeps them (`raft_store::Webhook`); the dispatcher beside the indexer delivers
//! to them from the change feed (`indexer::webhooks`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use raft_store::{check_webhook_url, Answer, Command, GroupId, Outcome, Query, WebhookId};
use seams::Consistency;

use crate::dto::{Page, ProblemJson, WebhookBody, WebhookCreatedJson, WebhookJson};
use crate::error::ApiError;
use crate::extract::{Admin, IdPath, Posted};
use crate::identity::{self, IdKind};
use crate::state::ApiState;

/// Bytes of randomness in a signing secret.
const SECRET_RANDOM_BYTES: usize = 32;

/// A new signing secret: `whsec_` and 32 random bytes in base64url.
fn new_secret() -> String {
    let bytes: [u8; SECRET_RANDOM_BYTES] = rand::random();
    format!("whsec_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Registers an endpoint for order and ticket events. Each delivery is a POST of
/// `{"id", "type", "created", "data"}` signed in `Boxoffice-Signature` with the secret this
/// answer shows (once). With an `Idempotency-Key`, the webhook id derives from it, so a retry
/// answers the same endpoint and secret instead of registering a second.
#[utoipa::path(
    post, path = "/v1/webhooks", operation_id = "create_webhook", tag = "webhooks",
    request_body = WebhookBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 201, body = WebhookCreatedJson),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, body = ProblemJson, content_type = "application/problem+json"),
        (status = 409, description = "conflict: the Idempotency-Key's endpoint exists with another URL or events (a retry past its 24 hours)", body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "The URL's host or port is not valid, `http://` to a host that is not loopback, 100 endpoints exist already, or idempotency_key_reused", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    posted: Posted<WebhookBody>,
) -> Result<(StatusCode, Json<WebhookCreatedJson>), ApiError> {
    let events = posted.body.checked_events()?;
    check_webhook_url(&posted.body.url).map_err(ApiError::Unprocessable)?;
    let webhook_id = WebhookId::from_u64(posted.new_id_bits(IdKind::Webhook, &caller.user));
    let (request_id, fingerprint) = (posted.request_id(&caller.user), posted.fingerprint());
    let command = Command::RegisterWebhook {
        webhook_id,
        url: posted.body.url,
        events,
        secret: new_secret(),
        created_by: caller.user,
    };
    match state.submit(command, request_id, fingerprint).await? {
        Outcome::Webhook(webhook) => Ok((StatusCode::CREATED, Json(WebhookCreatedJson::from(&webhook)))),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Every registered endpoint (at most 100, so one page), without secrets.
#[utoipa::path(
    get, path = "/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks",
    responses(
        (status = 200, body = Page<WebhookJson>),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(State(state): State<ApiState>, Admin(_): Admin) -> Result<Json<Page<WebhookJson>>, ApiError> {
    match state.cluster().query(GroupId::META, Query::Webhooks, Consistency::Linearizable).await? {
        Answer::Webhooks(list) => {
            Ok(Json(Page { items: list.iter().map(WebhookJson::from).collect(), next_cursor: None }))
        }
        other => Err(ApiError::unexpected(other)),
    }
}

/// Deletes an endpoint: events after this answer are not delivered to it, and its retries in
/// flight stop within seconds.
#[utoipa::path(
    delete, path = "/v1/webhooks/{webhook_id}", operation_id = "delete_webhook", tag = "webhooks",
    params(("webhook_id" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    Admin(caller): Admin,
    IdPath(webhook_id): IdPath<WebhookId>,
) -> Result<StatusCode, ApiError> {
    // A second delete finds nothing: 404, as for an id never registered.
    let request_id = identity::request_id(&caller.user, None);
    let path = format!("/v1/webhooks/{webhook_id}");
    let fingerprint = identity::fingerprint("DELETE", &path, &serde_json::Value::Null);
    match state.submit(Command::DeleteWebhook { webhook_id }, request_id, fingerprint).await? {
        Outcome::Webhook(_) => Ok(StatusCode::NO_CONTENT),
        other => Err(ApiError::unexpected(other)),
    }
}
