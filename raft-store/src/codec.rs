//! The one place where values become bytes: every encode and decode of what goes to disk or over
//! the wire passes through here, framed with a format version and checksums.
//!
//! bincode 2 (serde mode, standard configuration) does the work. The crate is unmaintained
//! upstream, so nothing outside this module names it, and replacing it means changing this file and
//! bumping `FORMAT_VERSION`.
//!
//! A frame (format version 2) is a header and a body:
//!
//! ```text
//! version: u8 = 2 | body length: u32 LE | body CRC-32: u32 LE | header CRC-32: u32 LE | body
//! ```
//!
//! The header's own checksum (over the nine bytes before it) is what lets a reader tell a record
//! a crash cut short from one whose bytes changed: bit rot changes bytes but never a record's
//! length, so a record shorter than its intact header says is a write that never finished
//! ([`CodecError::Torn`]), and any other mismatch is damage ([`CodecError::is_torn`] is false).
//! The two are confused only if rot rewrites the length field and the header checksum to match,
//! a chance of one in 2³².
//!
//! Format version 3 frames as version 2 does; what changed is a stored type: a group's snapshot
//! (`Machine`) gained two fields (a shard's pricing, the meta group's webhook endpoints). Every
//! other type encodes as in version 2, so a version-2 frame of it decodes as before, and
//! `Machine::decode` reads a version-2 snapshot as one without the new fields. New values are always written as version 3; a node of version 2 refuses them by name.
//!
//! Format version 1 (bincode with the version byte, no checksums) is refused, not read: a node
//! with data written before version 2 stops with [`CodecError::Version`] naming the version.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bumped whenever the encoding of any stored type or the frame changes incompatibly.
/// 1: bincode after the version byte. 2: the checksummed frame above. 3: a snapshot carries the
/// shard's dynamic pricing and the meta group's webhook endpoints.
pub const FORMAT_VERSION: u8 = 3;
/// The oldest version still read.
pub const FORMAT_VERSION_MIN: u8 = 2;
/// Largest value decoded, in bytes: bounds the memory a corrupt length prefix can claim.
pub const DECODE_BYTES_MAX: usize = 1 << 30;
/// Version, body length, body checksum, header checksum.
const HEADER_BYTES: usize = 1 + 4 + 4 + 4;
/// The header bytes the header checksum covers.
const HEADER_CHECKED_BYTES: usize = 1 + 4 + 4;

const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_BYTES_MAX>,
> = bincode::config::standard().with_limit::<DECODE_BYTES_MAX>();

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(String),
    #[error("decode: {0}")]
    Decode(String),
    #[error(
        "format version {found} is not one of {FORMAT_VERSION_MIN} to {FORMAT_VERSION} (version 1, without \
         checksums, is no longer read; a later version was written by a newer release)"
    )]
    Version { found: u8 },
    /// Shorter than its header says: a write a crash cut short. Rot never shortens a record.
    #[error("torn record: {have} of {want} bytes")]
    Torn { have: usize, want: usize },
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("body checksum mismatch")]
    Checksum,
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

impl CodecError {
    /// Whether the bytes are a prefix of a well-formed record: a write that never completed, as
    /// opposed to a complete record that changed.
    pub fn is_torn(&self) -> bool {
        matches!(self, CodecError::Torn { .. })
    }
}

/// Encodes `value` in a frame of [`FORMAT_VERSION_MIN`]: every type but a snapshot's machine
/// encodes as format 2 had it, so nodes of that format still read what this one sends and writes
/// (log entries, outcomes, cold records, the wire), commands new to them aside.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode_as(FORMAT_VERSION_MIN, value)
}

/// Encodes `value` in a frame of format `version`: for a type whose encoding changed in it.
pub(crate) fn encode_as<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>, CodecError> {
    debug_assert!((FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version));
    let mut out = vec![0; HEADER_BYTES];
    bincode::serde::encode_into_std_write(value, &mut out, CONFIG).map_err(|e| CodecError::Encode(e.to_string()))?;
    let body_bytes = out.len() - HEADER_BYTES;
    if body_bytes > DECODE_BYTES_MAX {
        return Err(CodecError::Encode(format!("{body_bytes} bytes is over {DECODE_BYTES_MAX}")));
    }
    write_header(&mut out, version);
    Ok(out)
}

/// Fills in the header of `out`, whose body follows [`HEADER_BYTES`] zeroed header bytes.
fn write_header(out: &mut [u8], version: u8) {
    let body_bytes = out.len() - HEADER_BYTES;
    let body_crc = crc32fast::hash(&out[HEADER_BYTES..]);
    out[0] = version;
    out[1..5].copy_from_slice(&(body_bytes as u32).to_le_bytes());
    out[5..9].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&out[..HEADER_CHECKED_BYTES]);
    out[9..13].copy_from_slice(&header_crc.to_le_bytes());
}

