//! Signed ticket codes and their QR rendering (issue 21 item 3).
//!
//! A ticket's code is `BX1.<payload>.<signature>`: the payload is the [`TicketClaims`] as compact
//! JSON with one-letter keys, the signature is Ed25519 over the exact text `BX1.<payload>`, and both
//! are base64url without padding. A scanner therefore verifies a code offline with nothing but the
//! event's public key (`GET /v1/events/{event_id}/checkin-key`) and never re-encodes JSON.
//!
//! Architecture invariant: the signing secret never enters the replicated log. Every api instance
//! derives the same per-event key from the configured secret with HKDF-SHA256, so a code signed by
//! one instance verifies on every other one and on every scanner.
//!
//! Architecture invariant: this module only decides whether a code is well formed and signed by its
//! event's key. Whether the ticket is still at that `version` and not admitted yet is the store's
//! decision. Pure: no clock, no I/O, no randomness (Ed25519 signatures are deterministic).

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey, PUBLIC_KEY_LENGTH, SECRET_KEY_LENGTH};
use hkdf::Hkdf;
use qrcode::{Color, EcLevel, QrCode};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::SECRET_BYTES_MIN;

/// What every code starts with: the format and its version, then the separator.
pub const CODE_PREFIX: &str = "BX1.";
/// The longest code accepted, checked before any decoding; [`TicketKeys::sign`] makes none longer.
pub const CODE_BYTES_MAX: usize = 1_024;
/// The `algorithm` that `GET /v1/events/{event_id}/checkin-key` names.
pub const KEY_ALGORITHM: &str = "Ed25519";
/// HKDF's salt: ties the derived keys to this use and this version of it. Changing it changes every
/// event's key, so every code issued before stops verifying.
const KEY_DOMAIN: &[u8] = b"boxoffice/ticket-key/v1";
/// Keys cached at most; a full cache is emptied, since any key can be derived again.
const KEYS_CACHED_MAX: usize = 10_000;
/// A public key's length in base64url without padding.
const PUBLIC_KEY_B64_LEN: usize = 43;
/// The accessible name of the QR image (its `<title>`).
const QR_TITLE: &str = "Ticket code";
/// The light margin around a QR code, in modules, that the standard asks for.
const QR_QUIET_ZONE_MODULES: usize = 4;
/// Each QR module's side in pixels at the image's own size (it scales without loss).
const QR_MODULE_PX: usize = 4;

const _: () = assert!(PUBLIC_KEY_B64_LEN == (PUBLIC_KEY_LENGTH * 4).div_ceil(3));

/// What a ticket's code says about it. On the wire (inside the code) the keys are `t`, `e`, `s`
/// (left out without a seat), `c`, `h` and `v`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    pub ticket_id: String,
    pub event_id: String,
    /// The seat's label; `None` for general admission.
    pub seat: Option<String>,
    pub section: String,
    /// The user the ticket is issued to.
    pub holder: String,
    /// The ticket's version: a transfer reissues the ticket at the next one, so the store refuses
    /// the codes of the versions before.
    pub version: u32,
}

/// Why a code (or a scanner's public key) was refused. The messages are written for the developer
/// of the client that sent it; the check-in route answers them as 400 `invalid_ticket_code`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a ticket code is at most {CODE_BYTES_MAX} bytes; this one has {bytes}")]
    TooLong { bytes: usize },
    #[error("a ticket code starts with `{CODE_PREFIX}`")]
    Prefix,
    #[error("a ticket code has the form `BX1.<payload>.<signature>`; the `.` before the signature is missing")]
    Shape,
    #[error("the {part} of the ticket code is not base64url without padding")]
    Base64 { part: &'static str },
    #[error("the signature of a ticket code is 64 bytes; this one has {bytes}")]
    SignatureLength { bytes: usize },
    #[error("the payload of the ticket code is not its claims: {0}")]
    Payload(String),
    #[error("the ticket code's signature does not verify: the code was altered, or not issued for the event it names")]
    Signature,
    #[error("the public key is not an Ed25519 public key in base64url without padding")]
    PublicKey,
}

