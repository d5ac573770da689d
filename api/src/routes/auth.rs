//! `POST /v1/auth/dev-token`: tokens for development and tests, only when enabled.

use axum::extract::State;
use axum::Json;
use raft_store::UserId;

use crate::config::DEV_TOKEN_TTL;
use crate::dto::{time_json, DevTokenBody, DevTokenJson, ProblemJson};
use crate::error::ApiError;
use crate::extract::Posted;
use crate::state::ApiState;
use crate::token::{mint_token_until, unix_now_s, Role};

#[utoipa::path(
    post, path = "/v1/auth/dev-token", operation_id = "create_dev_token", tag = "auth",
    request_body = DevTokenBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Accepted as on every POST; a token is minted anew each time")),
    responses(
        (status = 200, body = DevTokenJson),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, description = "Dev tokens are disabled", body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn dev_token(
    State(state): State<ApiState>,
    posted: Posted<DevTokenBody>,
) -> Result<Json<DevTokenJson>, ApiError> {
    let body = posted.body;
    // Printable ASCII, as the document says; a token's `sub` in general may be more.
    crate::dto::rules::DEV_USER_ID.check("user_id", &body.user_id)?;
    let user = UserId::parse(&body.user_id)
        .ok_or_else(|| ApiError::BadRequest("`user_id` must be 1 to 128 bytes without control characters".into()))?;
    let role = match body.role.as_deref() {
        None => Role::User,
        Some(text) => {
            Role::parse(text).ok_or_else(|| ApiError::BadRequest("`role` is `user`, `admin` or `scanner`".into()))?
        }
    };
    let exp = unix_now_s().saturating_add(DEV_TOKEN_TTL.as_secs());
    // Validation refuses dev tokens without an HS256 key, so there is always one here.
    let secret =
        state.config().jwt_secret.as_deref().ok_or_else(|| ApiError::NotFound("dev tokens are disabled".into()))?;
    let token = mint_token_until(secret, user.as_str(), role.as_str(), exp);
    let expires_at_ms = i64::try_from(exp).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
    Ok(Json(DevTokenJson {
        token,
        expires_at: time_json(expires_at_ms),
        user_id: user.to_string(),
        role: role.as_str().to_owned(),
    }))
}
