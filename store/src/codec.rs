//! How records are stored: one version byte, then the wire codec's encoding. The encoding is not
//! self-describing, so a record whose shape changes gets a new version, and its old shape is
//! kept (in `legacy.rs`) to read what older releases wrote: [`Stored::upgrade`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use tether_wire::codec;

use crate::StoreError;

/// A type kept in the database.
pub(crate) trait Stored: Serialize + DeserializeOwned {
    /// The version this release writes. Raise it when the shape changes, and read the old
    /// shapes in [`Stored::upgrade`].
    const VERSION: u8 = 1;

    /// Reads a record written at an older `version`.
    fn upgrade(version: u8, _bytes: &[u8]) -> Result<Self, StoreError> {
        Err(StoreError::Corrupt(format!(
            "record version {version} is not known to this version of tether"
        )))
    }
}

pub(crate) fn encode<T: Stored>(value: &T) -> Vec<u8> {
    let mut out = vec![T::VERSION];
    codec::encode_into(value, &mut out);
    out
}

pub(crate) fn decode<T: Stored>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&version, rest)) if version == T::VERSION => decode_as(rest),
        Some((&version, rest)) if version < T::VERSION => T::upgrade(version, rest),
        Some((version, _)) => Err(StoreError::Corrupt(format!(
            "record version {version} is newer than this version of tether understands"
        ))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

/// Decodes the encoding without its version byte, as `T` (an old shape, for upgrades).
pub(crate) fn decode_as<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Version 2 lists every mount point of a disk; facts of version 1 are not read at all (see
/// `nodes::decode_facts`): the node sends them again.
impl Stored for tether_wire::facts::StaticFacts {
    const VERSION: u8 = 2;
}
impl Stored for Vec<String> {}