/// The claims as they are written inside a code: one-letter keys, nothing else accepted.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    #[serde(rename = "t")]
    ticket_id: String,
    #[serde(rename = "e")]
    event_id: String,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    seat: Option<String>,
    #[serde(rename = "c")]
    section: String,
    #[serde(rename = "h")]
    holder: String,
    #[serde(rename = "v")]
    version: u32,
}

impl From<&TicketClaims> for Payload {
    fn from(c: &TicketClaims) -> Payload {
        Payload {
            ticket_id: c.ticket_id.clone(),
            event_id: c.event_id.clone(),
            seat: c.seat.clone(),
            section: c.section.clone(),
            holder: c.holder.clone(),
            version: c.version,
        }
    }
}

impl From<Payload> for TicketClaims {
    fn from(p: Payload) -> TicketClaims {
        TicketClaims {
            ticket_id: p.ticket_id,
            event_id: p.event_id,
            seat: p.seat,
            section: p.section,
            holder: p.holder,
            version: p.version,
        }
    }
}

/// Every event's signing key, derived from one configured secret. Every instance built from the
/// same secret signs and verifies alike; the secret itself is not kept, only HKDF's extract of it.
pub struct TicketKeys {
    hkdf: Hkdf<Sha256>,
    /// Derived keys by event id, at most [`KEYS_CACHED_MAX`].
    keys: Mutex<HashMap<String, SigningKey>>,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKeys").field("secret", &"<masked>").finish_non_exhaustive()
    }
}

impl TicketKeys {
    /// Keys derived from `secret`, the deployment's ticket secret.
    ///
    /// # Panics
    ///
    /// If `secret` is shorter than [`SECRET_BYTES_MIN`]: the configuration is checked at start-up
    /// (`config::check_secret`), so this is a programming error.
    pub fn new(secret: &[u8]) -> TicketKeys {
        assert!(secret.len() >= SECRET_BYTES_MIN, "a ticket secret is at least {SECRET_BYTES_MIN} bytes");
        TicketKeys { hkdf: Hkdf::new(Some(KEY_DOMAIN), secret), keys: Mutex::new(HashMap::new()) }
    }

    /// The event's signing key: HKDF-SHA256 with the salt `boxoffice/ticket-key/v1`, the secret as
    /// input key material and the event id as info, expanded to the 32-byte Ed25519 seed.
    pub fn signing_key(&self, event_id: &str) -> SigningKey {
        if let Some(key) = self.cached().get(event_id) {
            return key.clone();
        }
        let mut seed = [0u8; SECRET_KEY_LENGTH];
        self.hkdf.expand(event_id.as_bytes(), &mut seed).expect("32 bytes is within HKDF-SHA256's limit of 8,160");
        let key = SigningKey::from_bytes(&seed);
        let mut keys = self.cached();
        if keys.len() >= KEYS_CACHED_MAX {
            keys.clear();
        }
        keys.insert(event_id.to_owned(), key.clone());
        assert!(keys.len() <= KEYS_CACHED_MAX);
        key
    }

    /// The cache; one that a panicking thread left behind is still whole (inserts are atomic).
    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, SigningKey>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The event's public key as `checkin-key` publishes it: its 32 bytes in base64url without
    /// padding.
    pub fn public_key(&self, event_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.signing_key(event_id).verifying_key().as_bytes())
    }

    /// The ticket's code, signed with its event's key. The same claims always give the same code.
    ///
    /// Fails with [`CodeError::TooLong`] when the code would pass [`CODE_BYTES_MAX`]: such a code
    /// could never be checked in, so it is not issued (ids are short; only long non-ASCII holder or
    /// seat names come near).
    pub fn sign(&self, claims: &TicketClaims) -> Result<String, CodeError> {
        let payload = serde_json::to_vec(&Payload::from(claims)).expect("strings and an integer serialize to JSON");
        let mut code = String::with_capacity(CODE_BYTES_MAX);
        code.push_str(CODE_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut code);
        let signature = self.signing_key(&claims.event_id).sign(code.as_bytes());
        code.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut code);
        if code.len() > CODE_BYTES_MAX {
            return Err(CodeError::TooLong { bytes: code.len() });
        }
        Ok(code)
    }

    /// The claims of a code signed with the key of the event it names. The store still decides
    /// whether that ticket, at that version, may be admitted.
    pub fn verify(&self, code: &str) -> Result<TicketClaims, CodeError> {
        let parts = Parts::parse(code)?;
        // The key depends on the event the payload names, so the payload is read before it is
        // trusted; it is at most CODE_BYTES_MAX bytes of JSON into a flat struct. An event id that
        // names no event costs one derivation and one entry of the bounded cache.
        let claims = parts.claims()?;
        parts.check_signature(&self.signing_key(&claims.event_id).verifying_key())?;
        Ok(claims)
    }
}

