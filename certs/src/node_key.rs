//! A node's RSA key pair (seed 000): it signs the enrollment request and unwraps the agent secret
//! core encrypts to it with RSA-OAEP (SHA-256).
//!
//! Core only ever uses the public half (verify, encrypt). The private half is used by the node on
//! its own schedule — one signature per enrollment attempt, one decryption per approval — so no
//! remote party can make it a timing oracle (see docs/security.md on RUSTSEC-2023-0071).

use num_bigint::BigUint;
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

use crate::CertError;

/// Size of the keys nodes generate.
pub const NODE_KEY_BITS: usize = 2048;
/// Smallest key core accepts.
pub const MIN_KEY_BITS: usize = 2048;
/// Largest key core accepts (bigger keys only make verification slower for core).
pub const MAX_KEY_BITS: usize = 4096;

/// A node's private key.
#[derive(Clone)]
pub struct NodeKey {
    private: RsaPrivateKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey(rsa-{}, private)", self.private.size() * 8)
    }
}

impl NodeKey {
    /// Generates a fresh RSA-2048 key.
    pub fn generate() -> Result<Self, CertError> {
        let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, NODE_KEY_BITS)
            .map_err(|e| CertError::Key(e.to_string()))?;
        Ok(Self { private })
    }

    /// PKCS#8 PEM of the private key (store it with mode 0600).
    pub fn to_pem(&self) -> String {
        self.private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an RSA key always encodes")
            .to_string()
    }

    /// Parses a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<Self, CertError> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| CertError::Key(format!("not an RSA PKCS#8 private key: {e}")))?;
        Ok(Self { private })
    }

    /// The public half.
    pub fn public(&self) -> NodePublicKey {
        NodePublicKey::new(self.private.to_public_key())
    }

    /// RSA PKCS#1 v1.5 signature with SHA-256.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        SigningKey::<Sha256>::new(self.private.clone())
            .sign(message)
            .to_vec()
    }

    /// Unwraps an RSA-OAEP-SHA256 ciphertext (the agent secret).
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, CertError> {
        self.private
            .decrypt(Oaep::new::<Sha256>(), ciphertext)
            .map_err(|_| {
                CertError::Key("the encrypted secret does not decrypt with this node's key".into())
            })
    }
}

/// A node's public key, as core holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct NodePublicKey {
    public: RsaPublicKey,
    /// The same key as PKCS#1 DER, for ring: core checks signatures with ring, several times
    /// faster than the `rsa` crate (whose big-number arithmetic was 15 % of core's time when
    /// enrolling). ring cannot encrypt with RSA, so OAEP stays with `rsa`.
    pkcs1_der: Vec<u8>,
}

impl std::fmt::Debug for NodePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodePublicKey({})", self.fingerprint())
    }
}

