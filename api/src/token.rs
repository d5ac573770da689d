//! Bearer tokens: JWTs with `sub` (the user), a role and `exp`, verified with an HS256 key the
//! deployment holds, or with the keys an OIDC issuer publishes (RS256, ES256, EdDSA, …), whose
//! tokens must also name the issuer (`iss`) and this api (`aud`). Either way a token valid for
//! longer than `token_lifetime_max` is refused.
//!
//! The user a request acts for is the token's `sub` and nothing else; no body field can change it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use raft_store::UserId;
use serde::{Deserialize, Serialize};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::jwks::{Jwks, JwksError};

/// Clock skew tolerated between the minting and the verifying machine, in seconds.
const TOKEN_LEEWAY_S: u64 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
    /// Checks tickets in at the door, nothing else.
    Scanner,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            "scanner" => Some(Role::Scanner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Scanner => "scanner",
        }
    }
}

impl Role {
    /// Higher ranks may do more; an issuer's list of roles gives its highest.
    fn rank(self) -> u8 {
        match self {
            Role::User => 0,
            Role::Scanner => 1,
            Role::Admin => 2,
        }
    }
}

/// The role named by the claim at `path` (dots reach into objects, as in Keycloak's
/// `realm_access.roles`): a role's name, or a list from which the highest known role is taken
/// (an issuer lists roles of other applications too). No claim, or a list naming none of ours,
/// is a user; a single unknown name is refused.
fn role_of(claims: &serde_json::Map<String, serde_json::Value>, path: &str) -> Result<Role, ApiError> {
    let mut segments = path.split('.');
    let first = segments.next().unwrap_or_default();
    let mut value = claims.get(first);
    for segment in segments {
        value = value.and_then(|v| v.get(segment));
    }
    match value {
        None | Some(serde_json::Value::Null) => Ok(Role::User),
        Some(serde_json::Value::String(name)) => {
            Role::parse(name).ok_or_else(|| unauthorized("the bearer token's role is unknown"))
        }
        Some(serde_json::Value::Array(names)) => {
            let roles = names.iter().filter_map(|n| n.as_str().and_then(Role::parse));
            Ok(roles.max_by_key(|r| r.rank()).unwrap_or(Role::User))
        }
        Some(_) => Err(unauthorized("the bearer token's role claim is neither a name nor a list")),
    }
}