/// What a scanner does offline: the claims of `code` if it is signed with the key that
/// `public_key_b64` (as `checkin-key` publishes it) encodes. The scanner must still check that the
/// claims name its event: any event's key verifies that event's codes.
pub fn verify_with_public_key(public_key_b64: &str, code: &str) -> Result<TicketClaims, CodeError> {
    let key = decode_public_key(public_key_b64)?;
    let parts = Parts::parse(code)?;
    parts.check_signature(&key)?;
    parts.claims()
}

fn decode_public_key(public_key_b64: &str) -> Result<VerifyingKey, CodeError> {
    if public_key_b64.len() != PUBLIC_KEY_B64_LEN {
        return Err(CodeError::PublicKey);
    }
    let bytes = URL_SAFE_NO_PAD.decode(public_key_b64).map_err(|_| CodeError::PublicKey)?;
    let bytes: [u8; PUBLIC_KEY_LENGTH] = bytes.try_into().map_err(|_| CodeError::PublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| CodeError::PublicKey)
}

/// A code taken apart, nothing trusted yet.
struct Parts<'a> {
    /// `BX1.<payload>`: the exact text the signature covers.
    signed: &'a str,
    payload: Vec<u8>,
    signature: Signature,
}

impl<'a> Parts<'a> {
    fn parse(code: &'a str) -> Result<Parts<'a>, CodeError> {
        if code.len() > CODE_BYTES_MAX {
            return Err(CodeError::TooLong { bytes: code.len() });
        }
        if !code.starts_with(CODE_PREFIX) {
            return Err(CodeError::Prefix);
        }
        let (signed, signature_b64) = code.rsplit_once('.').ok_or(CodeError::Shape)?;
        // The prefix's own `.` is the last one: the signature's separator is missing.
        let payload_b64 = signed.strip_prefix(CODE_PREFIX).ok_or(CodeError::Shape)?;
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| CodeError::Base64 { part: "payload" })?;
        let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| CodeError::Base64 { part: "signature" })?;
        let signature =
            Signature::from_slice(&signature).map_err(|_| CodeError::SignatureLength { bytes: signature.len() })?;
        Ok(Parts { signed, payload, signature })
    }

    fn claims(&self) -> Result<TicketClaims, CodeError> {
        let payload: Payload = serde_json::from_slice(&self.payload).map_err(|e| CodeError::Payload(e.to_string()))?;
        Ok(payload.into())
    }

    /// `verify_strict` also refuses weak keys and non-canonical signatures, so no second code
    /// verifies for the same claims.
    fn check_signature(&self, key: &VerifyingKey) -> Result<(), CodeError> {
        key.verify_strict(self.signed.as_bytes(), &self.signature).map_err(|_| CodeError::Signature)
    }
}