impl NodePublicKey {
    /// Parses a SubjectPublicKeyInfo PEM and checks the key size is acceptable.
    pub fn from_pem(pem: &str) -> Result<Self, CertError> {
        let public = RsaPublicKey::from_public_key_pem(pem)
            .map_err(|e| CertError::Key(format!("not an RSA public key: {e}")))?;
        // The modulus's real length: `size()` rounds up to whole bytes, and ring (which checks
        // the signatures) refuses anything under 2,048 bits, so a 2,047-bit key would parse and
        // then fail every signature.
        let bits = public.n().bits();
        if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
            return Err(CertError::Key(format!(
                "RSA key of {bits} bits; between {MIN_KEY_BITS} and {MAX_KEY_BITS} are accepted"
            )));
        }
        Ok(Self::new(public))
    }

    fn new(public: RsaPublicKey) -> Self {
        let pkcs1_der = public
            .to_pkcs1_der()
            .expect("an RSA key always encodes")
            .as_bytes()
            .to_vec();
        Self { public, pkcs1_der }
    }

    /// SubjectPublicKeyInfo PEM.
    pub fn to_pem(&self) -> String {
        self.public
            .to_public_key_pem(LineEnding::LF)
            .expect("an RSA key always encodes")
    }

    /// SHA-256 of the DER public key, hex: what admins compare.
    pub fn fingerprint(&self) -> String {
        let der = self
            .public
            .to_public_key_der()
            .expect("an RSA key always encodes");
        hex::encode(Sha256::digest(der.as_bytes()))
    }

    /// Checks an RSA PKCS#1 v1.5 SHA-256 signature.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.pkcs1_der,
        )
        .verify(message, signature)
        .is_ok()
    }

    /// Encrypts a secret to this key with RSA-OAEP-SHA256 (MGF1-SHA-256, empty label): what
    /// [`NodeKey::decrypt`] and any PKCS#1 v2.2 implementation unwrap.
    ///
    /// The padding is encoded here (RFC 8017 §7.1.1) rather than by the `rsa` crate because of
    /// the one modular exponentiation: `rsa` raises to the public exponent with a fixed 4-bit
    /// window over a whole 64-bit word, about 100 Montgomery multiplications where 65,537 needs
    /// 17, and that was a quarter of core's time when enrolling. The exponent is public and
    /// small (the `rsa` parser bounds it), so plain square-and-multiply is right here.
    pub fn encrypt(&self, secret: &[u8]) -> Result<Vec<u8>, CertError> {
        let mut seed = [0u8; OAEP_HASH_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        self.encrypt_with_seed(secret, &seed)
    }

    fn encrypt_with_seed(
        &self,
        secret: &[u8],
        seed: &[u8; OAEP_HASH_LEN],
    ) -> Result<Vec<u8>, CertError> {
        let k = self.public.size();
        let capacity = k.saturating_sub(2 * OAEP_HASH_LEN + 2);
        if secret.len() > capacity {
            return Err(CertError::Key(format!(
                "a secret of {} bytes does not fit RSA-OAEP with a {}-bit key (at most {capacity})",
                secret.len(),
                k * 8
            )));
        }
        // EM = 0x00 || maskedSeed || maskedDB, DB = lHash || PS (zeros) || 0x01 || M.
        let mut em = vec![0u8; k];
        let (masked_seed, db) = em[1..].split_at_mut(OAEP_HASH_LEN);
        db[..OAEP_HASH_LEN].copy_from_slice(&Sha256::digest(b""));
        let message_at = db.len() - secret.len();
        db[message_at - 1] = 0x01;
        db[message_at..].copy_from_slice(secret);
        masked_seed.copy_from_slice(seed);
        mgf1_sha256_xor(db, masked_seed);
        mgf1_sha256_xor(masked_seed, db);
        // EM starts with a zero byte and is as long as the modulus, so it is below it.
        let modulus = BigUint::from_bytes_be(&self.public.n().to_bytes_be());
        // The `rsa` parser refuses public exponents over 2^33 - 1, so this fits.
        let exponent = (self.public.e().to_bytes_be().iter())
            .fold(0u64, |acc, &byte| acc << 8 | u64::from(byte));
        let c = public_exponentiation(&BigUint::from_bytes_be(&em), exponent, &modulus);
        let bytes = c.to_bytes_be();
        let mut out = vec![0u8; k - bytes.len()];
        out.extend_from_slice(&bytes);
        Ok(out)
    }
}

/// Length of SHA-256, the OAEP hash.
const OAEP_HASH_LEN: usize = 32;

/// `target ^= MGF1-SHA-256(seed, target.len())` (RFC 8017 B.2.1).
fn mgf1_sha256_xor(target: &mut [u8], seed: &[u8]) {
    for (counter, chunk) in (0u32..).zip(target.chunks_mut(OAEP_HASH_LEN)) {
        let mask = Sha256::new()
            .chain_update(seed)
            .chain_update(counter.to_be_bytes())
            .finalize();
        for (byte, mask) in chunk.iter_mut().zip(mask) {
            *byte ^= mask;
        }
    }
}

