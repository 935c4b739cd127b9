//! How records are stored: one version byte, then the wire codec's encoding. The version byte lets
//! a later release migrate old records instead of misreading them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tether_wire::codec;

use crate::StoreError;

const RECORD_VERSION: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    codec::encode_into(value, &mut out);
    out
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            codec::decode(rest).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        Some((version, _)) => Err(StoreError::Corrupt(format!(
            "record version {version} is not known to this version of tether"
        ))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}