/// The code as a QR image in a standalone SVG document: error correction level M, the standard
/// quiet zone of four modules, and a `<title>` (with `role="img"`) for screen readers. Any code
/// [`TicketKeys::sign`] makes fits; a longer text is refused with [`CodeError::TooLong`].
///
/// `qrcode` encodes; the SVG is written here rather than by its renderer, which draws every dark
/// module as its own rectangle in pixel units: a typical code came to 36 KB that way, and a
/// slightly longer holder id passed 40 KB. Here each row's runs of dark modules are one path
/// segment in module units, which is about a third of that.
pub fn qr_svg(code: &str) -> Result<String, CodeError> {
    let too_long = CodeError::TooLong { bytes: code.len() };
    if code.len() > CODE_BYTES_MAX {
        return Err(too_long);
    }
    // Level M holds 2,331 bytes at the largest version, so this cannot fail for a code in bounds.
    let qr = QrCode::with_error_correction_level(code.as_bytes(), EcLevel::M).map_err(|_| too_long)?;
    let modules = qr.width();
    let side = modules + 2 * QR_QUIET_ZONE_MODULES;
    let px = side * QR_MODULE_PX;
    let mut svg = format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{px}" height="{px}" viewBox="0 0 {side} {side}""#,
            r#" shape-rendering="crispEdges" role="img"><title>{title}</title>"#,
            r##"<rect width="{side}" height="{side}" fill="#fff"/><path fill="#000" d=""##,
        ),
        px = px,
        side = side,
        title = QR_TITLE,
    );
    for (y, row) in qr.to_colors().chunks(modules).enumerate() {
        let mut run_start = None;
        // A light module after the row closes a run that reaches its end.
        for (x, color) in row.iter().chain([&Color::Light]).enumerate() {
            match (color, run_start) {
                (Color::Dark, None) => run_start = Some(x),
                (Color::Light, Some(start)) => {
                    let (left, top, run) = (start + QR_QUIET_ZONE_MODULES, y + QR_QUIET_ZONE_MODULES, x - start);
                    write!(svg, "M{left} {top}h{run}v1h-{run}z").expect("writing to a String cannot fail");
                    run_start = None;
                }
                _ => {}
            }
        }
    }
    svg.push_str(r#""/></svg>"#);
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210";
    const EVENT_A: &str = "ev0123456789abcdef";
    const EVENT_B: &str = "ev00000000000000ff";

    fn claims() -> TicketClaims {
        TicketClaims {
            ticket_id: format!("tk-{EVENT_A}-42-1"),
            event_id: EVENT_A.to_owned(),
            seat: Some("A-12".to_owned()),
            section: "floor".to_owned(),
            holder: "user-8f2c41d0".to_owned(),
            version: 1,
        }
    }

    fn signed(keys: &TicketKeys, claims: &TicketClaims) -> String {
        keys.sign(claims).expect("a typical ticket's code is in bounds")
    }

    /// The code's two encoded parts.
    fn split(code: &str) -> (&str, &str) {
        code.strip_prefix(CODE_PREFIX).and_then(|rest| rest.split_once('.')).expect("BX1.<payload>.<signature>")
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn signed_code_verifies_to_its_claims() {
        let keys = TicketKeys::new(SECRET);
        let code = signed(&keys, &claims());
        assert_eq!(keys.verify(&code), Ok(claims()));
    }

    #[test]
    fn code_is_prefix_short_key_json_and_signature_over_the_text() {
        let keys = TicketKeys::new(SECRET);
        let code = signed(&keys, &claims());
        let (payload, signature) = split(&code);
        let json = URL_SAFE_NO_PAD.decode(payload).expect("base64url");
        let expected =
            format!(r#"{{"t":"tk-{EVENT_A}-42-1","e":"{EVENT_A}","s":"A-12","c":"floor","h":"user-8f2c41d0","v":1}}"#);
        assert_eq!(String::from_utf8(json).expect("utf-8"), expected);
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        let signature = Signature::from_slice(&signature).expect("64 bytes");
        let signed_text = format!("{CODE_PREFIX}{payload}");
        let key = keys.signing_key(EVENT_A).verifying_key();
        assert!(key.verify_strict(signed_text.as_bytes(), &signature).is_ok());
    }

    #[test]
    fn general_admission_code_leaves_out_the_seat_and_round_trips() {
        let keys = TicketKeys::new(SECRET);
        let ga = TicketClaims { seat: None, ..claims() };
        let code = signed(&keys, &ga);
        let json = URL_SAFE_NO_PAD.decode(split(&code).0).expect("base64url");
        assert!(!String::from_utf8(json).expect("utf-8").contains(r#""s""#));
        assert_eq!(keys.verify(&code), Ok(ga));
    }

    #[test]
    fn version_and_holder_are_carried() {
        let keys = TicketKeys::new(SECRET);
        let reissued = TicketClaims { holder: "user-new-owner".to_owned(), version: 7, ..claims() };
        let verified = keys.verify(&signed(&keys, &reissued)).expect("verifies");
        assert_eq!((verified.holder.as_str(), verified.version), ("user-new-owner", 7));
        assert_ne!(signed(&keys, &reissued), signed(&keys, &claims()));
    }

    #[test]
    fn code_of_event_a_does_not_verify_as_event_b() {
        let keys = TicketKeys::new(SECRET);
        let code = signed(&keys, &claims());
        let (_, signature) = split(&code);
        // The same payload naming event B, with A's signature: B's key does not verify it.
        let as_b = serde_json::to_vec(&Payload::from(&TicketClaims { event_id: EVENT_B.to_owned(), ..claims() }))
            .expect("json");
        let forged = format!("{CODE_PREFIX}{}.{signature}", b64(&as_b));
        assert_eq!(keys.verify(&forged), Err(CodeError::Signature));
        // And a scanner at event B refuses A's genuine code.
        assert_eq!(verify_with_public_key(&keys.public_key(EVENT_B), &code), Err(CodeError::Signature));
        assert_ne!(keys.public_key(EVENT_A), keys.public_key(EVENT_B));
    }

    #[test]
    fn any_changed_character_of_payload_or_signature_fails() {
        let keys = TicketKeys::new(SECRET);
        let code = signed(&keys, &claims());
        for at in CODE_PREFIX.len()..code.len() {
            let mut bytes = code.clone().into_bytes();
            bytes[at] = match bytes[at] {
                b'.' => continue,
                b'A' => b'B',
                _ => b'A',
            };
            let changed = String::from_utf8(bytes).expect("ascii");
            assert!(keys.verify(&changed).is_err(), "changed at {at}: {changed}");
        }
    }

    #[test]
    fn changed_byte_of_decoded_payload_or_signature_fails_the_signature() {
        let keys = TicketKeys::new(SECRET);
        let code = signed(&keys, &claims());
        let (payload, signature) = split(&code);
        let mut json = URL_SAFE_NO_PAD.decode(payload).expect("base64url");
        // `"v":1` becomes `"v":2`: still valid claims, no longer the signed ones.
        let last_digit = json.len() - 2;
        json[last_digit] = b'2';
        let bumped = format!("{CODE_PREFIX}{}.{signature}", b64(&json));
        assert_eq!(keys.verify(&bumped), Err(CodeError::Signature));
        let mut raw = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        raw[10] ^= 0x01;
        let resigned = format!("{CODE_PREFIX}{payload}.{}", b64(&raw));
        assert_eq!(keys.verify(&resigned), Err(CodeError::Signature));
    }

    #[test]
    fn code_signed_with_another_secret_fails() {
        let code = signed(&TicketKeys::new(OTHER_SECRET), &claims());
        assert_eq!(TicketKeys::new(SECRET).verify(&code), Err(CodeError::Signature));
    }

    #[test]
    fn scanner_verifies_offline_with_the_published_key() {
        let keys = TicketKeys::new(SECRET);
        let code = signed(&keys, &claims());
        let published = keys.public_key(EVENT_A);
        assert_eq!(published.len(), PUBLIC_KEY_B64_LEN);
        assert_eq!(verify_with_public_key(&published, &code), Ok(claims()));
        let other_deployment = TicketKeys::new(OTHER_SECRET).public_key(EVENT_A);
        assert_eq!(verify_with_public_key(&other_deployment, &code), Err(CodeError::Signature));
    }

    #[test]
    fn scanner_refuses_a_malformed_public_key() {
        let code = signed(&TicketKeys::new(SECRET), &claims());
        for key in ["", "not a key", &"A".repeat(42), &"A".repeat(44), &"!".repeat(43), &b64(&[0u8; 31])] {
            assert_eq!(verify_with_public_key(key, &code), Err(CodeError::PublicKey), "{key:?}");
        }
        // The identity point decodes but is a weak key: `verify_strict` refuses it.
        let mut identity = [0u8; PUBLIC_KEY_LENGTH];
        identity[0] = 1;
        assert_eq!(verify_with_public_key(&b64(&identity), &code), Err(CodeError::Signature));
    }

    #[test]
    fn every_instance_with_the_secret_signs_the_same_code() {
        let (one, two) = (TicketKeys::new(SECRET), TicketKeys::new(SECRET));
        assert_eq!(signed(&one, &claims()), signed(&one, &claims()));
        assert_eq!(signed(&one, &claims()), signed(&two, &claims()));
        assert_eq!(one.public_key(EVENT_A), two.public_key(EVENT_A));
        assert_eq!(one.signing_key(EVENT_A).to_bytes(), two.signing_key(EVENT_A).to_bytes());
    }

    #[test]
    fn malformed_codes_are_refused_with_their_reason() {
        let keys = TicketKeys::new(SECRET);
        let code = signed(&keys, &claims());
        let (payload, signature) = split(&code);
        let cases = [
            ("", CodeError::Prefix),
            ("BX2.e30.AAAA", CodeError::Prefix),
            ("bx1.e30.AAAA", CodeError::Prefix),
            (&code[1..], CodeError::Prefix),
            (&format!("{CODE_PREFIX}{payload}{signature}"), CodeError::Shape),
            (&format!("{CODE_PREFIX}{payload}=.{signature}"), CodeError::Base64 { part: "payload" }),
            (&format!("{CODE_PREFIX}{payload}.{signature}="), CodeError::Base64 { part: "signature" }),
            (&format!("{CODE_PREFIX}{payload}.{signature}.{signature}"), CodeError::Base64 { part: "payload" }),
            (&format!("{CODE_PREFIX}{payload}.{}", b64(&[0; 63])), CodeError::SignatureLength { bytes: 63 }),
            (&format!("{CODE_PREFIX}{payload}."), CodeError::SignatureLength { bytes: 0 }),
        ];
        for (input, reason) in cases {
            assert_eq!(keys.verify(input), Err(reason), "{input:?}");
        }
    }

    #[test]
    fn signed_payload_with_an_unknown_field_or_bad_json_is_refused() {
        let keys = TicketKeys::new(SECRET);
        let key = keys.signing_key(EVENT_A);
        let sign_raw = |json: &str| {
            let signed_text = format!("{CODE_PREFIX}{}", b64(json.as_bytes()));
            format!("{signed_text}.{}", b64(&key.sign(signed_text.as_bytes()).to_bytes()))
        };
        let extra = sign_raw(&format!(r#"{{"t":"x","e":"{EVENT_A}","c":"floor","h":"u","v":1,"admin":true}}"#));
        let Err(CodeError::Payload(reason)) = keys.verify(&extra) else { panic!("accepted an unknown field") };
        assert!(reason.contains("unknown field `admin`"), "{reason}");
        let public = keys.public_key(EVENT_A);
        assert!(matches!(verify_with_public_key(&public, &extra), Err(CodeError::Payload(_))));
        for json in ["", "null", "[]", "{", r#"{"t":"x"}"#, r#"{"t":"x","e":"e","c":"c","h":"h","v":-1}"#] {
            assert!(matches!(keys.verify(&sign_raw(json)), Err(CodeError::Payload(_))), "{json:?}");
        }
    }

    #[test]
    fn code_longer_than_the_maximum_is_refused_before_decoding() {
        let keys = TicketKeys::new(SECRET);
        let long = format!("{CODE_PREFIX}{}", "A".repeat(CODE_BYTES_MAX - CODE_PREFIX.len() + 1));
        assert_eq!(keys.verify(&long), Err(CodeError::TooLong { bytes: CODE_BYTES_MAX + 1 }));
        let garbage = "\u{1F39F}".repeat(300);
        assert_eq!(keys.verify(&garbage), Err(CodeError::TooLong { bytes: 1_200 }));
        assert_eq!(qr_svg(&garbage), Err(CodeError::TooLong { bytes: 1_200 }));
    }

    #[test]
    fn claims_too_long_for_a_code_are_not_signed() {
        let keys = TicketKeys::new(SECRET);
        let long_name =
            TicketClaims { holder: "\u{1F39F}".repeat(128), seat: Some("\u{4E00}".repeat(100)), ..claims() };
        assert!(matches!(keys.sign(&long_name), Err(CodeError::TooLong { bytes }) if bytes > CODE_BYTES_MAX));
    }

    #[test]
    fn qr_svg_is_a_titled_standalone_document_of_modest_size() {
        let code = signed(&TicketKeys::new(SECRET), &claims());
        let svg = qr_svg(&code).expect("renders");
        assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains(r#"<svg xmlns="http://www.w3.org/2000/svg""#));
        assert!(svg.contains(r#" role="img"><title>Ticket code</title><rect"#), "{}", &svg[..300]);
        assert_eq!(svg.matches("<path").count(), 1);
        assert!(svg.ends_with("</svg>"));
        assert!(svg.len() < 40_000, "{} bytes for a {}-byte code", svg.len(), code.len());
        assert_eq!(qr_svg(&code), Ok(svg), "deterministic");
    }

    /// What a scanner's camera sees: the path read back module by module is the encoder's matrix,
    /// inside a light quiet zone, each module drawn once.
    #[test]
    fn qr_svg_draws_exactly_the_dark_modules_inside_the_quiet_zone() {
        let code = signed(&TicketKeys::new(SECRET), &claims());
        let svg = qr_svg(&code).expect("renders");
        let qr = QrCode::with_error_correction_level(code.as_bytes(), EcLevel::M).expect("fits");
        let (modules, quiet) = (qr.width(), QR_QUIET_ZONE_MODULES);
        let side = modules + 2 * quiet;
        assert!(svg.contains(&format!(r#"viewBox="0 0 {side} {side}""#)));
        let path = svg.split(r#" d=""#).nth(1).and_then(|rest| rest.split('"').next()).expect("one path");
        let mut drawn = vec![false; side * side];
        for segment in path.split('M').filter(|segment| !segment.is_empty()) {
            let number = |text: &str| text.parse::<usize>().expect("a number");
            let (left, rest) = segment.split_once(' ').expect("`{left} {top}h{run}v1h-{run}z`");
            let (top, rest) = rest.split_once('h').expect("h");
            let (run, rest) = rest.split_once('v').expect("v");
            assert_eq!(rest, format!("1h-{run}z"));
            for x in number(left)..number(left) + number(run) {
                let at = number(top) * side + x;
                assert!(!drawn[at], "module ({x}, {top}) drawn twice");
                drawn[at] = true;
            }
        }
        let inside = quiet..quiet + modules;
        let expected: Vec<bool> = (0..side * side)
            .map(|at| (at % side, at / side))
            .map(|(x, y)| inside.contains(&x) && inside.contains(&y) && qr[(x - quiet, y - quiet)] == Color::Dark)
            .collect();
        assert_eq!(drawn, expected);
    }

    #[test]
    fn qr_svg_renders_the_longest_code() {
        let svg = qr_svg(&"A".repeat(CODE_BYTES_MAX)).expect("fits at level M");
        assert!(svg.contains("<title>"));
    }

    /// Characters a code is made of, so that mutated input gets past the cheap checks.
    fn code_char() -> impl Strategy<Value = char> {
        let chars: Vec<char> = ('A'..='Z').chain('a'..='z').chain('0'..='9').chain(['-', '_', '.', '=']).collect();
        prop::sample::select(chars)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..1_200)) {
            let keys = TicketKeys::new(SECRET);
            let lossy = String::from_utf8_lossy(&bytes);
            for input in [text.as_str(), &lossy, &format!("{CODE_PREFIX}{text}"), &format!("{CODE_PREFIX}{lossy}")] {
                let _ = keys.verify(input);
                let _ = verify_with_public_key(input, input);
            }
            // Rendering is slow in a debug build: the short strings only.
            let _ = qr_svg(&text);
        }

        #[test]
        fn code_shaped_text_never_panics(body in prop::collection::vec(code_char(), 0..1_100)) {
            let keys = TicketKeys::new(SECRET);
            let input = format!("{CODE_PREFIX}{}", body.into_iter().collect::<String>());
            let _ = keys.verify(&input);
            let _ = verify_with_public_key(&keys.public_key(EVENT_A), &input);
        }

        #[test]
        fn mutated_code_never_panics_and_only_the_original_verifies(
            at in any::<prop::sample::Index>(),
            replacement in code_char(),
            how in 0..3u8,
        ) {
            let keys = TicketKeys::new(SECRET);
            let code = signed(&keys, &claims());
            let mut chars: Vec<char> = code.chars().collect();
            let i = at.index(chars.len());
            match how {
                0 => chars[i] = replacement,
                1 => chars.insert(i, replacement),
                _ => chars.truncate(i),
            }
            let mutated: String = chars.into_iter().collect();
            let result = keys.verify(&mutated);
            prop_assert_eq!(result.is_ok(), mutated == code);
        }
    }
}
