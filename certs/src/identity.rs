//! The admin identity file: everything the `tether` CLI needs to reach core and prove it is an
//! admin — core's address, core's CA, the admin's certificate and key. It is a secret (0600).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ca::{IssuedPem, parse_cert_pem};
use crate::{CertError, Fingerprint, files, fingerprint};

/// A parsed admin identity.
#[derive(Clone, Serialize, Deserialize)]
pub struct AdminIdentity {
    /// Admin name (the certificate's common name).
    pub name: String,
    /// Core's address, `HOST:PORT`.
    pub core: String,
    /// Fingerprint of core's CA, `sha256:...`, checked against `ca_cert` on load.
    pub ca_fingerprint: String,
    /// Core's CA certificate, PEM.
    pub ca_cert: String,
    /// The admin's client certificate, PEM.
    pub cert: String,
    /// The admin's private key, PKCS#8 PEM.
    pub key: String,
}

impl std::fmt::Debug for AdminIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminIdentity")
            .field("name", &self.name)
            .field("core", &self.core)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish_non_exhaustive()
    }
}

impl AdminIdentity {
    /// Assembles an identity from an issued certificate.
    pub fn new(
        name: &str,
        core: &str,
        ca_cert_pem: &str,
        issued: IssuedPem,
    ) -> Result<Self, CertError> {
        let ca_der = parse_cert_pem(ca_cert_pem)?;
        Ok(Self {
            name: name.to_string(),
            core: core.to_string(),
            ca_fingerprint: fingerprint(&ca_der).to_string(),
            ca_cert: ca_cert_pem.to_string(),
            cert: issued.cert_pem,
            key: issued.key_pem,
        })
    }

    /// Writes the identity with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), CertError> {
        let body = toml::to_string_pretty(self).map_err(|e| CertError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let text = format!(
            "# Tether identity of user {:?}. Whoever holds this file acts as that user towards core at {}.\n\
             # Keep it private (mode 0600). Use it with `tether --identity FILE` or TETHER_IDENTITY.\n{body}",
            self.name, self.core
        );
        files::write_private_file(path, text.as_bytes())
    }

    /// Reads and checks an identity file (mode 0600 required; CA must match its fingerprint).
    pub fn load(path: &Path) -> Result<Self, CertError> {
        let text = files::read_private_text(path)?;
        let identity: AdminIdentity = toml::from_str(&text).map_err(|e| CertError::Invalid {
            path: path.to_path_buf(),
            reason: format!("not an admin identity file: {}", e.message()),
        })?;
        let ca_der = parse_cert_pem(&identity.ca_cert).map_err(|e| CertError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let expected: Fingerprint =
            identity
                .ca_fingerprint
                .parse()
                .map_err(|e: String| CertError::Invalid {
                    path: path.to_path_buf(),
                    reason: e,
                })?;
        if fingerprint(&ca_der) != expected {
            return Err(CertError::Invalid {
                path: path.to_path_buf(),
                reason: "ca_cert does not match ca_fingerprint".into(),
            });
        }
        Ok(identity)
    }
}
