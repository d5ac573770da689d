//! The signature of a delivery, Stripe's scheme under our header name:
//!
//! ```text
//! Boxoffice-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "{t}.{raw body}")>
//! ```
//!
//! The key is the endpoint's whole secret string (`whsec_…`) as bytes. A receiver recomputes the
//! HMAC over the raw body it got, compares it in constant time, and refuses a `t` far from its
//! clock (Stripe's libraries allow 300 s), so a captured delivery cannot be replayed later.

use hmac::{Hmac, Mac};
use sha2::Sha256;
#[cfg(test)]
use subtle::ConstantTimeEq;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Boxoffice-Signature";
/// How far from the receiver's clock a signature's time may be, as Stripe's libraries allow.
#[cfg(test)]
pub const SIGNATURE_TOLERANCE_S: i64 = 300;

fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header's value for `body` signed with `secret` at Unix time `t` (seconds).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body).finalize().into_bytes()))
}

/// Whether `header` signs `body` with `secret` at a time within [`SIGNATURE_TOLERANCE_S`] of
/// `now_s`: what a receiver checks (README.md shows it), here for the tests. Any `v1` may match
/// (a sender may sign with several secrets).
#[cfg(test)]
pub fn verify(header: &str, secret: &str, body: &[u8], now_s: i64) -> bool {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now_s - t).abs() > SIGNATURE_TOLERANCE_S {
        return false;
    }
    let expected = mac(secret, t, body).finalize().into_bytes();
    signatures.iter().any(|s| bool::from(s.as_slice().ct_eq(&expected[..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"order.confirmed"}"#;

    #[test]
    fn a_signature_is_stripes_scheme() {
        // Known answers, computed apart from this code (Python's `hmac`): HMAC-SHA256 keyed with
        // the secret over "{t}.{body}", in hex.
        assert_eq!(
            sign(SECRET, 1_700_000_000, BODY),
            "t=1700000000,v1=904c7f27ab5f13a280bb13c0adf899b46f3e47548857dcf9c0d11db3db4a7ebb"
        );
        assert_eq!(sign("key", 1, b"body"), "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5");
    }

    #[test]
    fn verification_needs_the_secret_the_body_and_a_recent_time() {
        let header = sign(SECRET, 1_700_000_000, BODY);
        assert!(verify(&header, SECRET, BODY, 1_700_000_100));
        assert!(!verify(&header, "whsec_other", BODY, 1_700_000_100));
        assert!(!verify(&header, SECRET, b"{}", 1_700_000_100));
        assert!(!verify(&header, SECRET, BODY, 1_700_000_000 + SIGNATURE_TOLERANCE_S + 1));
        assert!(!verify("v1=00", SECRET, BODY, 1_700_000_000));
        assert!(!verify("garbage", SECRET, BODY, 1_700_000_000));
        // One good signature among several is enough.
        let both = format!("{header},v1={}", "00".repeat(32));
        assert!(verify(&both, SECRET, BODY, 1_700_000_000));
    }
}
