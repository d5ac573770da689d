//! Stripe's webhook signatures: `Stripe-Signature: t=UNIX,v1=HEX[,v1=HEX…]`, where each `v1` is
//! the hex of HMAC-SHA256(endpoint secret, "{t}.{raw body}"). Stripe sends one `v1` per secret
//! the endpoint has during a rotation; we accept an event when any `v1` matches any secret we
//! are configured with, and its `t` is within the tolerance of our clock (both ways: a
//! timestamp far in the future is as suspect as an old one).
//!
//! Architecture invariant: this module only judges bytes. It reads no clock (the caller gives
//! `now_s`) and never panics on what a client sends.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

/// The header's name, as axum's `HeaderMap` looks it up.
pub(crate) const SIGNATURE_HEADER: &str = "stripe-signature";
/// Longest header read: a timestamp and a few signatures. Longer ones are refused unread, so a
/// client cannot make us parse (or hash) without bound.
const HEADER_BYTES_MAX: usize = 2048;
/// Most `v1` values compared; a rotation has two secrets, so Stripe sends at most a few.
const SIGNATURES_MAX: usize = 8;
/// An HMAC-SHA256, in bytes.
const MAC_BYTES: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    #[error("the request has no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the Stripe-Signature timestamp is {skew_s} s from now, beyond the tolerance of {tolerance_s} s")]
    Stale { skew_s: u64, tolerance_s: u64 },
    #[error("no Stripe-Signature matches the body")]
    Mismatch,
}

/// The parts of a header that matter: the timestamp as sent (it is signed as text) and the
/// well-formed `v1` signatures.
struct Header<'a> {
    timestamp_text: &'a str,
    timestamp_s: i64,
    signatures: Vec<[u8; MAC_BYTES]>,
}

fn parse(header: &[u8]) -> Result<Header<'_>, SignatureError> {
    use SignatureError::Malformed;
    if header.len() > HEADER_BYTES_MAX {
        return Err(Malformed("longer than 2048 bytes"));
    }
    let text = std::str::from_utf8(header).map_err(|_| Malformed("not text"))?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in text.split(',') {
        let (key, value) = item.trim().split_once('=').ok_or(Malformed("an item without `=`"))?;
        match key {
            "t" if timestamp.is_some() => return Err(Malformed("two timestamps")),
            "t" => {
                let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                let seconds =
                    value.parse::<i64>().ok().filter(|_| digits).ok_or(Malformed("a timestamp not in seconds"))?;
                timestamp = Some((value, seconds));
            }
            "v1" => {
                if signatures.len() == SIGNATURES_MAX {
                    return Err(Malformed("too many signatures"));
                }
                // One that is not 64 hex digits cannot match: it is skipped, not an error, as
                // Stripe's own libraries do.
                let mut mac = [0; MAC_BYTES];
                if hex::decode_to_slice(value, &mut mac).is_ok() {
                    signatures.push(mac);
                }
            }
            // Other schemes (`v0`, Stripe's test scheme) are not ours to check.
            _ => {}
        }
    }
    let (timestamp_text, timestamp_s) = timestamp.ok_or(Malformed("no timestamp"))?;
    Ok(Header { timestamp_text, timestamp_s, signatures })
}

