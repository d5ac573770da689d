//! Tickets at the door and between users: the check-in and transfer bodies and answers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rules;
use super::TicketJson;

/// Body of `POST /v1/checkin`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckinBody {
    /// The ticket's code, as `GET /v1/me/tickets` gives it to its holder (and its QR encodes).
    #[schema(schema_with = rules::ticket_code)]
    pub code: String,
}

/// Answer of `POST /v1/checkin`: the ticket, admitted now.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct CheckinJson {
    pub ticket: TicketJson,
    #[schema(format = DateTime)]
    pub admitted_at: String,
}

/// Body of `POST /v1/tickets/{ticket_id}/transfer`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferBody {
    /// The user the ticket is reissued to.
    #[schema(schema_with = rules::dev_user_id)]
    pub to_user: String,
}

/// Answer of `GET /v1/events/{event_id}/checkin-key`: what an offline scanner verifies codes with.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct CheckinKeyJson {
    /// Always `Ed25519`.
    pub algorithm: &'static str,
    /// The event's public key: 32 bytes in base64url without padding. A code `BX1.<payload>.<sig>`
    /// is valid when `sig` (base64url) is an Ed25519 signature of the text `BX1.<payload>` by it.
    pub public_key: String,
}