/// Frames arbitrary body bytes as an intact record: the fuzzer's way past the checksums, which
/// would otherwise refuse nearly every mutation before the decoder saw it.
#[cfg(any(test, feature = "fuzz"))]
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0; HEADER_BYTES];
    out.extend_from_slice(body);
    write_header(&mut out, FORMAT_VERSION);
    out
}

/// The body of an intact record (for the fuzzer's seeds).
#[cfg(any(test, feature = "fuzz"))]
pub(crate) fn body(framed: &[u8]) -> Result<&[u8], CodecError> {
    checked_body(framed)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_body(checked_body(bytes)?)
}

/// The frame's format version and its value decoded as `Old` if the frame is older than
/// `since`, else as `T`: for a type whose encoding changed in version `since`.
pub(crate) fn decode_since<T: DeserializeOwned, Old: DeserializeOwned + Into<T>>(
    since: u8,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let body = checked_body(bytes)?;
    if bytes[0] < since {
        return decode_body::<Old>(body).map(Into::into);
    }
    decode_body(body)
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (value, read) =
        bincode::serde::decode_from_slice(body, CONFIG).map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != body.len() {
        return Err(CodecError::Trailing(body.len() - read));
    }
    Ok(value)
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The body of a frame whose header and body are intact.
fn checked_body(bytes: &[u8]) -> Result<&[u8], CodecError> {
    // An empty value is a write cut before its first byte.
    let Some(&version) = bytes.first() else { return Err(CodecError::Torn { have: 0, want: HEADER_BYTES }) };
    if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
        return Err(CodecError::Version { found: version });
    }
    if bytes.len() < HEADER_BYTES {
        return Err(CodecError::Torn { have: bytes.len(), want: HEADER_BYTES });
    }
    #[cfg(madsim)]
    if crate::planted::is_planted(crate::planted::Bug::TrustUncheckedRecord) {
        return Ok(&bytes[HEADER_BYTES..]);
    }
    if crc32fast::hash(&bytes[..HEADER_CHECKED_BYTES]) != le_u32(&bytes[9..13]) {
        return Err(CodecError::HeaderChecksum);
    }
    let want = le_u32(&bytes[1..5]) as usize;
    let body = &bytes[HEADER_BYTES..];
    if body.len() < want {
        return Err(CodecError::Torn { have: bytes.len(), want: HEADER_BYTES + want });
    }
    if body.len() > want {
        return Err(CodecError::Trailing(body.len() - want));
    }
    if crc32fast::hash(body) != le_u32(&bytes[5..9]) {
        return Err(CodecError::Checksum);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Value = (u64, String, Vec<Option<i64>>);

    fn value() -> Value {
        (7u64, "seat".to_string(), vec![Some(1i64), None])
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let bytes = encode(&value()).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION_MIN, "written as the oldest format that reads it");
        assert_eq!(decode::<Value>(&bytes).unwrap(), value());
        let newer = encode_as(FORMAT_VERSION, &value()).unwrap();
        assert_eq!(newer[0], FORMAT_VERSION);
        assert_eq!(decode::<Value>(&newer).unwrap(), value());

        let mut wrong_version = bytes.clone();
        wrong_version[0] = 99;
        assert!(matches!(decode::<Value>(&wrong_version), Err(CodecError::Version { found: 99 })));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(decode::<Value>(&trailing), Err(CodecError::Trailing(1))));
    }

    #[test]
    fn every_prefix_is_torn_and_every_bit_flip_is_damage() {
        let bytes = encode(&value()).unwrap();
        for len in 0..bytes.len() {
            let err = decode::<Value>(&bytes[..len]).unwrap_err();
            assert!(err.is_torn(), "a prefix of {len} bytes: {err}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut rotten = bytes.clone();
            rotten[bit / 8] ^= 1 << (bit % 8);
            let err = decode::<Value>(&rotten).unwrap_err();
            assert!(!err.is_torn(), "bit {bit} flipped reads as torn: {err}");
        }
    }

    #[test]
    fn version_1_records_are_refused_by_name() {
        // What version 1 wrote: the version byte, then bincode.
        let mut old = vec![1u8];
        bincode::serde::encode_into_std_write(value(), &mut old, CONFIG).unwrap();
        let err = decode::<Value>(&old).unwrap_err();
        assert!(matches!(err, CodecError::Version { found: 1 }));
        assert!(err.to_string().contains("version 1"), "{err}");
    }
}
