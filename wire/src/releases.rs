//! Agent releases (seed 002's `versions`): a build of `tether-node` for one OS and architecture,
//! with a manifest signed by a release key (ed25519) that core never holds.
//!
//! The signature covers [`Manifest::signed_bytes`]: version, OS, architecture, size and SHA-256
//! of the file. Nodes check it against the keys they trust (`release_keys` in `node.toml`)
//! before anything is touched, so a compromised core can refuse to update a node but never make
//! it run a file no release key signed. Signing and checking are `tether_certs::release`; this
//! module is the shapes and the rules that need no key.

use serde::{Deserialize, Serialize};

use crate::bytes::{ByteBuf, FixedBytes};
use crate::control::Digest;

/// A release file's size at most, bytes.
pub const MAX_RELEASE_SIZE: u64 = 256 * 1024 * 1024;
/// Release notes at most, bytes.
pub const MAX_NOTES: usize = 4096;
/// Releases core keeps at most.
pub const MAX_RELEASES: usize = 1000;
/// An upload's data frames carry at most this many bytes each.
pub const UPLOAD_CHUNK: usize = 256 * 1024;

/// An ed25519 public key, 32 bytes (RFC 8032).
pub type ReleaseKey = FixedBytes<32>;
/// An ed25519 signature, 64 bytes (RFC 8032).
pub type ReleaseSignature = FixedBytes<64>;

/// What a release key signs about a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The agent's version, as the built agent reports it (`tether-node --version`).
    pub version: String,
    /// Operating system, Rust's name for it (`linux`).
    pub os: String,
    /// CPU architecture, as `uname -m` says it (`x86_64`, `aarch64`).
    pub arch: String,
    /// The file's size, bytes.
    pub size: u64,
    /// SHA-256 of the file.
    pub sha256: Digest,
    /// The public key that signed it.
    pub key: ReleaseKey,
    /// ed25519 signature of [`Manifest::signed_bytes`].
    pub signature: ReleaseSignature,
}

impl Manifest {
    /// The exact bytes the signature covers: a domain tag, then version, OS, architecture, size
    /// (8 bytes, big-endian) and SHA-256, each length-prefixed. The key is not covered: a
    /// signature only verifies under its own key anyway.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"tether-release-v1\0");
        for field in [
            self.version.as_bytes(),
            self.os.as_bytes(),
            self.arch.as_bytes(),
            &self.size.to_be_bytes(),
            self.sha256.as_bytes(),
        ] {
            let len = u32::try_from(field.len()).expect("fields are short");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// Checks what needs no key: version, OS and architecture names, size.
    pub fn check_shape(&self) -> Result<(), String> {
        check_version(&self.version)?;
        check_platform("OS", &self.os)?;
        check_platform("architecture", &self.arch)?;
        if self.size == 0 {
            return Err("the release file is empty".into());
        }
        if self.size > MAX_RELEASE_SIZE {
            return Err(format!(
                "the release file is {} bytes; the limit is {MAX_RELEASE_SIZE}",
                self.size
            ));
        }
        Ok(())
    }

    /// `VERSION OS/ARCH`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.version, self.os, self.arch)
    }
}

/// A short, stable name for a release key: the first 8 bytes of its SHA-256, in hex (as
/// OpenSSH names keys by a hash, shorter).
pub fn key_id(key: &ReleaseKey) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// Checks a release version: 1 to 64 printable ASCII characters (what an agent may report).
pub fn check_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("the version is empty".into());
    }
    crate::control::check_version(version)
}

/// Checks an OS or architecture name: 1 to 32 of `a-z`, `0-9`, `_`.
fn check_platform(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 32
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "{what} {name:?}: 1 to 32 characters of a-z, 0-9 and _ (as `uname -m` prints it)"
        ));
    }
    Ok(())
}

/// A release as core keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Core's number for it.
    pub id: u64,
    /// The signed manifest.
    pub manifest: Manifest,
    /// Release notes, possibly empty.
    pub notes: String,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When, unix ms.
    pub uploaded_at_ms: i64,
}

/// What follows an upload request on its stream: the file in order, then the end of the
/// stream (no frame) once it is all sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum UploadFrame {
    /// The next bytes of the file, at most [`UPLOAD_CHUNK`].
    Data(ByteBuf),
}

/// A release as listed: what core keeps, and the deploys that have not ended using it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseView {
    /// The release.
    pub release: Release,
    /// Deploys using it that have not ended.
    pub active_deploys: Vec<u64>,
}
