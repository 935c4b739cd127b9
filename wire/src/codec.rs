//! The one place that knows the encoding (bincode 2 through serde, varint integers).
//!
//! Every decode carries a byte limit, so a length prefix inside a message can never make the
//! decoder allocate more than the limit; trailing bytes after a message are an error.
//! Types that use this codec must not use serde's `flatten`, `untagged` or `skip_serializing_if`:
//! bincode silently loses data with them.

use bincode::config::{self, Configuration, Limit};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a valid encoding of the expected message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A valid message was followed by bytes that belong to nothing.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

const LARGE_LIMIT: usize = crate::limits::MAX_ADMIN_FRAME_LEN;
const SMALL_LIMIT: usize = 4096;

fn large() -> Configuration<config::LittleEndian, config::Varint, Limit<LARGE_LIMIT>> {
    config::standard().with_limit::<LARGE_LIMIT>()
}

fn small() -> Configuration<config::LittleEndian, config::Varint, Limit<SMALL_LIMIT>> {
    config::standard().with_limit::<SMALL_LIMIT>()
}

/// Encodes `value`, appending to `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail; a failure here would be a bug in a type's Serialize impl.
    bincode::serde::encode_into_std_write(value, out, large())
        .expect("encoding into a Vec never fails");
}

/// Encodes `value` into a new buffer.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Decodes exactly one `T` from all of `bytes`; allocations inside are bounded by the admin frame
/// limit (8 MiB).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    finish(
        bincode::serde::decode_from_slice(bytes, large()),
        bytes.len(),
    )
}

/// Like [`decode`] for small messages (datagrams): allocations bounded to 4 KiB.
pub fn decode_small<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    finish(
        bincode::serde::decode_from_slice(bytes, small()),
        bytes.len(),
    )
}

fn finish<T>(
    result: Result<(T, usize), bincode::error::DecodeError>,
    len: usize,
) -> Result<T, DecodeError> {
    let (value, used) = result.map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if used != len {
        return Err(DecodeError::TrailingBytes(len - used));
    }
    Ok(value)
}
