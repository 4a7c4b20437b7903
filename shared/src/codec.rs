//! The one binary codec for the Raft log, snapshots, storage and the controller-to-controller wire.
//!
//! Every encoded value starts with a format version byte so that a later release can read what an
//! older one wrote (or refuse it with a clear error instead of misreading it). Encoding is bincode 2
//! through serde; nothing else in the project calls bincode directly.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The current format version written in front of every encoded value.
pub const FORMAT_VERSION: u8 = 1;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty input: no format version byte")]
    Empty,
    #[error("unsupported format version {found} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion { found: u8 },
    #[error("encode failed: {0}")]
    Encode(String),
    #[error("decode failed: {0}")]
    Decode(String),
    #[error("decode left {0} trailing bytes")]
    Trailing(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// Encodes `value` as `[FORMAT_VERSION, bincode...]`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_VERSION);
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a value written by [`encode`], refusing unknown versions and trailing garbage.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::UnsupportedVersion { found: version });
    }
    let (value, used) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_carries_version_byte() {
        let bytes = encode(&("tenant", 42u64)).expect("encode");
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back: (String, u64) = decode(&bytes).expect("decode");
        assert_eq!(back, ("tenant".to_string(), 42));
    }

    #[test]
    fn refuses_unknown_version_and_garbage() {
        let mut bytes = encode(&7u32).expect("encode");
        bytes[0] = 99;
        assert!(matches!(decode::<u32>(&bytes), Err(CodecError::UnsupportedVersion { found: 99 })));
        assert!(matches!(decode::<u32>(&[]), Err(CodecError::Empty)));
        let mut bytes = encode(&7u32).expect("encode");
        bytes.push(0);
        assert!(matches!(decode::<u32>(&bytes), Err(CodecError::Trailing(1))));
    }
}
