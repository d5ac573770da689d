//! The one place where values become bytes: every encode and decode of what goes to disk or over
//! the wire passes through here, with a format version byte in front.
//!
//! bincode 2 (serde mode, standard configuration) does the work. The crate is unmaintained
//! upstream, so nothing outside this module names it, and replacing it means changing this file and
//! bumping `FORMAT_VERSION`.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bumped whenever the encoding of any stored type changes incompatibly.
pub const FORMAT_VERSION: u8 = 1;
/// Largest value decoded, in bytes: bounds the memory a corrupt length prefix can claim.
pub const DECODE_BYTES_MAX: usize = 1 << 30;

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
    #[error("format version {found} is not {FORMAT_VERSION}")]
    Version { found: u8 },
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    #[error("empty input")]
    Empty,
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, CONFIG).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::Version { found: version });
    }
    let (value, read) =
        bincode::serde::decode_from_slice(body, CONFIG).map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != body.len() {
        return Err(CodecError::Trailing(body.len() - read));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let value = (7u64, "seat".to_string(), vec![Some(1i64), None]);
        let bytes = encode(&value).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<(u64, String, Vec<Option<i64>>)>(&bytes).unwrap(), value);

        let mut wrong_version = bytes.clone();
        wrong_version[0] = 99;
        assert!(matches!(
            decode::<(u64, String, Vec<Option<i64>>)>(&wrong_version),
            Err(CodecError::Version { found: 99 })
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(decode::<(u64, String, Vec<Option<i64>>)>(&trailing), Err(CodecError::Trailing(1))));
        assert!(decode::<(u64, String, Vec<Option<i64>>)>(&bytes[..bytes.len() - 1]).is_err());
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
    }
}
