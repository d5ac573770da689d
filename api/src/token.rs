//! Bearer tokens: HS256 JWTs with `sub` (the user), `role` and `exp`.
//!
//! The user a request acts for is the token's `sub` and nothing else; no body field can change it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use raft_store::UserId;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Clock skew tolerated between the minting and the verifying machine, in seconds.
const TOKEN_LEEWAY_S: u64 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl AsRef<str> for Role {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Claims as verified: an unknown role fails to deserialize, so the token is refused. `exp` is
/// required and checked by the validation itself.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
}

/// Claims as minted: any role text, so tests can mint tokens the verifier must refuse.
#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    role: &'a str,
    /// Unix seconds.
    exp: u64,
}

/// Mints a token for `user_id` with `role` (a [`Role`] or its text, `user` or `admin`), valid
/// for `ttl` from now. Used by the dev-token endpoint, tests and load generators.
pub fn mint_token(secret: &str, user_id: &str, role: impl AsRef<str>, ttl: Duration) -> String {
    let exp = unix_now_s().saturating_add(ttl.as_secs());
    mint_token_until(secret, user_id, role.as_ref(), exp)
}

/// Mints a token that expires at `exp` (Unix seconds).
pub(crate) fn mint_token_until(secret: &str, user_id: &str, role: &str, exp: u64) -> String {
    let claims = MintClaims { sub: user_id, role, exp };
    // HS256 over an HMAC key and a plain struct has no failure mode: the key accepts any bytes
    // and the claims always serialize.
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("HS256 signing of plain claims cannot fail")
}

pub(crate) fn unix_now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Verifies tokens with one key, built once at start-up.
pub(crate) struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub(crate) fn new(secret: &str) -> TokenVerifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = TOKEN_LEEWAY_S;
        TokenVerifier { key: DecodingKey::from_secret(secret.as_bytes()), validation }
    }

    /// The user and role of a valid token; 401 for anything else.
    pub(crate) fn verify(&self, token: &str) -> Result<(UserId, Role), ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            let reason = match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the bearer token has expired",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "the bearer token's signature is invalid",
                _ => "the bearer token is malformed or invalid",
            };
            ApiError::Unauthorized(reason.into())
        })?;
        let user = UserId::parse(&data.claims.sub)
            .ok_or_else(|| ApiError::Unauthorized("the bearer token's subject is not a valid user id".into()))?;
        Ok((user, data.claims.role))
    }
}