impl AsRef<str> for Role {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Claims as verified: the role is looked up by name (`role` for HS256 tokens, the configured
/// claim for an issuer's); `exp` is required and checked by the validation itself.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: Option<u64>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
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

/// Verifies bearer tokens: an HS256 key and an OIDC issuer's keys, as configured. Built once.
pub(crate) struct TokenVerifier {
    hs256: Option<(DecodingKey, Validation)>,
    oidc: Option<Jwks>,
    lifetime_max_s: u64,
}

fn unauthorized(reason: &str) -> ApiError {
    ApiError::Unauthorized(reason.into())
}

fn rejection(e: &jsonwebtoken::errors::Error) -> ApiError {
    unauthorized(match e.kind() {
        ErrorKind::ExpiredSignature => "the bearer token has expired",
        ErrorKind::InvalidSignature => "the bearer token's signature is invalid",
        ErrorKind::InvalidIssuer => "the bearer token comes from another issuer",
        ErrorKind::InvalidAudience => "the bearer token is not meant for this api (audience)",
        ErrorKind::InvalidAlgorithm => "the bearer token's algorithm is not accepted",
        _ => "the bearer token is malformed or invalid",
    })
}

impl TokenVerifier {
    pub(crate) fn new(config: &ApiConfig) -> Result<TokenVerifier, JwksError> {
        let hs256 = config.jwt_secret.as_ref().map(|secret| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.set_required_spec_claims(&["exp", "sub"]);
            validation.leeway = TOKEN_LEEWAY_S;
            (DecodingKey::from_secret(secret.as_bytes()), validation)
        });
        let oidc = config.oidc.clone().map(Jwks::new).transpose()?;
        Ok(TokenVerifier { hs256, oidc, lifetime_max_s: config.token_lifetime_max.as_secs() })
    }

    /// The issuer's keys, if tokens come from one (for the background refresh).
    pub(crate) fn jwks(&self) -> Option<&Jwks> {
        self.oidc.as_ref()
    }

    /// The user and role of a valid token; 401 for anything else.
    pub(crate) async fn verify(&self, token: &str) -> Result<(UserId, Role), ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| rejection(&e))?;
        let (claims, role_claim) = match (header.alg, &self.hs256, &self.oidc) {
            (Algorithm::HS256, Some((key, validation)), _) => {
                (jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| rejection(&e))?.claims, "role")
            }
            (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512, _, _) => {
                return Err(unauthorized("the bearer token's algorithm is not accepted"))
            }
            (_, _, Some(jwks)) => (self.verify_issued(jwks, &header, token).await?, jwks.config().role_claim.as_str()),
            (_, _, None) => return Err(unauthorized("the bearer token's algorithm is not accepted")),
        };
        self.check_lifetime(&claims)?;
        let user = UserId::parse(&claims.sub)
            .ok_or_else(|| unauthorized("the bearer token's subject is not a valid user id"))?;
        let role = role_of(&claims.rest, role_claim)?;
        Ok((user, role))
    }

    /// Verifies a token an OIDC issuer signed with one of its published keys.
    async fn verify_issued(&self, jwks: &Jwks, header: &Header, token: &str) -> Result<Claims, ApiError> {
        let kid = header.kid.as_deref().ok_or_else(|| unauthorized("the bearer token names no key (kid)"))?;
        let key = jwks
            .key(kid)
            .await
            .ok_or_else(|| unauthorized("the bearer token's key is not one the issuer publishes"))?;
        if key.algorithm != header.alg {
            return Err(unauthorized("the bearer token's algorithm does not match its key"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[jwks.config().issuer.as_str()]);
        validation.set_audience(&[jwks.config().audience.as_str()]);
        validation.leeway = TOKEN_LEEWAY_S;
        Ok(jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| rejection(&e))?.claims)
    }

    /// A token may be valid for at most `token_lifetime_max`: from its `iat`, and from now.
    fn check_lifetime(&self, claims: &Claims) -> Result<(), ApiError> {
        let now = unix_now_s();
        let too_long = claims.exp.saturating_sub(now) > self.lifetime_max_s + TOKEN_LEEWAY_S
            || claims.iat.is_some_and(|iat| claims.exp.saturating_sub(iat) > self.lifetime_max_s);
        if too_long {
            return Err(unauthorized("the bearer token is valid for longer than this api accepts"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn role(claims: serde_json::Value, path: &str) -> Result<Role, ApiError> {
        role_of(claims.as_object().unwrap(), path)
    }

    #[test]
    fn a_role_is_a_name_or_the_highest_of_a_list_found_by_a_dotted_path() {
        assert_eq!(role(json!({}), "role").unwrap(), Role::User);
        assert_eq!(role(json!({ "role": "admin" }), "role").unwrap(), Role::Admin);
        assert!(role(json!({ "role": "owner" }), "role").is_err());
        assert!(role(json!({ "role": 3 }), "role").is_err());
        let keycloak = json!({ "realm_access": { "roles": ["offline_access", "scanner", "uma_authorization"] } });
        assert_eq!(role(keycloak, "realm_access.roles").unwrap(), Role::Scanner);
        assert_eq!(role(json!({ "roles": ["scanner", "admin", "user"] }), "roles").unwrap(), Role::Admin);
        assert_eq!(role(json!({ "roles": ["offline_access"] }), "roles").unwrap(), Role::User);
        assert_eq!(role(json!({ "realm_access": {} }), "realm_access.roles").unwrap(), Role::User);
    }
}
