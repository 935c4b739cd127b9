//! Release keys: ed25519 keys (RFC 8032) that sign agent release manifests
//! ([`tether_wire::releases::Manifest`]), and the checks nodes and core make with them.
//!
//! The private key lives on an admin's machine, in a PKCS#8 PEM file (mode 0600, readable by
//! `openssl pkey`); core and nodes only ever see public keys, written as the 32 raw bytes in
//! standard base64 (44 characters, as WireGuard writes its keys). A manifest file is TOML, so
//! that people can read what they sign and upload.

use std::io::Read as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tether_wire::bytes::FixedBytes;
use tether_wire::releases::{Manifest, ReleaseKey, key_id};

use crate::CertError;
use crate::files::{AtomicFile, read_private_text};

/// Why a manifest or a key is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The signing key is not one of those trusted here.
    #[error(
        "the release is signed by key {key_id}, which is not trusted here (trusted: {trusted})"
    )]
    UntrustedKey {
        /// The signer's key id.
        key_id: String,
        /// The trusted keys' ids, or "none".
        trusted: String,
    },
    /// The signature does not verify under its key.
    #[error("the release's signature does not verify under key {key_id}")]
    BadSignature {
        /// The key id.
        key_id: String,
    },
    /// A public key, signature or manifest does not parse.
    #[error("{0}")]
    Malformed(String),
    /// The file does not match its manifest.
    #[error("{0}")]
    Mismatch(String),
}

/// A private release key.
pub struct ReleaseSigningKey(SigningKey);

impl std::fmt::Debug for ReleaseSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReleaseSigningKey({})", key_id(&self.public()))
    }
}

impl ReleaseSigningKey {
    /// A new random key, from the operating system's generator.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Writes the key to `path` as PKCS#8 PEM, mode 0600; refuses to replace a file that
    /// exists (a lost release key cannot be recovered).
    pub fn save_new(&self, path: &Path) -> Result<(), CertError> {
        if path.exists() {
            return Err(CertError::Invalid {
                path: path.to_path_buf(),
                reason: "exists; not replacing a key (remove it first if you mean to)".into(),
            });
        }
        let pem = self
            .0
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| CertError::Key(format!("encoding the release key: {e}")))?;
        let mut file = AtomicFile::create(path, 0o600)?;
        std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(|e| CertError::io(path, e))?;
        file.commit()
    }

    /// Reads a key written by [`ReleaseSigningKey::save_new`] (any PKCS#8 ed25519 PEM); the
    /// file must be readable by its owner only.
    pub fn load(path: &Path) -> Result<Self, CertError> {
        let text = read_private_text(path)?;
        SigningKey::from_pkcs8_pem(&text)
            .map(Self)
            .map_err(|_| CertError::Invalid {
                path: path.to_path_buf(),
                reason:
                    "not an ed25519 private key in PKCS#8 PEM (`tether release keygen` writes one)"
                        .into(),
            })
    }

    /// The public key.
    pub fn public(&self) -> ReleaseKey {
        FixedBytes(self.0.verifying_key().to_bytes())
    }

    /// Signs `manifest` in place: sets its key and signature.
    pub fn sign(&self, manifest: &mut Manifest) {
        manifest.key = self.public();
        manifest.signature = FixedBytes(self.0.sign(&manifest.signed_bytes()).to_bytes());
    }
}

/// A public key as people write it: base64 of its 32 bytes.
pub fn format_public_key(key: &ReleaseKey) -> String {
    STANDARD.encode(key.as_bytes())
}

/// Reads a public key written by [`format_public_key`]; surrounding whitespace is ignored.
pub fn parse_public_key(text: &str) -> Result<ReleaseKey, ReleaseError> {
    let bytes = STANDARD.decode(text.trim()).ok();
    let bytes: [u8; 32] = bytes
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            ReleaseError::Malformed(format!(
                "{:?} is not a release public key (44 characters of base64, as `tether release keygen` prints)",
                short(text.trim())
            ))
        })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| ReleaseError::Malformed("that public key is not a point on ed25519".into()))?;
    Ok(FixedBytes(bytes))
}

fn short(text: &str) -> String {
    text.chars().take(60).collect()
}

