//! The connection proof and constant-time comparisons.
//!
//! A node proves it holds its agent secret with HMAC-SHA256 over
//! [`auth_proof_input`](tether_wire::control::auth_proof_input), which includes the connection's
//! TLS exporter value: a proof captured on one connection cannot be replayed on another.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `input` under `secret`.
pub fn compute(secret: &[u8], input: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(input);
    mac.finalize().into_bytes().into()
}

/// Checks a proof in constant time.
pub fn verify(secret: &[u8], input: &[u8], proof: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(input);
    mac.verify_slice(proof).is_ok()
}

/// Compares two secrets (tokens, enrollment secrets) in constant time.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_verifies_only_with_same_secret_and_input() {
        let proof = compute(b"secret-one", b"input");
        assert!(verify(b"secret-one", b"input", &proof));
        assert!(!verify(b"secret-two", b"input", &proof));
        assert!(!verify(b"secret-one", b"inpuT", &proof));
        assert!(!verify(b"secret-one", b"input", &proof[..31]));
    }

    #[test]
    fn secret_comparison() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"abcd"));
    }
}
