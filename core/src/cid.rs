//! Connection ids that outlive core's process.
//!
//! After a crash the new process must recognise the ids the old one issued (to answer them with
//! stateless resets), and must never hand one of them to a new connection: a node still holding
//! the old id would then have its packets routed to a stranger's connection, dropped there
//! without a reset, and wait out its whole idle timeout. quinn's keyed generator has the first
//! property but only a 24-bit random part, so across a restart of 10,000 nodes about one in a
//! thousand ids collided (measured: 11 to 15 nodes per storm waited 60 s). Here the random part
//! is 80 bits and the tag 48.

use std::time::Duration;

use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid};
use ring::hmac;

/// Random bytes per id: collisions between any two processes' ids are out of reach.
const NONCE_LEN: usize = 10;
/// Keyed tag over the nonce: a packet with an id core never issued is dropped unanswered.
const TAG_LEN: usize = 6;
/// Bytes per connection id.
pub const CID_LEN: usize = NONCE_LEN + TAG_LEN;

/// Issues random ids tagged with a key kept in the data directory, and recognises them.
#[derive(Debug, Clone)]
pub struct PersistentCidGenerator {
    key: hmac::Key,
}

impl PersistentCidGenerator {
    /// A generator whose ids any generator with the same key recognises.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    fn tag(&self, nonce: &[u8]) -> [u8; TAG_LEN] {
        let tag = hmac::sign(&self.key, nonce);
        tag.as_ref()[..TAG_LEN].try_into().expect("long enough")
    }
}

impl ConnectionIdGenerator for PersistentCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0u8; CID_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes[..NONCE_LEN]);
        let tag = self.tag(&bytes[..NONCE_LEN]);
        bytes[NONCE_LEN..].copy_from_slice(&tag);
        ConnectionId::new(&bytes)
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        if cid.len() != CID_LEN {
            return Err(InvalidCid);
        }
        let (nonce, tag) = cid.split_at(NONCE_LEN);
        if tether_certs::proof::secrets_equal(&self.tag(nonce), tag) {
            Ok(())
        } else {
            Err(InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_recognised_by_the_same_key_only() {
        let mut first = PersistentCidGenerator::new(&[7; 32]);
        let restarted = PersistentCidGenerator::new(&[7; 32]);
        let stranger = PersistentCidGenerator::new(&[8; 32]);
        for _ in 0..100 {
            let cid = first.generate_cid();
            assert_eq!(cid.len(), CID_LEN);
            assert!(first.validate(&cid).is_ok());
            assert!(
                restarted.validate(&cid).is_ok(),
                "a restarted core knows it"
            );
            assert!(stranger.validate(&cid).is_err(), "another key does not");
        }
    }

    #[test]
    fn forged_truncated_and_altered_ids_are_refused() {
        let mut generator = PersistentCidGenerator::new(&[1; 32]);
        let cid = generator.generate_cid();
        for index in 0..CID_LEN {
            let mut altered = cid.to_vec();
            altered[index] ^= 0x01;
            assert!(
                generator.validate(&ConnectionId::new(&altered)).is_err(),
                "byte {index} changed"
            );
        }
        assert!(
            generator
                .validate(&ConnectionId::new(&cid[..CID_LEN - 1]))
                .is_err()
        );
        assert!(
            generator
                .validate(&ConnectionId::new(&[0; CID_LEN]))
                .is_err()
        );
    }

    #[test]
    fn ids_do_not_repeat() {
        let mut generator = PersistentCidGenerator::new(&[2; 32]);
        let ids: std::collections::HashSet<Vec<u8>> = (0..10_000)
            .map(|_| generator.generate_cid().to_vec())
            .collect();
        assert_eq!(ids.len(), 10_000);
    }
}