/// Checks that `manifest` is signed by one of `trusted`, with a signature that verifies
/// strictly (RFC 8032 §5.1.7, no malleable encodings).
pub fn verify(manifest: &Manifest, trusted: &[ReleaseKey]) -> Result<(), ReleaseError> {
    if !trusted.contains(&manifest.key) {
        let trusted = if trusted.is_empty() {
            "none".to_string()
        } else {
            trusted.iter().map(key_id).collect::<Vec<_>>().join(", ")
        };
        return Err(ReleaseError::UntrustedKey {
            key_id: key_id(&manifest.key),
            trusted,
        });
    }
    let bad = || ReleaseError::BadSignature {
        key_id: key_id(&manifest.key),
    };
    let key = VerifyingKey::from_bytes(manifest.key.as_bytes()).map_err(|_| bad())?;
    let signature = ed25519_dalek::Signature::from_bytes(manifest.signature.as_bytes());
    key.verify_strict(&manifest.signed_bytes(), &signature)
        .map_err(|_| bad())
}

/// Size and SHA-256 of everything `reader` yields.
pub fn digest_reader(mut reader: impl std::io::Read) -> std::io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hasher.finalize().into()))
}

/// Checks that a file is the one `manifest` describes: its size, then its SHA-256.
pub fn check_file(manifest: &Manifest, path: &Path) -> Result<(), ReleaseError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ReleaseError::Mismatch(format!("{}: {e}", path.display())))?;
    let (size, digest) = digest_reader(file.take(manifest.size + 1))
        .map_err(|e| ReleaseError::Mismatch(format!("{}: {e}", path.display())))?;
    check_digest(manifest, size, &digest)
}

/// Checks a size and SHA-256 against `manifest`.
pub fn check_digest(manifest: &Manifest, size: u64, digest: &[u8; 32]) -> Result<(), ReleaseError> {
    if size != manifest.size {
        return Err(ReleaseError::Mismatch(format!(
            "the file is {}{size} bytes; the manifest says {}",
            if size > manifest.size { "over " } else { "" },
            manifest.size
        )));
    }
    if digest != manifest.sha256.as_bytes() {
        return Err(ReleaseError::Mismatch(format!(
            "the file's SHA-256 is {}; the manifest says {}",
            hex::encode(digest),
            hex::encode(manifest.sha256.as_bytes())
        )));
    }
    Ok(())
}

/// A manifest file, as `tether release sign` writes it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    version: String,
    os: String,
    arch: String,
    size: u64,
    sha256: String,
    key: String,
    signature: String,
}

/// A manifest as TOML, with a comment saying what it is.
pub fn manifest_to_toml(manifest: &Manifest) -> String {
    let file = ManifestFile {
        version: manifest.version.clone(),
        os: manifest.os.clone(),
        arch: manifest.arch.clone(),
        size: manifest.size,
        sha256: hex::encode(manifest.sha256.as_bytes()),
        key: format_public_key(&manifest.key),
        signature: STANDARD.encode(manifest.signature.as_bytes()),
    };
    let body = toml::to_string(&file).expect("a manifest serializes");
    format!(
        "# Tether agent release, signed by release key {} (ed25519).\n{body}",
        key_id(&manifest.key)
    )
}

