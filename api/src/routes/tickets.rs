//! Tickets at the door and between users: each event's check-in key, admission, and transfer.
//!
//! A ticket's code is signed here (`ticket_code`), with a key derived for its event from the
//! api's ticket secret; the store never sees a key. Check-in verifies the signature, then the
//! store decides whether the code is the ticket's current one and whether it was admitted.

use axum::extract::State;
use axum::Json;
use raft_store::{Command, EventId, Outcome, Refusal, TicketCard, TicketId, UserId};

use crate::dto::rules::{DEV_USER_ID, TICKET_CODE};
use crate::dto::{time_json, CheckinBody, CheckinJson, CheckinKeyJson, ProblemJson, TicketJson, TransferBody};
use crate::error::ApiError;
use crate::extract::{Caller, IdPath, Posted, Scanner};
use crate::routes::events::read_event;
use crate::state::ApiState;
use crate::ticket_code::{qr_svg, TicketClaims, KEY_ALGORITHM};
use seams::Consistency;

/// The ticket as its holder sees it, with its signed code (and the code as a QR image when
/// `with_qr`).
pub(crate) fn holder_json(state: &ApiState, card: &TicketCard, with_qr: bool) -> Result<TicketJson, ApiError> {
    let view = &card.view;
    let claims = TicketClaims {
        ticket_id: view.ticket_id.to_string(),
        event_id: view.event_id.to_string(),
        seat: view.seat.clone(),
        section: view.section.clone(),
        holder: view.user_id.to_string(),
        version: card.version,
    };
    let code = state.tickets().sign(&claims).map_err(|e| ApiError::Internal(format!("a ticket code: {e}")))?;
    let qr = match with_qr {
        true => Some(qr_svg(&code).map_err(|e| ApiError::Internal(format!("a ticket's QR code: {e}")))?),
        false => None,
    };
    let mut json = TicketJson::from(view);
    json.admitted_at = card.admitted_at_ms.map(time_json);
    json.code = Some(code);
    json.qr_svg = qr;
    Ok(json)
}

/// The public key that verifies the event's ticket codes, for scanners that work offline.
#[utoipa::path(
    get, path = "/v1/events/{event_id}/checkin-key", operation_id = "get_checkin_key", tag = "tickets",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, body = CheckinKeyJson),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn checkin_key(
    State(state): State<ApiState>,
    IdPath(event_id): IdPath<EventId>,
) -> Result<Json<CheckinKeyJson>, ApiError> {
    // Any id has a key; only an event's is published.
    read_event(&state, &event_id, Consistency::Stale).await?;
    Ok(Json(CheckinKeyJson { algorithm: KEY_ALGORITHM, public_key: state.tickets().public_key(event_id.as_str()) }))
}

/// Admits a ticket at the door: once. The code must be signed with its event's key and be the
/// ticket's current one (a transfer replaces it).
#[utoipa::path(
    post, path = "/v1/checkin", operation_id = "check_in", tag = "tickets",
    request_body = CheckinBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 200, body = CheckinJson),
        (status = 400, description = "invalid_ticket_code: forged, altered, replaced by a transfer, or of a cancelled ticket", body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 403, description = "Neither the scanner nor the admin role", body = ProblemJson, content_type = "application/problem+json"),
        (status = 409, description = "already_checked_in, with `admitted_at`: the first admission", body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "idempotency_key_reused", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn check_in(
    State(state): State<ApiState>,
    Scanner(scanner): Scanner,
    posted: Posted<CheckinBody>,
) -> Result<Json<CheckinJson>, ApiError> {
    let code = &posted.body.code;
    TICKET_CODE.check("code", code)?;
    let invalid = |reason: String| ApiError::Refused(Refusal::InvalidTicketCode { reason });
    let claims = state.tickets().verify(code).map_err(|e| invalid(e.to_string()))?;
    let ticket_id = TicketId::parse(&claims.ticket_id)
        .filter(|t| t.order.event_id.as_str() == claims.event_id)
        .ok_or_else(|| invalid("the code names no ticket of its event".into()))?;
    let holder = UserId::parse(&claims.holder).ok_or_else(|| invalid("the code names no holder".into()))?;
    let command = Command::CheckIn { ticket_id, version: claims.version, holder };
    let card = match state.submit(command, posted.request_id(&scanner.user), posted.fingerprint()).await? {
        Outcome::Ticket(card) => card,
        other => return Err(ApiError::unexpected(other)),
    };
    let admitted_at = card.admitted_at_ms.map(time_json).ok_or_else(|| ApiError::unexpected(&card))?;
    let mut ticket = TicketJson::from(&card.view);
    ticket.admitted_at = Some(admitted_at.clone());
    Ok(Json(CheckinJson { ticket, admitted_at }))
}

/// Reissues one of the caller's tickets to another user: the receiver sees it in their tickets
/// with a new code, and the old code stops working. Within the event's per-user limit for the
/// receiver; not once the ticket was checked in or the event started.
#[utoipa::path(
    post, path = "/v1/tickets/{ticket_id}/transfer", operation_id = "transfer_ticket", tag = "tickets",
    request_body = TransferBody,
    params(
        ("ticket_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry"),
    ),
    responses(
        (status = 200, description = "The ticket, reissued to the receiver, with its new code", body = TicketJson),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, description = "No ticket of the caller's has this id", body = ProblemJson, content_type = "application/problem+json"),
        (status = 409, description = "ticket_checked_in, or ticket_not_transferable (cancelled, the event started, transferred too often)", body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "limit_exceeded (the receiver's per-user limit), idempotency_key_reused, or a transfer to oneself", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn transfer(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(ticket_id): IdPath<TicketId>,
    posted: Posted<TransferBody>,
) -> Result<Json<TicketJson>, ApiError> {
    DEV_USER_ID.check("to_user", &posted.body.to_user)?;
    let to =
        UserId::parse(&posted.body.to_user).ok_or_else(|| ApiError::BadRequest("`to_user` is not a user id".into()))?;
    let command = Command::TransferTicket { ticket_id, from: caller.user.clone(), to };
    match state.submit(command, posted.request_id(&caller.user), posted.fingerprint()).await? {
        Outcome::Ticket(card) => Ok(Json(holder_json(&state, &card, false)?)),
        other => Err(ApiError::unexpected(other)),
    }
}