/// The `v1` signature of `payload` sent at `timestamp` (its text as in the header).
pub(crate) fn sign(secret: &str, timestamp: &str, payload: &[u8]) -> [u8; MAC_BYTES] {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// Whether `header` (the `Stripe-Signature` value, if any) signs `payload` with one of
/// `secrets`, at a time within `tolerance` of `now_s`.
pub(crate) fn verify(
    header: Option<&[u8]>,
    payload: &[u8],
    secrets: &[String],
    tolerance: Duration,
    now_s: i64,
) -> Result<(), SignatureError> {
    let header = parse(header.ok_or(SignatureError::Missing)?)?;
    // Every pair is compared, in constant time, so how long this takes says nothing about which
    // secret or which signature came close.
    let mut matched = Choice::from(0);
    for secret in secrets {
        let expected = sign(secret, header.timestamp_text, payload);
        for signature in &header.signatures {
            matched |= expected.ct_eq(signature);
        }
    }
    if !bool::from(matched) {
        return Err(SignatureError::Mismatch);
    }
    let skew_s = now_s.abs_diff(header.timestamp_s);
    let tolerance_s = tolerance.as_secs();
    if skew_s > tolerance_s {
        return Err(SignatureError::Stale { skew_s, tolerance_s });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);
    const NOW_S: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    fn secrets() -> Vec<String> {
        vec!["whsec_old".to_owned(), "whsec_new".to_owned()]
    }

    /// The signature as Stripe's documentation spells it out, computed independently of `sign`.
    fn reference_v1(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn check(header: &str) -> Result<(), SignatureError> {
        verify(Some(header.as_bytes()), BODY, &secrets(), TOLERANCE, NOW_S)
    }

    #[test]
    fn a_signature_by_any_configured_secret_verifies() {
        for secret in secrets() {
            let header = format!("t={NOW_S},v1={}", reference_v1(&secret, NOW_S, BODY));
            assert_eq!(check(&header), Ok(()), "{secret}");
        }
        assert_eq!(hex::encode(sign("whsec_old", &NOW_S.to_string(), BODY)), reference_v1("whsec_old", NOW_S, BODY));
    }

    #[test]
    fn any_one_of_several_v1_values_may_match_and_other_schemes_are_ignored() {
        let good = reference_v1("whsec_new", NOW_S, BODY);
        let other = reference_v1("whsec_unknown", NOW_S, BODY);
        assert_eq!(check(&format!("t={NOW_S},v1={other},v1={good}")), Ok(()));
        assert_eq!(check(&format!("t={NOW_S}, v0={good}, v1=zz, v1={good}")), Ok(()));
        assert_eq!(check(&format!("v1={good},t={NOW_S}")), Ok(()), "the order of items does not matter");
        assert_eq!(check(&format!("t={NOW_S},v1={other},v1={other}")), Err(SignatureError::Mismatch));
        assert_eq!(check(&format!("t={NOW_S},v0={good}")), Err(SignatureError::Mismatch), "v0 is not trusted");
    }

    #[test]
    fn the_body_the_timestamp_and_the_secret_are_all_signed() {
        let good = reference_v1("whsec_old", NOW_S, BODY);
        let header = format!("t={NOW_S},v1={good}");
        let other_body = verify(Some(header.as_bytes()), b"{}", &secrets(), TOLERANCE, NOW_S);
        assert_eq!(other_body, Err(SignatureError::Mismatch));
        assert_eq!(check(&format!("t={},v1={good}", NOW_S + 1)), Err(SignatureError::Mismatch));
        let unconfigured = verify(Some(header.as_bytes()), BODY, &["whsec_x".to_owned()], TOLERANCE, NOW_S);
        assert_eq!(unconfigured, Err(SignatureError::Mismatch));
        assert_eq!(verify(Some(header.as_bytes()), BODY, &[], TOLERANCE, NOW_S), Err(SignatureError::Mismatch));
    }

    #[test]
    fn the_timestamp_must_be_within_the_tolerance_either_way() {
        let at = |t: i64| {
            let header = format!("t={t},v1={}", reference_v1("whsec_old", t, BODY));
            check(&header)
        };
        assert_eq!(at(NOW_S - 300), Ok(()));
        assert_eq!(at(NOW_S + 300), Ok(()));
        assert_eq!(at(NOW_S - 301), Err(SignatureError::Stale { skew_s: 301, tolerance_s: 300 }));
        assert_eq!(at(NOW_S + 301), Err(SignatureError::Stale { skew_s: 301, tolerance_s: 300 }));
        assert!(matches!(at(0), Err(SignatureError::Stale { .. })));
    }

    #[test]
    fn missing_and_malformed_headers_are_refused() {
        assert_eq!(verify(None, BODY, &secrets(), TOLERANCE, NOW_S), Err(SignatureError::Missing));
        let good = reference_v1("whsec_old", NOW_S, BODY);
        for header in [
            String::new(),
            "garbage".to_owned(),
            format!("v1={good}"),
            format!("t=,v1={good}"),
            format!("t=-5,v1={good}"),
            format!("t=+{NOW_S},v1={good}"),
            format!("t=1e9,v1={good}"),
            format!("t=99999999999999999999,v1={good}"),
            format!("t={NOW_S},t={NOW_S},v1={good}"),
            format!("t={NOW_S},v1={good},"),
            format!("t={NOW_S},{}", vec![format!("v1={good}"); SIGNATURES_MAX + 1].join(",")),
            format!("t={NOW_S},v1={}", "a".repeat(HEADER_BYTES_MAX)),
        ] {
            assert!(matches!(check(&header), Err(SignatureError::Malformed(_))), "{header:?}: {:?}", check(&header));
        }
        let not_text = verify(Some(b"t=1,v1=\xff"), BODY, &secrets(), TOLERANCE, NOW_S);
        assert_eq!(not_text, Err(SignatureError::Malformed("not text")));
    }

    #[test]
    fn arbitrary_headers_never_panic_and_never_verify() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let alphabet = b"tv01=,. -abcdef9\xff";
        for _ in 0..20_000 {
            let len = rng.gen_range(0..80);
            let header: Vec<u8> = (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect();
            let answer = verify(Some(&header), BODY, &secrets(), TOLERANCE, NOW_S);
            assert!(answer.is_err(), "{:?}", String::from_utf8_lossy(&header));
        }
        let extreme = [i64::MIN, i64::MAX];
        for now_s in extreme {
            let header = format!("t={},v1={}", i64::MAX, reference_v1("whsec_old", i64::MAX, BODY));
            let answer = verify(Some(header.as_bytes()), BODY, &secrets(), TOLERANCE, now_s);
            assert_eq!(answer.is_ok(), now_s == i64::MAX);
        }
    }
}