/// `base ^ exponent mod modulus`, left-to-right square-and-multiply: for a public exponent only
/// (it is not constant-time in the exponent, which is public). With `num-bigint`, whose
/// multiplication and division are several times faster than the `rsa` crate's.
fn public_exponentiation(base: &BigUint, exponent: u64, modulus: &BigUint) -> BigUint {
    let base = base % modulus;
    let mut result = base.clone();
    // The top bit is the initial `result = base`.
    for i in (0..u64::BITS - exponent.leading_zeros()).rev().skip(1) {
        result = &result * &result % modulus;
        if exponent >> i & 1 == 1 {
            result = result * &base % modulus;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_encrypt_decrypt() {
        let key = NodeKey::generate().unwrap();
        let again = NodeKey::from_pem(&key.to_pem()).unwrap();
        let public = NodePublicKey::from_pem(&again.public().to_pem()).unwrap();
        assert_eq!(public, key.public());

        let sig = key.sign(b"hello");
        assert!(public.verify(b"hello", &sig));
        assert!(!public.verify(b"hellO", &sig));
        assert!(!public.verify(b"hello", &sig[1..]));

        let secret = [42u8; 32];
        let wrapped = public.encrypt(&secret).unwrap();
        assert_ne!(&wrapped[..32], &secret);
        assert_eq!(key.decrypt(&wrapped).unwrap(), secret);

        let other = NodeKey::generate().unwrap();
        assert!(other.decrypt(&wrapped).is_err());
        assert!(!other.public().verify(b"hello", &sig));
    }

    #[test]
    fn signatures_check_the_same_as_the_rsa_crate_for_every_accepted_size() {
        use rsa::signature::Verifier as _;
        for bits in [MIN_KEY_BITS, MAX_KEY_BITS] {
            let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).unwrap();
            let key = NodeKey { private };
            let public = NodePublicKey::from_pem(&key.public().to_pem()).unwrap();
            let reference = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public.public.clone());
            let sig = key.sign(b"message");
            let mut bad = sig.clone();
            bad[10] ^= 1;
            for (message, signature) in [
                (&b"message"[..], &sig),
                (b"massage", &sig),
                (b"message", &bad),
            ] {
                let expected = rsa::pkcs1v15::Signature::try_from(&signature[..])
                    .is_ok_and(|s| reference.verify(message, &s).is_ok());
                assert_eq!(public.verify(message, signature), expected, "{bits} bits");
            }
            assert!(public.verify(b"message", &sig));
        }
    }

    /// Hands out a fixed byte pattern: the `rsa` crate's OAEP draws nothing but its seed from
    /// the generator, so with the same seed both encodings must be byte for byte the same.
    struct FixedSeed([u8; OAEP_HASH_LEN]);

    impl rand::RngCore for FixedSeed {
        fn next_u32(&mut self) -> u32 {
            unreachable!("OAEP only fills its seed")
        }
        fn next_u64(&mut self) -> u64 {
            unreachable!("OAEP only fills its seed")
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.copy_from_slice(&self.0[..dest.len()]);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rand::CryptoRng for FixedSeed {}

    #[test]
    fn oaep_is_byte_for_byte_the_rsa_crates_and_unwraps_at_every_size() {
        // 2,049 bits: the modulus does not fill its top byte.
        for bits in [MIN_KEY_BITS, MIN_KEY_BITS + 1, MAX_KEY_BITS] {
            let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).unwrap();
            let key = NodeKey { private };
            let public = key.public();
            let capacity = public.public.size() - 2 * OAEP_HASH_LEN - 2;
            for len in [0, 1, 32, capacity] {
                let secret: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
                let seed = [0x5a; OAEP_HASH_LEN];
                let ours = public.encrypt_with_seed(&secret, &seed).unwrap();
                let reference = public
                    .public
                    .encrypt(&mut FixedSeed(seed), Oaep::new::<Sha256>(), &secret)
                    .unwrap();
                assert_eq!(ours, reference, "{bits} bits, {len} bytes");
                let random = public.encrypt(&secret).unwrap();
                assert_ne!(random, ours, "a fresh seed every time");
                assert_eq!(
                    key.decrypt(&random).unwrap(),
                    secret,
                    "{bits} bits, {len} bytes"
                );
            }
            let error = public
                .encrypt(&vec![1; capacity + 1])
                .unwrap_err()
                .to_string();
            assert!(error.contains("does not fit RSA-OAEP"), "{error}");
        }
    }

    #[test]
    fn public_exponentiation_agrees_with_modpow() {
        let key = NodeKey::generate().unwrap().public();
        let n = BigUint::from_bytes_be(&key.public.n().to_bytes_be());
        for exponent in [1u64, 2, 3, 17, 65_537, (1 << 33) - 1, u64::MAX] {
            for base in [
                BigUint::from(0u8),
                BigUint::from(1u8),
                BigUint::from(2u8),
                &n - 1u8,
                &n + 5u8,
                BigUint::from_bytes_be(&[0xa7; 200]),
            ] {
                assert_eq!(
                    public_exponentiation(&base, exponent, &n),
                    base.modpow(&BigUint::from(exponent), &n),
                    "exponent {exponent}"
                );
            }
        }
    }

    #[test]
    fn a_key_one_bit_short_is_refused_by_size() {
        let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, MIN_KEY_BITS - 1).unwrap();
        let pem = NodeKey { private }.public().to_pem();
        let error = NodePublicKey::from_pem(&pem).unwrap_err().to_string();
        assert!(error.contains("RSA key of 2047 bits"), "{error}");
    }

    #[test]
    fn garbage_public_keys_refused() {
        assert!(NodePublicKey::from_pem("hello").is_err());
        assert!(NodePublicKey::from_pem("").is_err());
    }
}