/// Reads a manifest written by [`manifest_to_toml`], checking its shape (not its signature).
pub fn manifest_from_toml(text: &str) -> Result<Manifest, ReleaseError> {
    let file: ManifestFile = toml::from_str(text)
        .map_err(|e| ReleaseError::Malformed(format!("not a release manifest: {}", e.message())))?;
    let sha256: [u8; 32] = hex::decode(&file.sha256)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ReleaseError::Malformed("sha256: not 64 hex digits".into()))?;
    let signature: [u8; 64] = STANDARD
        .decode(&file.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ReleaseError::Malformed("signature: not 64 bytes of base64".into()))?;
    let manifest = Manifest {
        version: file.version,
        os: file.os,
        arch: file.arch,
        size: file.size,
        sha256: FixedBytes(sha256),
        key: parse_public_key(&file.key)?,
        signature: FixedBytes(signature),
    };
    manifest.check_shape().map_err(ReleaseError::Malformed)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(body: &[u8]) -> Manifest {
        Manifest {
            version: "1.2.3".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            size: body.len() as u64,
            sha256: FixedBytes(Sha256::digest(body).into()),
            key: FixedBytes([0; 32]),
            signature: FixedBytes([0; 64]),
        }
    }

    #[test]
    fn signs_and_verifies() {
        let key = ReleaseSigningKey::generate();
        let mut m = manifest(b"agent");
        key.sign(&mut m);
        verify(&m, &[key.public()]).unwrap();
        // Any field changed breaks it.
        for change in [
            |m: &mut Manifest| m.version = "1.2.4".into(),
            |m: &mut Manifest| m.arch = "aarch64".into(),
            |m: &mut Manifest| m.size += 1,
            |m: &mut Manifest| m.sha256.0[0] ^= 1,
        ] {
            let mut changed = m.clone();
            change(&mut changed);
            assert!(matches!(
                verify(&changed, &[key.public()]),
                Err(ReleaseError::BadSignature { .. })
            ));
        }
        // Another key, trusted or not.
        let other = ReleaseSigningKey::generate();
        let err = verify(&m, &[other.public()]).unwrap_err();
        assert!(matches!(err, ReleaseError::UntrustedKey { .. }), "{err}");
        assert!(err.to_string().contains(&key_id(&key.public())), "{err}");
        let mut forged = m.clone();
        forged.key = other.public();
        assert!(matches!(
            verify(&forged, &[other.public()]),
            Err(ReleaseError::BadSignature { .. })
        ));
        assert!(verify(&m, &[]).unwrap_err().to_string().contains("none"));
    }

    #[test]
    fn key_file_is_private_and_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.key");
        let key = ReleaseSigningKey::generate();
        key.save_new(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert_eq!(
            ReleaseSigningKey::load(&path).unwrap().public(),
            key.public()
        );
        let again = ReleaseSigningKey::generate().save_new(&path).unwrap_err();
        assert!(again.to_string().contains("not replacing"), "{again}");
        assert_eq!(
            ReleaseSigningKey::load(&path).unwrap().public(),
            key.public()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ReleaseSigningKey::load(&path),
            Err(CertError::InsecurePermissions { .. })
        ));
        // Not a key.
        let junk = dir.path().join("junk.key");
        std::fs::write(&junk, "hello").unwrap();
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            ReleaseSigningKey::load(&junk)
                .unwrap_err()
                .to_string()
                .contains("PKCS#8")
        );
    }

    #[test]
    fn public_keys_and_manifests_as_text() {
        let key = ReleaseSigningKey::generate();
        let text = format_public_key(&key.public());
        assert_eq!(text.len(), 44);
        assert_eq!(
            parse_public_key(&format!(" {text}\n")).unwrap(),
            key.public()
        );
        for bad in ["", "abc", &text[..40], "!!!!"] {
            assert!(parse_public_key(bad).is_err(), "{bad:?}");
        }
        let mut m = manifest(b"agent");
        key.sign(&mut m);
        let toml = manifest_to_toml(&m);
        assert!(toml.starts_with("# Tether agent release"), "{toml}");
        assert_eq!(manifest_from_toml(&toml).unwrap(), m);
        assert!(manifest_from_toml("version = 1").is_err());
        let unknown = format!("{toml}extra = 1\n");
        assert!(manifest_from_toml(&unknown).is_err());
        let bad_arch = toml.replace("x86_64", "X86 64");
        assert!(
            manifest_from_toml(&bad_arch)
                .unwrap_err()
                .to_string()
                .contains("architecture")
        );
    }

    #[test]
    fn file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent");
        std::fs::write(&path, b"agent").unwrap();
        let m = manifest(b"agent");
        check_file(&m, &path).unwrap();
        std::fs::write(&path, b"agenT").unwrap();
        assert!(
            check_file(&m, &path)
                .unwrap_err()
                .to_string()
                .contains("SHA-256")
        );
        std::fs::write(&path, b"agent!").unwrap();
        assert!(
            check_file(&m, &path)
                .unwrap_err()
                .to_string()
                .contains("over 6")
        );
    }
}
