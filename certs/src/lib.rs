//! # tether-certs
//!
//! Tether's keys and certificates, and the small amount of cryptography built on them:
//!
//! - [`ca`]: core's certificate authority, the server certificate it issues at every start, and
//!   admin client certificates; [`identity`]: the admin identity file the CLI reads;
//! - [`tls`]: rustls configurations for core, nodes (CA pinned by fingerprint) and admins;
//! - [`node_key`]: a node's RSA-2048 key pair (enrollment signature, RSA-OAEP secret unwrap);
//! - [`proof`]: the HMAC-SHA256 connection proof and constant-time comparisons;
//! - [`release`]: ed25519 release keys, signed release manifests and their checks;
//! - [`files`]: private directories (0700) and secret files (0600), written atomically.
//!
//! One crypto provider only: rustls with `ring`, passed explicitly to every builder, so the
//! process-level default provider is never consulted. This crate never logs a secret, never puts
//! one in an error message, and never opens a socket.

pub mod ca;
pub mod files;
pub mod identity;
pub mod node_key;
pub mod proof;
pub mod release;
pub mod tls;

pub use tether_wire::token::Fingerprint;

use sha2::{Digest, Sha256};

/// SHA-256 fingerprint of a certificate's DER bytes.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(der).into())
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Generating or parsing a certificate failed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A key is not usable.
    #[error("key: {0}")]
    Key(String),
    /// Building a TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A file could not be read or written.
    // The OS error is in the message and deliberately not a `source`: `{:#}` printed it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What happened.
        error: std::io::Error,
    },
    /// A secret file is readable or writable by others.
    #[error(
        "{path} has mode {mode:04o}; secrets must be readable by their owner only (run `chmod 600 {path}`)"
    )]
    InsecurePermissions {
        /// The file.
        path: std::path::PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A file's contents are not what they should be.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl CertError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        CertError::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }
}
